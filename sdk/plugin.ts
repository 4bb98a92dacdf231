/**
 * Types for writing a gateway plugin. A plugin is a file `plugins/<name>.ts`
 * (or `plugins/<name>/mod.ts`) whose default export is a {@link Plugin}. Import
 * this module with `import type`: it is erased at load, so a plugin needs no
 * runtime import of the gateway.
 *
 * Each plugin runs in its own sandboxed Worker with only the permissions it
 * asks for in `permissions` AND the config grants in `plugins.grants.<name>`.
 * Every hook and function call has a deadline; a hook that throws fails only
 * that request (500) and is counted, one that runs past its deadline answers
 * 504, and only a plugin whose Worker crashes or stops answering is restarted:
 * throwing never costs a plugin its in-memory state.
 *
 * On the bus, a plugin may use every topic except the reserved ones: it
 * cannot subscribe to `fn/...` (function calls: it serves its own through
 * `functions`, the gateway does that for it), to reply topics
 * (`conn/<id>/send`, `device/<id>/send`: it may publish there) or to `$`
 * topics, nor publish on `$` topics or another owner's `fn/<owner>/...`; a
 * wildcard subscription (`#`) never receives those. `plugins.grants.<name>.bus`
 * (`{ publish: [...], subscribe: [...] }`, MQTT filters) narrows it further.
 * `ctx.subscribe` and `ctx.publish` throw `Deno.errors.NotCapable` (and
 * `ctx.request` rejects with it) when a topic is out of reach.
 *
 * @example
 * ```ts
 * import type { Plugin } from "../sdk/plugin.ts";
 *
 * export default {
 *   name: "stamp",
 *   version: "1.0.0",
 *   priority: 10,
 *   onRequest(req) {
 *     return { headers: { ...req.headers, "x-stamp": String(Date.now()) } };
 *   },
 *   functions: {
 *     sign: (args: { text: string }) => ({ signed: `${args.text}.ok` }),
 *   },
 * } satisfies Plugin;
 * ```
 *
 * @module
 */

/** What a plugin may ask for; the config's grant for it is the upper bound. `run` and `ffi` are never granted. */
export interface PluginPermissions {
  /** Hosts (`"api.example.com:443"`) or `true` for any. */
  net?: boolean | string[];
  /** Paths (relative to the plugins directory) or `true`. A plugin can always read its own files. */
  read?: boolean | string[];
  /** Paths (relative to the plugins directory) or `true`. */
  write?: boolean | string[];
  /** Variable names or `true`. */
  env?: boolean | string[];
  /** `Deno.osRelease`, `Deno.hostname`, ...: API names or `true`. */
  sys?: boolean | string[];
}

/** A request as a plugin sees it: plain data, plus the body on demand. */
export interface PluginRequest {
  method: string;
  /** The full URL. */
  url: string;
  /** The path without the query. */
  path: string;
  /**
   * Lower-case header names. A repeated header's values are combined (`a, b`),
   * except `set-cookie`'s, which are joined with `\n`; the same holds for the
   * headers a hook returns.
   */
  headers: Record<string, string>;
  /** Route params (`/orders/:id` gives `{ id }`). */
  params: Record<string, string>;
  query: Record<string, string>;
  /** The client's address (X-Forwarded-For aware when `security.trustProxy`). */
  clientIp: string;
  requestId: string;
  /** The route that took the request and the listener it came in on. */
  route: { name: string; listener: string };
  /** The connection and device, for requests that come from one (WebSocket upgrades). */
  connectionId?: string;
  deviceId?: string;
  /** The body, fetched from the gateway the first time one of these is called. */
  text(): Promise<string>;
  bytes(): Promise<Uint8Array>;
  json<T = unknown>(): Promise<T>;
}

/** What `onRequest` may return to change the request before it goes on. */
export interface RequestChanges {
  method?: string;
  /** A new URL (absolute, or a path with query on the same host). */
  url?: string;
  /** The complete new header set. */
  headers?: Record<string, string>;
  /** A new body (an object is sent as JSON). */
  body?: string | Uint8Array | object;
  /** Kept for this request and handed to this plugin's `onResponse` as `res.state` (structured-cloneable). */
  state?: unknown;
}

/** An answer a plugin gives instead of the route's target (`onRequest`), or a new response. */
export interface PluginResponse {
  status: number;
  headers?: Record<string, string>;
  /** A string or bytes as they are, an object as JSON. */
  body?: string | Uint8Array | object;
}

/** A response as `onResponse` sees it. */
export interface PluginResponseView {
  status: number;
  /** As {@link PluginRequest.headers}: several `set-cookie` values are joined with `\n`. */
  headers: Record<string, string>;
  /** What this plugin's `onRequest` returned as `state` for this request. */
  state?: unknown;
  /** The request it answers, as the plugins before the target left it. */
  request: Omit<PluginRequest, "text" | "bytes" | "json">;
  text(): Promise<string>;
  bytes(): Promise<Uint8Array>;
  json<T = unknown>(): Promise<T>;
}

/** What `onResponse` may change. */
export interface ResponseChanges {
  status?: number;
  /** The complete new header set. */
  headers?: Record<string, string>;
  body?: string | Uint8Array | object;
}

/** A message from the bus, as `onMessage` handlers and `ctx.subscribe` see it. */
export interface PluginMessage {
  topic: string;
  payload: Uint8Array;
  /** The payload decoded as UTF-8. */
  text(): string;
  /** The payload parsed as JSON. */
  json<T = unknown>(): T;
  source: {
    listener: string;
    protocol: string;
    connectionId?: string;
    deviceId?: string;
  };
  meta: Record<string, string>;
  /** Answers on the connection or request the message came from, when it can be answered. */
  reply?(payload: string | Uint8Array | object): void;
}

/** The plugin's logger; lines are tagged with the plugin's name. */
export interface PluginLogger {
  debug(message: string, fields?: Record<string, unknown>): void;
  info(message: string, fields?: Record<string, unknown>): void;
  warn(message: string, fields?: Record<string, unknown>): void;
  error(message: string, fields?: Record<string, unknown>): void;
}

/**
 * A key's value and its versionstamp: an id that changes with every write of
 * the key, `null` while the key does not exist.
 */
export interface PluginStoreEntry<T = unknown> {
  value: T | undefined;
  versionstamp: string | null;
}

/**
 * Writes that commit together, and only if every key checked still has the
 * versionstamp the plugin read: a check-and-set. Build it with
 * {@link PluginStore.atomic}; nothing is written before `commit`.
 */
export interface PluginStoreAtomic {
  /** Commit only if `key` still has `versionstamp` (`null`: only if it still does not exist). */
  check(key: string, versionstamp: string | null): PluginStoreAtomic;
  /** `ttl` in milliseconds. */
  set(key: string, value: unknown, options?: { ttl?: number }): PluginStoreAtomic;
  delete(key: string): PluginStoreAtomic;
  /**
   * Writes everything, or nothing when a check failed (`ok: false`: another
   * handler wrote a checked key since it was read; read it again and retry).
   */
  commit(): Promise<{ ok: true; versionstamp: string } | { ok: false }>;
}

/**
 * The plugin's own key-value store (no other plugin sees it), kept in Deno KV
 * under the data directory; a value is anything structured-cloneable up to
 * 64 KiB.
 *
 * `get` then `set` is not safe when handlers run concurrently: an `onMessage`
 * handler, a hook or a function runs for each message or request at once, so
 * two of them can both read 5 and both write 6, and one update is lost (500
 * concurrent handlers doing that raised a counter by 1). Use `increment` for
 * numbers, and `getEntry` with `atomic().check(...)` for any other
 * read-modify-write.
 *
 * @example A counter that counts every message, however many arrive at once
 * ```ts
 * import type { Plugin } from "../sdk/plugin.ts";
 *
 * export default {
 *   name: "visits",
 *   onMessage: {
 *     "visits/+": async (message, ctx) => {
 *       await ctx.store.increment(message.topic); // not get + set: that loses updates
 *     },
 *   },
 *   functions: {
 *     count: async (args: { page: string }, ctx) => (await ctx.store.get(`visits/${args.page}`)) ?? 0,
 *     pages: async (_args, ctx) => (await ctx.store.list("visits/")).map((entry) => entry.key),
 *   },
 * } satisfies Plugin;
 * ```
 *
 * @example A check-and-set: add a name to a list without losing another handler's
 * ```ts
 * import type { PluginStore } from "../sdk/plugin.ts";
 *
 * async function addMember(store: PluginStore, name: string): Promise<void> {
 *   for (;;) {
 *     const entry = await store.getEntry<string[]>("members");
 *     const members = [...(entry.value ?? []), name];
 *     const result = await store.atomic().check("members", entry.versionstamp)
 *       .set("members", members).commit();
 *     if (result.ok) return; // else someone wrote "members" since we read it: read again
 *   }
 * }
 * ```
 */
export interface PluginStore {
  get<T = unknown>(key: string): Promise<T | undefined>;
  /** The value with its versionstamp, for {@link PluginStoreAtomic.check}. */
  getEntry<T = unknown>(key: string): Promise<PluginStoreEntry<T>>;
  /** `ttl` in milliseconds. */
  set(key: string, value: unknown, options?: { ttl?: number }): Promise<void>;
  delete(key: string): Promise<void>;
  /** Keys, values and versionstamps whose key starts with `prefix`, in key order (at most `limit`, default 1000). */
  list<T = unknown>(
    prefix?: string,
    limit?: number,
  ): Promise<{ key: string; value: T; versionstamp: string }[]>;
  /**
   * Adds `by` (default 1, may be negative) to the number at `key` (a missing
   * key counts as 0) in one step, and resolves with the new value: concurrent
   * increments are never lost. Rejects when `key` holds something other than
   * a number.
   */
  increment(key: string, by?: number): Promise<number>;
  /** Starts a check-and-set: see {@link PluginStoreAtomic}. */
  atomic(): PluginStoreAtomic;
}

/** Metrics the plugin defines; they appear in `/metrics` as `gateway_plugin_<metric>{plugin=...}`. */
export interface PluginMetrics {
  counter(
    name: string,
    help?: string,
  ): { inc(value?: number, labels?: Record<string, string>): void };
  gauge(name: string, help?: string): { set(value: number, labels?: Record<string, string>): void };
  histogram(name: string, help?: string): {
    observe(value: number, labels?: Record<string, string>): void;
  };
}

/** What every hook and function gets: the plugin's view of the gateway. */
export interface PluginContext<Config = Record<string, unknown>> {
  /** The plugin's settings from `plugins.settings.<name>`, validated. */
  config: Config;
  /** The plugin's name and version. */
  plugin: { name: string; version: string };
  log: PluginLogger;
  /**
   * Publishes on the bus. An object payload is sent as JSON. Throws
   * `NotCapable` on `$` topics, another owner's `fn/...`, or a topic outside
   * the plugin's `bus` grant.
   */
  publish(
    topic: string,
    payload: string | Uint8Array | object,
    meta?: Record<string, string>,
  ): void;
  /**
   * Subscribes to a topic filter (MQTT wildcards); returns the unsubscribe
   * function. Throws `NotCapable` on a filter within `fn/`, a reply topic or
   * `$`, or outside the plugin's `bus` grant; a wider one never receives those.
   */
  subscribe(filter: string, handler: (message: PluginMessage) => void | Promise<void>): () => void;
  /** Sends a request on the bus and resolves with the first reply's payload. */
  request(
    topic: string,
    payload: string | Uint8Array | object,
    options?: { timeout?: number },
  ): Promise<Uint8Array>;
  /**
   * Calls a function (`other.fn`, `worker:orders.create`, `model:add`) with
   * JSON arguments. Within a hook or function, the call gets at most what is
   * left of the current deadline.
   */
  call<T = unknown>(fn: string, args?: unknown, options?: { timeout?: number }): Promise<T>;
  store: PluginStore;
  metrics: PluginMetrics;
}

/** A function's handler: JSON arguments in, a JSON-serialisable result (or promise) out. */
export type PluginFunction<Config = Record<string, unknown>> = (
  // deno-lint-ignore no-explicit-any -- arguments are whatever the caller sends
  args: any,
  ctx: PluginContext<Config>,
) => unknown;

/** A plugin: the default export of its module. */
export interface Plugin<Config = Record<string, unknown>> {
  /** Must equal the file or directory name. */
  name: string;
  version?: string;
  /** Higher runs first in a chain; `onResponse` hooks run in the reverse order. Default 0. */
  priority?: number;
  permissions?: PluginPermissions;
  /**
   * Plugins this one needs, by name, with the versions it works with:
   * `^1.2.3` (same major), `~1.2.3` (same minor), `1.2.3` (exactly) or
   * `>=1.2.3`; a left-out minor or patch counts as 0. It starts after them
   * (its `init` may `ctx.call` their functions), and is refused, with its file
   * in the message, when one is missing, failed, has a version out of range
   * (`plugins/a.ts: requires "b" ^2, found 1.4.0`) or requires it back (a
   * cycle). A reload of a required plugin reloads its dependants only when
   * its major version changes. `plugins.initTimeout` includes the wait.
   *
   * @example
   * ```ts
   * import type { Plugin } from "../sdk/plugin.ts";
   * export default {
   *   name: "orders",
   *   requires: { auth: "^1.2" },
   *   async init(ctx) {
   *     await ctx.call("auth.keys"); // auth has started
   *   },
   * } satisfies Plugin;
   * ```
   */
  requires?: Record<string, string>;
  /**
   * The settings' schema: a JSON Schema object, or a function that returns an
   * error message (or throws) for bad settings. Checked before `init`.
   */
  config?: Record<string, unknown> | ((settings: unknown) => string | void);
  init?(ctx: PluginContext<Config>): void | Promise<void>;
  /** Return nothing to continue, changes to the request, or a response to answer at once. */
  onRequest?(
    req: PluginRequest,
    ctx: PluginContext<Config>,
  ): void | RequestChanges | PluginResponse | Promise<void | RequestChanges | PluginResponse>;
  onResponse?(
    res: PluginResponseView,
    ctx: PluginContext<Config>,
  ): void | ResponseChanges | Promise<void | ResponseChanges>;
  /** Topic filter to handler, subscribed while the plugin is loaded (as `ctx.subscribe`). */
  onMessage?: Record<
    string,
    (message: PluginMessage, ctx: PluginContext<Config>) => void | Promise<void>
  >;
  /** Functions callable as `<name>.<function>` from routes, plugins, workers and MCP. */
  functions?: Record<string, PluginFunction<Config>>;
  stop?(ctx: PluginContext<Config>): void | Promise<void>;
  /**
   * Called on the running version when a saved file (or an admin reload)
   * replaces it: returns the in-memory state to hand to the new version's
   * `restore` (anything structured-cloneable, at most 1 MiB serialised, within
   * 2 s). The swap waits for it; hooks and calls that arrive meanwhile wait
   * too. If it throws, runs late or returns too much, or `restore` fails, the
   * new version is dropped and this one keeps serving, with the reason in
   * `GET /plugins`. Undefined hands nothing over.
   *
   * @example
   * ```ts
   * import type { Plugin } from "../sdk/plugin.ts";
   * let hits = 0;
   * export default {
   *   name: "hits",
   *   onRequest() {
   *     hits++;
   *   },
   *   snapshot: () => ({ hits }),
   *   restore(state: { hits: number }) {
   *     hits = state.hits;
   *   },
   * } satisfies Plugin;
   * ```
   */
  snapshot?(ctx: PluginContext<Config>): unknown;
  /**
   * Called on the new version, after its `init` and before it serves, with
   * what the old version's `snapshot` returned (see {@link Plugin.snapshot}).
   */
  // deno-lint-ignore no-explicit-any -- the state is whatever this plugin's snapshot returned
  restore?(state: any, ctx: PluginContext<Config>): void | Promise<void>;
}
