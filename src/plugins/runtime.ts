/**
 * The plugin side of the sandbox: this module is the entry point of every
 * plugin's Worker. It imports the plugin, checks it and its settings, runs
 * `init`, and then runs hooks, functions and message handlers when the host
 * asks, giving the plugin a `ctx` whose every operation is a message to the
 * host. It has no access to anything the Worker's permissions do not allow.
 *
 * @module
 */

/// <reference lib="deno.worker" />

import type {
  Plugin,
  PluginContext,
  PluginMessage,
  PluginRequest,
  PluginResponseView,
  PluginStoreAtomic,
} from "../../sdk/plugin.ts";
import type {
  AskMessage,
  BodyData,
  HookResult,
  HostMessage,
  MessageData,
  PluginErrorInfo,
  PluginInfo,
  RequestData,
  ResponseData,
  RuntimeMessage,
  StoreMutation,
} from "./messages.ts";
import { filterError, topicError } from "../bus/topic.ts";
import { type BusIdentity, publishRefusal, subscribeRefusal } from "../bus/access.ts";

const encoder = new TextEncoder();
const decoder = new TextDecoder();
// deno-lint-ignore no-control-regex -- matching terminal colour escapes is the point
const ANSI = /\x1b\[[0-9;]*m/g;

let plugin: Plugin;
let pluginUrl = "";
let baseContext: PluginContext;
let nextAsk = 1;
const asks = new Map<number, PromiseWithResolvers<unknown>>();
let nextSubscription = 1;
const subscriptions = new Map<number, (message: PluginMessage) => void | Promise<void>>();
/** Resolved by the host's `init`: once what the plugin requires has started. */
const initAllowed = Promise.withResolvers<void>();

function send(message: RuntimeMessage): void {
  self.postMessage(message);
}

function ask(message: AskMessage): Promise<unknown> {
  const id = nextAsk++;
  const pending = Promise.withResolvers<unknown>();
  asks.set(id, pending);
  send({ kind: "ask", id, ...message } as RuntimeMessage);
  return pending.promise;
}

function toBytes(payload: string | Uint8Array | object): Uint8Array {
  if (payload instanceof Uint8Array) return payload;
  return encoder.encode(typeof payload === "string" ? payload : JSON.stringify(payload));
}

/** Where in the plugin's own files an error happened: the first stack frame there. */
function errorInfo(error: unknown): PluginErrorInfo {
  const base = pluginUrl.replace(/[^/]*$/, "");
  // Deno colours the location in some messages (import errors): strip the escapes first.
  const text = (error instanceof Error ? `${error.message}\n${error.stack ?? ""}` : String(error))
    .replace(ANSI, "");
  let at: string | undefined;
  if (base) {
    const escaped = base.replace(/[.*+?^${}()|[\]\\]/g, "\\$&");
    const found = new RegExp(`${escaped}[^\\s:)]*:\\d+(?::\\d+)?`).exec(text);
    const [, file, position] = found ? /^(.*?)(:\d+(?::\d+)?)$/.exec(found[0])! : [];
    if (file) at = decodeURIComponent(new URL(file).pathname) + position;
  }
  if (error instanceof Error) {
    return {
      type: error.name,
      message: error.message.replace(ANSI, ""),
      stack: error.stack?.replace(ANSI, ""),
      ...(at ? { at } : {}),
    };
  }
  return { type: "Error", message: String(error), ...(at ? { at } : {}) };
}

/** A `ctx` whose calls and requests get at most what is left until `deadline`. */
function contextUntil(deadline: number): PluginContext {
  const left = (timeout?: number) => Math.min(deadline, Date.now() + (timeout ?? Infinity));
  return {
    ...baseContext,
    call: (fn, args, options) =>
      ask({ op: "call", fn, args: args ?? null, deadline: left(options?.timeout) }) as never,
    request: (topic, payload, options) =>
      ask({
        op: "request",
        topic,
        payload: toBytes(payload),
        deadline: left(options?.timeout ?? 5000),
      }) as Promise<Uint8Array>,
  };
}

function bodyReaders(work: number) {
  let body: Promise<Uint8Array> | undefined;
  const bytes = () => body ??= ask({ op: "body", work }) as Promise<Uint8Array>;
  return {
    bytes,
    text: async () => decoder.decode(await bytes()),
    json: async <T>() => JSON.parse(decoder.decode(await bytes())) as T,
  };
}

function asMessage(data: MessageData): PluginMessage {
  const { replyId } = data;
  return {
    topic: data.topic,
    payload: data.payload,
    source: data.source,
    meta: data.meta,
    text: () => decoder.decode(data.payload),
    json: <T>() => JSON.parse(decoder.decode(data.payload)) as T,
    ...(replyId === undefined ? {} : {
      reply: (payload: string | Uint8Array | object) =>
        send({ kind: "reply", replyId, payload: toBytes(payload) }),
    }),
  };
}

function isResponse(value: object): value is { status: number } {
  return typeof (value as { status?: unknown }).status === "number";
}

async function onRequest(id: number, deadline: number, data: RequestData): Promise<HookResult> {
  const request: PluginRequest = { ...data, ...bodyReaders(id) };
  const result = await plugin.onRequest!(request, contextUntil(deadline));
  if (!result) return {};
  if (isResponse(result)) {
    return {
      respond: result as { status: number; headers?: Record<string, string>; body?: BodyData },
    };
  }
  return result as HookResult;
}

async function onResponse(
  id: number,
  deadline: number,
  request: RequestData,
  response: ResponseData,
): Promise<HookResult> {
  const view: PluginResponseView = { ...response, request, ...bodyReaders(id) };
  return (await plugin.onResponse!(view, contextUntil(deadline))) ?? {};
}

async function validateSettings(settings: unknown): Promise<string | undefined> {
  const schema = plugin.config;
  if (schema === undefined) return undefined;
  if (typeof schema === "function") {
    try {
      return schema(settings) || undefined;
    } catch (error) {
      return error instanceof Error ? error.message : String(error);
    }
  }
  const { Ajv } = await import("ajv");
  const validate = new Ajv({ allErrors: true, useDefaults: true }).compile(schema);
  if (validate(settings)) return undefined;
  return validate.errors!.map((error) => {
    const { additionalProperty, allowedValues } = error.params as {
      additionalProperty?: string;
      allowedValues?: unknown[];
    };
    const detail = additionalProperty !== undefined
      ? `: "${additionalProperty}"`
      : allowedValues
      ? `: ${allowedValues.map((value) => JSON.stringify(value)).join(", ")}`
      : "";
    return `${error.instancePath || "(settings)"} ${error.message}${detail}`;
  }).join("; ");
}

function metricSender(type: "counter" | "gauge" | "histogram", name: string, help: string) {
  return (value: number, labels: Record<string, string> = {}) =>
    send({ kind: "metric", type, name, help, value, labels });
}

function describe(name: string): PluginInfo {
  return {
    name,
    version: plugin.version ?? "0.0.0",
    priority: plugin.priority ?? 0,
    permissions: (plugin.permissions ?? {}) as Record<string, unknown>,
    hooks: { onRequest: !!plugin.onRequest, onResponse: !!plugin.onResponse },
    functions: Object.keys(plugin.functions ?? {}),
    messages: Object.keys(plugin.onMessage ?? {}),
    requires: { ...plugin.requires },
    handover: { snapshot: !!plugin.snapshot, restore: !!plugin.restore },
  };
}

/** `requires` must map plugin names to range strings; the host parses the ranges. */
function checkRequires(requires: unknown): void {
  if (requires === undefined) return;
  if (
    !requires || typeof requires !== "object" || Array.isArray(requires) ||
    Object.values(requires).some((range) => typeof range !== "string")
  ) {
    throw new TypeError('requires must map plugin names to version ranges: { "auth": "^1.2" }');
  }
}

async function load(
  url: string,
  name: string,
  settings: unknown,
  probe: boolean,
  bus: BusIdentity,
): Promise<void> {
  pluginUrl = url;
  try {
    const module = await import(url);
    const candidate = module.default as Plugin | undefined;
    if (!candidate || typeof candidate !== "object") {
      throw new TypeError("the plugin module must default-export a plugin object");
    }
    if (candidate.name !== name) {
      throw new TypeError(
        `the plugin's name is ${JSON.stringify(candidate.name)}, but its file says "${name}"`,
      );
    }
    plugin = candidate;
    settings ??= {};
    for (const filter of Object.keys(plugin.onMessage ?? {})) {
      const problem = filterError(filter);
      if (problem) throw new TypeError(`onMessage: ${problem}`);
    }
    checkRequires(plugin.requires);
    if (probe) {
      send({ kind: "loaded", info: describe(name) });
      return;
    }
    send({ kind: "imported", info: describe(name) });
    await initAllowed.promise;
    const problem = await validateSettings(settings);
    if (problem) throw new TypeError(`plugins.settings.${name}: ${problem}`);
    const log =
      (level: "debug" | "info" | "warn" | "error") => (message: string, fields?: object) =>
        send({ kind: "log", level, message, ...(fields ? { fields } : {}) });
    baseContext = {
      config: settings as Record<string, unknown>,
      plugin: { name, version: plugin.version ?? "0.0.0" },
      log: { debug: log("debug"), info: log("info"), warn: log("warn"), error: log("error") },
      publish: (topic, payload, meta = {}) => {
        const problem = topicError(topic);
        if (problem) throw new TypeError(problem);
        // The host refuses it too: this only makes the refusal the caller's error.
        const refusal = publishRefusal(bus, topic);
        if (refusal) throw new Deno.errors.NotCapable(refusal);
        send({ kind: "publish", topic, payload: toBytes(payload), meta });
      },
      subscribe: (filter, handler) => {
        const problem = filterError(filter);
        if (problem) throw new TypeError(problem);
        const refusal = subscribeRefusal(bus, filter);
        if (refusal) throw new Deno.errors.NotCapable(refusal);
        const subscription = nextSubscription++;
        subscriptions.set(subscription, handler);
        send({ kind: "subscribe", subscription, filter });
        return () => {
          if (subscriptions.delete(subscription)) send({ kind: "unsubscribe", subscription });
        };
      },
      call: () => Promise.reject(new Error("unreachable")),
      request: () => Promise.reject(new Error("unreachable")),
      store: {
        get: (key) => ask({ op: "store.get", key }) as never,
        set: async (key, value, options) => {
          await ask({ op: "store.set", key, value, ttl: options?.ttl });
        },
        delete: async (key) => {
          await ask({ op: "store.delete", key });
        },
        list: (prefix = "", limit = 1000) => ask({ op: "store.list", prefix, limit }) as never,
        getEntry: (key) => ask({ op: "store.getEntry", key }) as never,
        increment: (key, by = 1) => ask({ op: "store.increment", key, by }) as Promise<number>,
        atomic: () => {
          const checks: { key: string; versionstamp: string | null }[] = [];
          const mutations: StoreMutation[] = [];
          const operation: PluginStoreAtomic = {
            check(key, versionstamp) {
              checks.push({ key, versionstamp });
              return operation;
            },
            set(key, value, options) {
              mutations.push({ type: "set", key, value, ttl: options?.ttl });
              return operation;
            },
            delete(key) {
              mutations.push({ type: "delete", key });
              return operation;
            },
            commit: () => ask({ op: "store.atomic", checks, mutations }) as never,
          };
          return operation;
        },
      },
      metrics: {
        counter: (metric, help = metric) => {
          const emit = metricSender("counter", metric, help);
          return { inc: (value = 1, labels) => emit(value, labels) };
        },
        gauge: (metric, help = metric) => {
          const emit = metricSender("gauge", metric, help);
          return { set: (value, labels) => emit(value, labels) };
        },
        histogram: (metric, help = metric) => {
          const emit = metricSender("histogram", metric, help);
          return { observe: (value, labels) => emit(value, labels) };
        },
      },
    };
    baseContext = contextUntil(Infinity);
    await plugin.init?.(baseContext);
    for (const [filter, handler] of Object.entries(plugin.onMessage ?? {})) {
      baseContext.subscribe(filter, (message) => handler(message, baseContext));
    }
    send({ kind: "loaded", info: describe(name) });
  } catch (error) {
    send({ kind: "load-failed", error: errorInfo(error) });
  }
}

async function work(message: HostMessage & { id: number }): Promise<unknown> {
  switch (message.kind) {
    case "request":
      return await onRequest(message.id, message.deadline, message.request);
    case "response":
      return await onResponse(message.id, message.deadline, message.request, message.response);
    case "call": {
      const fn = plugin.functions?.[message.fn];
      if (!fn) {
        throw new ReferenceError(
          `plugin "${baseContext.plugin.name}" has no function "${message.fn}"`,
        );
      }
      return await fn(message.args, contextUntil(message.deadline));
    }
    case "stop":
      return await plugin.stop?.(baseContext);
    case "snapshot": {
      const state = await plugin.snapshot?.(contextUntil(message.deadline));
      if (state === undefined) return undefined;
      const { serialize } = await import("node:v8");
      return new Uint8Array(serialize(state));
    }
    case "restore": {
      const { deserialize } = await import("node:v8");
      await plugin.restore?.(deserialize(message.state), contextUntil(message.deadline));
      return undefined;
    }
  }
}

self.onmessage = (event: MessageEvent<HostMessage>) => {
  const message = event.data;
  switch (message.kind) {
    case "load":
      void load(message.url, message.name, message.settings, message.probe, {
        owner: `plugin:${message.name}`,
        name: message.name,
        grant: message.bus,
      });
      return;
    case "init":
      initAllowed.resolve();
      return;
    case "ping":
      send({ kind: "pong", id: message.id });
      return;
    case "answer": {
      const pending = asks.get(message.id);
      if (!pending) return;
      asks.delete(message.id);
      if (message.error) {
        pending.reject(
          Object.assign(new Error(message.error.message), { name: message.error.type }),
        );
      } else {
        pending.resolve(message.value);
      }
      return;
    }
    case "message": {
      const handler = subscriptions.get(message.subscription);
      if (!handler) return;
      (async () => await handler(asMessage(message.message)))().catch((error) =>
        send({
          kind: "log",
          level: "error",
          message: `handler for ${message.message.topic} failed: ${errorInfo(error).message}`,
          fields: { at: errorInfo(error).at },
        })
      );
      return;
    }
    default:
      work(message).then(
        (value) => {
          try {
            send({ kind: "done", id: message.id, value });
          } catch (error) {
            // A result that cannot cross to the gateway (a function, a symbol) fails its call.
            send({ kind: "failed", id: message.id, error: errorInfo(error) });
          }
        },
        (error) => send({ kind: "failed", id: message.id, error: errorInfo(error) }),
      );
  }
};
