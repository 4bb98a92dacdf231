/**
 * One loaded version of one plugin: its Worker (started with exactly the
 * permissions planned for it), the work in flight there with its deadlines
 * (a {@link PendingCalls} table), its {@link Heartbeat}, and the answers to
 * what the plugin asks of the gateway through `ctx`.
 *
 * @module
 */

import { pathToFileURL } from "node:url";
import type {
  AskMessage,
  HookResult,
  HostMessage,
  MessageData,
  PluginErrorInfo,
  PluginInfo,
  RequestData,
  ResponseData,
  RuntimeMessage,
} from "./messages.ts";
import type { PluginSource } from "./discover.ts";
import type { BusGrant } from "../bus/access.ts";
import { Heartbeat } from "../supervision/heartbeat.ts";
import { PendingCalls } from "../supervision/pending.ts";

/** How often an idle plugin Worker is pinged, and how many missed pings mean it is hung. */
const HEARTBEAT_MS = 5000;
const MISSED_HEARTBEATS = 3;
/** The deadline of work sent with none (a call from init or onMessage without a timeout). */
const DEFAULT_TIMEOUT_MS = 30_000;

/** What a sandbox needs from the gateway to answer its plugin's `ctx`. */
export interface SandboxServices {
  /** Answers an ask (`ctx.call`, `ctx.request`, `ctx.store.*`); the `body` op is the sandbox's own. */
  ask(sandbox: PluginSandbox, ask: Exclude<AskMessage, { op: "body" }>): Promise<unknown>;
  /** Everything else the plugin sends: publish, subscribe, reply, log, metric. */
  notify(sandbox: PluginSandbox, message: RuntimeMessage): void;
  /** The Worker of a loaded sandbox died of an error its plugin did not catch, or hung idle. */
  crashed(sandbox: PluginSandbox, error: PluginErrorInfo): void;
}

/**
 * A plugin error that crossed the Worker boundary, or a deadline the sandbox
 * enforced; `kind` says which (`threw`, `timeout`, `gone`).
 *
 * @example
 * ```ts
 * import { PluginError } from "./sandbox.ts";
 * const error = new PluginError({ type: "TypeError", message: "x is undefined", at: "/p/a.ts:3:9" }, "threw");
 * error.message; // "x is undefined (at /p/a.ts:3:9)"
 * ```
 */
export class PluginError extends Error {
  constructor(
    readonly info: PluginErrorInfo,
    readonly kind: "threw" | "timeout" | "gone",
  ) {
    super(info.at ? `${info.message} (at ${info.at})` : info.message);
    this.name = "PluginError";
  }
}

/** The state of a sandbox, in the order it moves through them. */
export type SandboxState = "loading" | "ready" | "stopping" | "stopped";

/** What the sandbox keeps with work in flight: the body reader of a hook. */
type Work = (() => Promise<Uint8Array>) | undefined;

const RUNTIME = new URL("./runtime.ts", import.meta.url);

/**
 * A plugin version in its Worker.
 *
 * @example
 * ```ts
 * import { PluginSandbox } from "./sandbox.ts";
 * // const sandbox = new PluginSandbox(source, { read: [source.root] }, services);
 * // const info = await sandbox.load(settings, 10_000);
 * // const result = await sandbox.onRequest(request, Date.now() + 1000, body);
 * // await sandbox.stop(5000);
 * ```
 */
export class PluginSandbox {
  readonly #worker: Worker;
  readonly #work: PendingCalls<Work>;
  readonly #heartbeat: Heartbeat;
  readonly #loaded = Promise.withResolvers<PluginInfo>();
  /** Resolves once what the plugin requires has started; its `init` runs after. */
  #ready: (info: PluginInfo) => Promise<void> = () => Promise.resolve();
  #state: SandboxState = "loading";
  info?: PluginInfo;
  readonly loadedAt = new Date();

  constructor(
    readonly source: PluginSource,
    readonly permissions: Deno.PermissionOptionsObject,
    readonly services: SandboxServices,
  ) {
    this.#worker = new Worker(RUNTIME, {
      type: "module",
      name: `plugin:${source.name}`,
      deno: { permissions },
    });
    this.#work = new PendingCalls<Work>({
      label: `plugin "${source.name}"`,
      timeoutError: (message) => new PluginError({ type: "TimeoutError", message }, "timeout"),
    });
    this.#heartbeat = new Heartbeat(HEARTBEAT_MS, MISSED_HEARTBEATS, {
      ping: () => this.#post({ kind: "ping", id: 0 }),
      busy: () => this.#work.size > 0,
      hung: (silent) => {
        const info = {
          type: "Hung",
          message: `its worker missed heartbeats (silent ${silent} ms)`,
        };
        this.terminate(info);
        services.crashed(this, info);
      },
    });
    this.#worker.onmessage = (event: MessageEvent<RuntimeMessage>) => {
      this.#heartbeat.seen();
      this.#receive(event.data);
    };
    // An error nothing in the plugin caught (a throw in a timer, an unhandled rejection) ends
    // the Worker: fail what is in flight and let the host start a new one.
    this.#worker.onerror = (event) => {
      event.preventDefault();
      const info = { type: "Error", message: event.message ?? "the plugin's worker failed" };
      const wasReady = this.#state === "ready";
      this.terminate(info);
      if (wasReady) services.crashed(this, info);
    };
  }

  get state(): SandboxState {
    return this.#state;
  }

  /** Work sent and not yet answered. */
  get inFlight(): number {
    return this.#work.size;
  }

  /**
   * Imports the plugin and (unless `probe`) checks its settings and runs
   * `init`, once `ready` resolved for what it said about itself (its
   * requirements have started). Rejects with a {@link PluginError} that
   * names the file and line; the sandbox is terminated then.
   */
  async load(
    settings: unknown,
    timeout: number,
    probe = false,
    bus?: BusGrant,
    ready?: (info: PluginInfo) => Promise<void>,
  ): Promise<PluginInfo> {
    if (ready) this.#ready = ready;
    const url = pathToFileURL(this.source.entry).href;
    this.#post({ kind: "load", url, name: this.source.name, settings, probe, bus });
    const timer = setTimeout(() =>
      this.#loaded.reject(
        new PluginError({
          type: "TimeoutError",
          message: `load and init took longer than ${timeout} ms`,
          at: this.source.entry,
        }, "timeout"),
      ), timeout);
    try {
      this.info = await this.#loaded.promise;
      this.#state = "ready";
      this.#heartbeat.start();
      return this.info;
    } catch (error) {
      this.terminate();
      throw error;
    } finally {
      clearTimeout(timer);
    }
  }

  /** Runs `onRequest`; `body` reads the request body when the plugin asks for it. */
  onRequest(
    request: RequestData,
    deadline: number,
    body: () => Promise<Uint8Array>,
  ): Promise<HookResult> {
    return this.#send(
      "onRequest",
      (id) => ({ kind: "request", id, deadline, request }),
      deadline,
      body,
    ) as Promise<
      HookResult
    >;
  }

  /** Runs `onResponse`; `body` reads the response body when the plugin asks for it. */
  onResponse(
    request: RequestData,
    response: ResponseData,
    deadline: number,
    body: () => Promise<Uint8Array>,
  ): Promise<HookResult> {
    return this.#send(
      "onResponse",
      (id) => ({ kind: "response", id, deadline, request, response }),
      deadline,
      body,
    ) as Promise<HookResult>;
  }

  /** Runs one of the plugin's functions. */
  call(fn: string, args: unknown, deadline: number): Promise<unknown> {
    return this.#send(
      `function ${fn}`,
      (id) => ({ kind: "call", id, deadline, fn, args }),
      deadline,
    );
  }

  /** The plugin's `snapshot()` as structured-clone bytes (undefined: it handed nothing over). */
  async snapshot(deadline: number): Promise<Uint8Array | undefined> {
    const build = (id: number): HostMessage => ({ kind: "snapshot", id, deadline });
    return await this.#send("snapshot", build, deadline) as Uint8Array | undefined;
  }

  /** Runs the plugin's `restore(state)` with bytes an older version's {@link snapshot} gave. */
  async restore(state: Uint8Array, deadline: number): Promise<void> {
    await this.#send("restore", (id) => ({ kind: "restore", id, deadline, state }), deadline);
  }

  /** Hands a bus message to the plugin's subscription. */
  deliver(subscription: number, message: MessageData): void {
    if (this.#state === "ready") this.#post({ kind: "message", subscription, message });
  }

  /** Resolves true when the Worker's event loop answers within `timeout` ms. */
  ping(timeout: number): Promise<boolean> {
    return this.#send("ping", (id) => ({ kind: "ping", id }), Date.now() + timeout).then(
      () => true,
      () => false,
    );
  }

  /**
   * Lets work in flight finish (up to `timeout` ms), runs the plugin's `stop`
   * and terminates the Worker. Idempotent.
   */
  async stop(timeout: number): Promise<void> {
    if (this.#state === "stopped" || this.#state === "stopping") return;
    this.#state = "stopping";
    const deadline = Date.now() + timeout;
    await this.#work.idle(timeout);
    if (Date.now() < deadline && this.info) {
      await this.#send("stop", (id) => ({ kind: "stop", id, deadline }), deadline).catch(() => {});
    }
    this.terminate();
  }

  /** Ends the Worker at once; work in flight fails with `gone` (and `why`, when given). */
  terminate(why?: PluginErrorInfo): void {
    if (this.#state === "stopped") return;
    this.#state = "stopped";
    this.#heartbeat.stop();
    this.#worker.terminate();
    const info = why ?? { type: "Terminated", message: `plugin "${this.source.name}" was stopped` };
    this.#loaded.reject(new PluginError(info, "gone"));
    this.#work.failAll(new PluginError(info, "gone"));
  }

  #post(message: HostMessage): void {
    this.#worker.postMessage(message);
  }

  #send(
    what: string,
    build: (id: number) => HostMessage,
    deadline: number,
    body?: () => Promise<Uint8Array>,
  ): Promise<unknown> {
    if (this.#state === "stopped") {
      return Promise.reject(
        new PluginError(
          { type: "Terminated", message: `plugin "${this.source.name}" is stopped` },
          "gone",
        ),
      );
    }
    const due = Number.isFinite(deadline) ? deadline : Date.now() + DEFAULT_TIMEOUT_MS;
    const { id, result } = this.#work.open(what, due, body);
    this.#post(build(id));
    return result;
  }

  #receive(message: RuntimeMessage): void {
    switch (message.kind) {
      case "imported":
        this.#ready(message.info).then(
          () => {
            if (this.#state === "loading") this.#post({ kind: "init" });
          },
          (error) =>
            this.#loaded.reject(
              error instanceof PluginError ? error : new PluginError({
                type: (error as Error).name ?? "Error",
                message: (error as Error).message ?? String(error),
                at: this.source.entry,
              }, "threw"),
            ),
        );
        return;
      case "loaded":
        this.#loaded.resolve(message.info);
        return;
      case "load-failed":
        this.#loaded.reject(new PluginError(message.error, "threw"));
        return;
      case "done":
        this.#work.resolve(message.id, message.value);
        return;
      case "pong":
        this.#work.resolve(message.id, undefined);
        return;
      case "failed":
        this.#work.reject(message.id, new PluginError(message.error, "threw"));
        return;
      case "ask":
        void this.#answer(message);
        return;
      default:
        this.services.notify(this, message);
    }
  }

  async #answer(message: RuntimeMessage & { kind: "ask" }): Promise<void> {
    try {
      let value: unknown;
      if (message.op === "body") {
        const body = this.#work.data(message.work);
        if (!body) throw new Error("the body is only readable while its hook runs");
        value = await body();
      } else {
        value = await this.services.ask(this, message);
      }
      if (this.#state !== "stopped") this.#post({ kind: "answer", id: message.id, value });
    } catch (error) {
      const info = error instanceof Error
        ? { type: (error as { type?: string }).type ?? error.name, message: error.message }
        : { type: "Error", message: String(error) };
      if (this.#state !== "stopped") this.#post({ kind: "answer", id: message.id, error: info });
    }
  }
}
