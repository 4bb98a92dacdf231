/**
 * Gateway worker SDK for Node (≥ 20) and Deno: register functions and bus
 * subscriptions, then `run()`. The worker connects to the Unix socket in
 * `GATEWAY_SOCKET` and speaks the gateway's worker protocol
 * (docs/worker-protocol.md, version 2). Calls run concurrently (async) up to
 * `concurrency`; the worker answers heartbeats, reconnects when the socket
 * drops, and on `stop` or SIGTERM finishes its calls in flight and exits 0.
 *
 * Written in erasable TypeScript (no enums, no parameter properties): Deno runs
 * it as is; for Node, `npm run build` emits `dist/worker.js`.
 *
 * @example
 * ```ts
 * import { Worker } from "./worker.ts";
 *
 * const worker = new Worker();
 * worker.function("echo", (args) => args);
 * worker.function("total", async (args: { ids: string[] }, ctx) => {
 *   // any function through the gateway: a Python worker's, a plugin's
 *   const prices = await worker.call("python.prices", { ids: args.ids });
 *   return { prices, msLeft: ctx.remaining() };
 * });
 * worker.subscribe("orders/#", (event) => worker.log("info", "order", { topic: event.topic }));
 * await worker.run();
 * ```
 *
 * @module
 */

import { AsyncLocalStorage } from "node:async_hooks";
import { Buffer } from "node:buffer";
import { createConnection, type Socket } from "node:net";
import process from "node:process";

const PROTOCOL = 2;

/** What a function learns about its call. */
export interface CallContext {
  id: string | number;
  /** Epoch ms by which the caller wants the answer. */
  deadline: number;
  meta: Record<string, string>;
  /** Aborted when the caller gives up (deadline passed, caller gone). */
  signal: AbortSignal;
  /** Milliseconds left before the deadline. */
  remaining(): number;
}

/**
 * A registered function: JSON arguments in, anything JSON can encode out. A
 * result JSON cannot carry (NaN, Infinity, a BigInt, bytes, a cycle) fails
 * that call with the error type `bad_result`.
 */
// deno-lint-ignore no-explicit-any
export type WorkerFunction = (args: any, ctx: CallContext) => unknown;

/** A bus message delivered to a subscription. */
export interface WorkerEvent {
  topic: string;
  filter: string;
  payload: Uint8Array;
  meta: Record<string, string>;
  /** The payload as UTF-8 text. */
  text(): string;
  /** The payload parsed as JSON. */
  json(): unknown;
}

/** Options of a {@link Worker}; the defaults come from the gateway's environment. */
export interface WorkerOptions {
  /** Calls run at once (default: `GATEWAY_CONCURRENCY`, the config's per-instance concurrency). */
  concurrency?: number;
  socketPath?: string;
  name?: string;
  instance?: number;
  /** Milliseconds to keep trying to reconnect after the socket drops (default 10 000). */
  reconnectTimeout?: number;
}

/**
 * A call made with {@link Worker.call} failed; `type` says how (`timeout`, the
 * callee's error class, ...).
 *
 * @example
 * ```ts
 * import { CallError, Worker } from "./worker.ts";
 * const worker = new Worker();
 * try {
 *   await worker.call("php.tax", { amount: 10 });
 * } catch (error) {
 *   if (error instanceof CallError && error.type === "timeout") console.log("too slow");
 * }
 * ```
 */
export class CallError extends Error {
  readonly type: string;
  readonly traceback?: string;

  constructor(type: string, message: string, traceback?: string) {
    super(`${type}: ${message}`);
    this.name = "CallError";
    this.type = type;
    if (traceback !== undefined) this.traceback = traceback;
  }
}

// deno-lint-ignore no-explicit-any
type Frame = Record<string, any> & { type: string };

interface Waiting {
  resolve(frame: Frame): void;
  timer: ReturnType<typeof setTimeout>;
}

/**
 * A language worker: register with `function`/`subscribe`, then `run()`.
 *
 * @example
 * ```ts
 * import { Worker } from "./worker.ts";
 * const worker = new Worker();
 * worker.function("echo", (args) => args);
 * await worker.run(); // until the gateway says stop, or SIGTERM
 * ```
 */
export class Worker {
  readonly name: string;
  readonly instance: number;
  readonly concurrency: number;
  readonly #socketPath?: string;
  readonly #reconnectTimeout: number;
  readonly #functions = new Map<string, WorkerFunction>();
  readonly #subscriptions = new Map<string, (event: WorkerEvent) => unknown>();
  readonly #waiting = new Map<string, Waiting>();
  readonly #running = new Map<string | number, AbortController>();
  readonly #inFlight = new Set<Promise<void>>();
  readonly #context = new AsyncLocalStorage<CallContext>();
  #socket?: Socket;
  #pending: Buffer = Buffer.alloc(0);
  #maxFrame = 16 * 1024 * 1024;
  #nextId = 0;
  #stopping = false;
  #done?: () => void;

  constructor(options: WorkerOptions = {}) {
    this.#socketPath = options.socketPath ?? process.env.GATEWAY_SOCKET;
    this.name = options.name ?? process.env.GATEWAY_WORKER ?? "worker";
    this.instance = options.instance ?? Number(process.env.GATEWAY_INSTANCE ?? 0);
    this.concurrency = options.concurrency ?? Number(process.env.GATEWAY_CONCURRENCY ?? 64);
    this.#reconnectTimeout = options.reconnectTimeout ?? 10_000;
  }

  /** Registers `fn` as the function `name`. What it throws goes to the caller with its stack. */
  function(name: string, fn: WorkerFunction): this {
    this.#functions.set(name, fn);
    return this;
  }

  /** `handler` gets every bus message on a topic matching `filter` (MQTT wildcards). */
  subscribe(filter: string, handler: (event: WorkerEvent) => unknown): this {
    this.#subscriptions.set(filter, handler);
    if (this.#socket) this.#send({ type: "subscribe", filter });
    return this;
  }

  /** Removes a subscription. */
  unsubscribe(filter: string): void {
    if (this.#subscriptions.delete(filter) && this.#socket) {
      this.#send({ type: "unsubscribe", filter });
    }
  }

  /**
   * Calls `ref` (`owner.name` or `worker:owner.name`) through the gateway and
   * resolves with its result; rejects with a {@link CallError} (of type
   * `bad_arguments`, before anything is sent, for arguments JSON cannot
   * carry). Inside a function the timeout is capped by what is left of that
   * call's deadline.
   */
  call(
    ref: string,
    args: unknown = null,
    options: { timeout?: number; meta?: Record<string, string> } = {},
  ): Promise<unknown> {
    const outer = this.#context.getStore();
    const timeout = Math.min(options.timeout ?? 30_000, outer ? outer.remaining() : Infinity);
    const id = `n${++this.#nextId}`;
    let body: Buffer;
    try {
      body = encodeFrame({
        type: "call",
        id,
        function: ref,
        args,
        timeout: Math.floor(timeout),
        meta: options.meta ?? {},
      });
    } catch (error) {
      const reason = `the arguments of ${ref} cannot be sent as JSON: ${(error as Error).message}`;
      return Promise.reject(new CallError("bad_arguments", reason));
    }
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.#waiting.delete(id);
        this.#send({ type: "cancel", id });
        reject(new CallError("timeout", `${ref} did not answer within ${timeout} ms`));
      }, timeout + 500);
      this.#waiting.set(id, {
        timer,
        resolve: (frame) => {
          if (frame.ok) resolve(frame.value ?? null);
          else reject(new CallError(frame.error.type, frame.error.message, frame.error.traceback));
        },
      });
      this.#write(body);
    });
  }

  /**
   * Publishes on the bus: bytes as they are, a string as UTF-8, anything else
   * as JSON. Throws a TypeError, and sends nothing, for a payload JSON cannot
   * carry.
   */
  publish(topic: string, payload: unknown, meta?: Record<string, string>): void {
    let encoded: { payload: string; encoding: string };
    if (payload instanceof Uint8Array) {
      encoded = { payload: Buffer.from(payload).toString("base64"), encoding: "base64" };
    } else {
      try {
        encoded = {
          payload: typeof payload === "string" ? payload : json(payload),
          encoding: "utf8",
        };
      } catch (error) {
        throw new TypeError(
          `the payload published on "${topic}" cannot be sent as JSON: ${(error as Error).message}`,
        );
      }
    }
    this.#send({ type: "publish", topic, ...encoded, ...(meta ? { meta } : {}) });
  }

  /** Logs through the gateway's log; throws a TypeError for fields JSON cannot carry. */
  log(
    level: "debug" | "info" | "warning" | "error",
    message: string,
    fields: Record<string, unknown> = {},
  ): void {
    try {
      this.#send({ type: "log", level, message, fields });
    } catch (error) {
      const reason = (error as Error).message;
      throw new TypeError(`the fields of log "${message}" cannot be sent as JSON: ${reason}`);
    }
  }

  /** Connects and serves until `stop` or SIGTERM, then exits the process with 0. */
  async run(): Promise<void> {
    if (!this.#socketPath) {
      console.error("gateway worker: GATEWAY_SOCKET is not set (is this run by the gateway?)");
      process.exit(1);
    }
    process.on("SIGTERM", () => this.#stop());
    const finished = new Promise<void>((resolve) => this.#done = resolve);
    await this.#connect();
    await finished;
    process.exit(0);
  }

  async #connect(): Promise<void> {
    const giveUpAt = Date.now() + this.#reconnectTimeout;
    for (let delay = 50;; delay = Math.min(delay * 2, 1000)) {
      try {
        this.#socket = await this.#open();
        break;
      } catch (error) {
        if (Date.now() + delay > giveUpAt) {
          console.error(`gateway worker: cannot connect to ${this.#socketPath}: ${error}`);
          process.exit(1);
        }
        await new Promise((resolve) => setTimeout(resolve, delay));
      }
    }
    this.#send({
      type: "hello",
      protocol: PROTOCOL,
      worker: this.name,
      instance: this.instance,
      // The gateway gives each instance it spawns a secret; without it the hello is refused.
      secret: process.env.GATEWAY_SECRET ?? "",
      pid: process.pid,
      functions: [...this.#functions.keys()],
      subscriptions: [...this.#subscriptions.keys()],
      concurrency: this.concurrency,
      codecs: ["json"],
    });
  }

  #open(): Promise<Socket> {
    return new Promise((resolve, reject) => {
      const socket = createConnection(this.#socketPath!);
      socket.setNoDelay?.(true);
      socket.once("error", reject);
      socket.once("connect", () => {
        socket.off("error", reject);
        socket.on("error", () => {/* 'close' follows */});
        socket.on("data", (chunk: Buffer) => this.#receive(chunk));
        socket.on("close", () => this.#onClose(socket));
        this.#pending = Buffer.alloc(0);
        resolve(socket);
      });
    });
  }

  #onClose(socket: Socket): void {
    if (socket !== this.#socket) return;
    this.#socket = undefined;
    if (this.#stopping) {
      this.#done?.();
      return;
    }
    console.error("gateway worker: connection lost; reconnecting");
    this.#connect();
  }

  #receive(chunk: Buffer): void {
    this.#pending = this.#pending.length ? Buffer.concat([this.#pending, chunk]) : chunk;
    while (this.#pending.length >= 4) {
      const length = this.#pending.readUInt32BE(0);
      if (length > this.#maxFrame) {
        console.error(`gateway worker: frame of ${length} bytes exceeds ${this.#maxFrame}`);
        this.#socket?.destroy();
        return;
      }
      if (this.#pending.length < 4 + length) return;
      const frame = JSON.parse(this.#pending.toString("utf8", 4, 4 + length)) as Frame;
      this.#pending = this.#pending.subarray(4 + length);
      this.#dispatch(frame);
    }
  }

  #dispatch(frame: Frame): void {
    switch (frame.type) {
      case "call":
        this.#track(this.#runCall(frame));
        break;
      case "result": {
        const waiting = this.#waiting.get(frame.id);
        if (!waiting) return;
        this.#waiting.delete(frame.id);
        clearTimeout(waiting.timer);
        waiting.resolve(frame);
        break;
      }
      case "ping":
        this.#send({ type: "pong", id: frame.id });
        break;
      case "event":
        if (!this.#stopping) this.#track(this.#runEvent(frame));
        break;
      case "cancel":
        this.#running.get(frame.id)?.abort();
        break;
      case "welcome":
        this.#maxFrame = frame.maxFrame ?? this.#maxFrame;
        break;
      case "stop":
        this.#stop();
        break;
      case "error":
        console.error(`gateway worker: the gateway refused this worker: ${frame.message}`);
        process.exit(1);
    }
  }

  async #runCall(frame: Frame): Promise<void> {
    const controller = new AbortController();
    this.#running.set(frame.id, controller);
    const deadline = Date.now() + (frame.timeout ?? 30_000);
    const ctx: CallContext = {
      id: frame.id,
      deadline,
      meta: frame.meta ?? {},
      signal: controller.signal,
      remaining: () => Math.max(0, deadline - Date.now()),
    };
    let body: Buffer;
    try {
      const fn = this.#functions.get(frame.function);
      if (!fn) throw new ReferenceError(`${this.name} has no function "${frame.function}"`);
      const value = await this.#context.run(ctx, () => fn(frame.args ?? null, ctx));
      body = this.#result(frame, value);
    } catch (error) {
      const err = error instanceof Error ? error : new Error(String(error));
      body = encodeFrame({
        type: "result",
        id: frame.id,
        ok: false,
        error: { type: err.name, message: err.message, traceback: err.stack },
      });
    } finally {
      this.#running.delete(frame.id);
    }
    if (!controller.signal.aborted) this.#write(body);
  }

  /** The `result` frame of `value`, or of a `bad_result` error when JSON cannot carry it. */
  #result(call: Frame, value: unknown): Buffer {
    try {
      return encodeFrame({ type: "result", id: call.id, ok: true, value: value ?? null });
    } catch (error) {
      const message = `${this.name}.${call.function} returned a value JSON cannot carry: ${
        (error as Error).message
      }`;
      return encodeFrame({
        type: "result",
        id: call.id,
        ok: false,
        error: { type: "bad_result", message },
      });
    }
  }

  async #runEvent(frame: Frame): Promise<void> {
    const handler = this.#subscriptions.get(frame.filter);
    if (!handler) return;
    const payload = frame.encoding === "base64"
      ? new Uint8Array(Buffer.from(frame.payload, "base64"))
      : new Uint8Array(Buffer.from(frame.payload, "utf8"));
    const event: WorkerEvent = {
      topic: frame.topic,
      filter: frame.filter,
      payload,
      meta: frame.meta ?? {},
      text: () => Buffer.from(payload).toString("utf8"),
      json: () => JSON.parse(Buffer.from(payload).toString("utf8")),
    };
    try {
      await handler(event);
    } catch (error) {
      console.error(
        `gateway worker: subscription ${frame.filter} failed on ${frame.topic}:`,
        error,
      );
    }
  }

  #track(work: Promise<void>): void {
    this.#inFlight.add(work);
    work.finally(() => this.#inFlight.delete(work));
  }

  /** Finishes the calls in flight, then closes the socket (which ends `run`). */
  async #stop(): Promise<void> {
    if (this.#stopping) return;
    this.#stopping = true;
    while (this.#inFlight.size > 0) await Promise.allSettled([...this.#inFlight]);
    if (this.#socket) this.#socket.end();
    else this.#done?.();
  }

  /** Writes `frame`; throws a TypeError, and writes nothing, when JSON cannot carry it. */
  #send(frame: Frame): void {
    this.#write(encodeFrame(frame));
  }

  #write(bytes: Buffer): void {
    this.#socket?.write(bytes);
  }
}

/**
 * `value` as JSON, or a TypeError saying what JSON cannot carry and where
 * (`JSON.stringify` would turn NaN and Infinity into null and bytes into an
 * object of indexes without a word; it throws for BigInts and cycles).
 */
function json(value: unknown): string {
  return JSON.stringify(value, function (this: Record<string, unknown>, key, item) {
    const original = this[key];
    const problem = typeof item === "number" && !Number.isFinite(item)
      ? String(item)
      : typeof item === "bigint"
      ? `a BigInt (${item}n)`
      : ArrayBuffer.isView(original) || original instanceof ArrayBuffer
      ? `a ${original.constructor.name} (bytes: send base64 text)`
      : undefined;
    if (problem === undefined) return item;
    const where = key ? ` at key ${JSON.stringify(key)}` : "";
    throw new TypeError(`${problem} has no JSON form${where}`);
  });
}

/** One frame: the 4-byte big-endian length, then the JSON body (see {@link json}). */
function encodeFrame(frame: Frame): Buffer {
  const body = Buffer.from(json(frame), "utf8");
  const framed = Buffer.allocUnsafe(4 + body.length);
  framed.writeUInt32BE(body.length, 0);
  body.copy(framed, 4);
  return framed;
}
