/**
 * One process of a language worker: spawned with `Deno.Command` and the
 * `GATEWAY_*` environment (socket, worker, instance, concurrency, and a
 * secret of its own that its `hello` must repeat), its
 * stdout and stderr lines logged with the worker and instance, its `hello`
 * awaited within `startTimeout`, pinged every `heartbeat` (a
 * {@link Heartbeat}), its calls in flight in a {@link PendingCalls} table
 * (counted in the worker's {@link CallStats}), and stopped gracefully:
 * `stop`, then SIGTERM, then SIGKILL, each after `stopTimeout`.
 *
 * @module
 */

import { getLogger } from "@logtape/logtape";
import type { Bus, Subscription } from "../bus/bus.ts";
import type { BusScope } from "../bus/scope.ts";
import type { BusMessage, MessageSource } from "../bus/message.ts";
import { callFunction, errorBody, FunctionCallError, parseFunctionRef } from "../functions/call.ts";
import type { WorkerConfig } from "./config.ts";
import type { WorkerConnection } from "./connection.ts";
import type { FrameMessage } from "./frame.ts";
import { Heartbeat } from "../supervision/heartbeat.ts";
import { PendingCalls } from "../supervision/pending.ts";
import { encodeHex } from "../util/hex.ts";
import { timingSafeEqual } from "../util/timing_safe_equal.ts";
import type { PoolMember } from "../supervision/pool.ts";
import type { CallStats } from "../supervision/stats.ts";
import {
  type Call,
  type EncodedPayload,
  type ErrorInfo,
  type Hello,
  parseWorkerMessage,
  PROTOCOL_VERSION,
  type WorkerMessage,
} from "./protocol.ts";

const logger = getLogger(["gateway", "workers"]);
const utf8 = new TextDecoder("utf-8", { fatal: true });
const encoder = new TextEncoder();
/** Timeout of a worker's own call when its frame gives none. */
const DEFAULT_CALL_TIMEOUT = 30_000;
/** Heartbeat intervals of silence after which an instance counts as hung. */
const MISSED_HEARTBEATS = 3;
/** Lines of stderr kept to explain an exit. */
const STDERR_TAIL = 5;
/** Bytes queued for a worker above which event delivery waits for its socket. */
const EVENT_BACKLOG_BYTES = 4 * 1024 * 1024;
/** How long an exit waits for the rest of the process's output. */
const OUTPUT_DRAIN_MS = 100;

/** Where an instance is in its life. */
export type InstanceState =
  | "starting"
  | "ready"
  | "disconnected"
  | "draining"
  | "stopping"
  | "exited";

/** How an instance ended. */
export interface InstanceExit {
  code: number;
  signal: string | null;
  /** A sentence for logs and `GET /workers`. */
  reason: string;
  /** Whether the gateway asked it to stop (then it is not a crash). */
  requested: boolean;
  /** The last step of a requested stop that was needed. */
  stoppedBy?: "stop" | "SIGTERM" | "SIGKILL";
  /** Milliseconds from spawn to exit. */
  uptime: number;
}

/** What an instance uses of the gateway. */
export interface InstanceServices {
  bus: Bus;
  socketPath: string;
  /** The worker's counts and timings, which every instance's calls add to. */
  stats: CallStats;
}

/**
 * One running worker process.
 *
 * @example
 * ```ts
 * import { Bus } from "../bus/bus.ts";
 * import { MetricsRegistry } from "../observability/metrics.ts";
 * import { SupervisionMetrics } from "../supervision/metrics.ts";
 * import { CallStats } from "../supervision/stats.ts";
 * import { WorkerConfig } from "./config.ts";
 * import { WorkerInstance } from "./instance.ts";
 * const config = WorkerConfig.parse({ name: "echo", command: ["python3", "echo.py"] });
 * const stats = new CallStats(new SupervisionMetrics(new MetricsRegistry()).of("worker", "echo"));
 * const instance = new WorkerInstance(config, 0, {
 *   bus: new Bus(), socketPath: "/tmp/workers.sock", stats,
 * });
 * await instance.ready; // once the socket server attached its hello
 * await instance.call("echo", { hi: 1 }, Date.now() + 1000, {});
 * await instance.stop();
 * ```
 */
export class WorkerInstance implements PoolMember {
  readonly spawnedAt = Date.now();
  readonly pid: number;
  readonly label: string;
  state: InstanceState = "starting";
  functions: string[] = [];
  concurrency: number;
  /** Settles when the process has exited; never rejects. */
  readonly exited: Promise<InstanceExit>;
  /** Called when it starts taking calls and whenever a call of it settles. */
  onAvailable: () => void = () => {};
  readonly #services: InstanceServices;
  readonly #child: Deno.ChildProcess;
  readonly #pending: PendingCalls;
  readonly #heartbeat: Heartbeat;
  readonly #subscriptions = new Map<string, Subscription>();
  /** The bus as the worker may use it: out of `fn/`, reply and `$` topics. */
  readonly #bus: BusScope;
  /** Ids of the calls the worker made that wait for their result, and those it cancelled. */
  readonly #outbound = new Set<string | number>();
  readonly #cancelled = new Set<string | number>();
  readonly #ready = Promise.withResolvers<void>();
  readonly #source: MessageSource;
  readonly #stderrTail: string[] = [];
  /** 32 random bytes as hex, in `GATEWAY_SECRET`: only the spawned process knows it. */
  readonly #secret = encodeHex(crypto.getRandomValues(new Uint8Array(32)));
  #connection?: WorkerConnection;
  #nextPing = 1;
  #waitTimer?: ReturnType<typeof setTimeout>;
  #failure?: string;
  #stopping?: Promise<void>;
  #stoppedBy?: InstanceExit["stoppedBy"];

  /**
   * Spawns the process. Throws when the command cannot be started (not
   * found, not executable), with a message that says which.
   */
  constructor(
    readonly config: WorkerConfig,
    readonly index: number,
    services: InstanceServices,
  ) {
    this.#services = services;
    this.label = `worker "${config.name}" instance ${index}`;
    this.concurrency = config.concurrency;
    this.#pending = new PendingCalls({ label: this.label, stats: services.stats });
    this.#heartbeat = new Heartbeat(config.heartbeat, MISSED_HEARTBEATS, {
      ping: () => {
        if (this.#connection?.open) this.#connection.send({ type: "ping", id: this.#nextPing++ });
      },
      busy: () => this.#pending.size > 0,
      hung: (silent) => this.#kill(`missed heartbeats: silent for ${silent} ms`),
    });
    this.#source = {
      listener: config.name,
      protocol: "worker",
      connectionId: `${config.name}/${index}`,
    };
    const [program, ...args] = config.command;
    try {
      this.#child = new Deno.Command(program, {
        args,
        cwd: config.cwd,
        env: {
          ...config.env,
          GATEWAY_SOCKET: services.socketPath,
          GATEWAY_WORKER: config.name,
          GATEWAY_INSTANCE: String(index),
          GATEWAY_CONCURRENCY: String(config.concurrency),
          GATEWAY_SECRET: this.#secret,
        },
        stdin: "null",
        stdout: "piped",
        stderr: "piped",
      }).spawn();
    } catch (error) {
      const why = error instanceof Deno.errors.NotFound
        ? config.cwd !== undefined && !existsDir(config.cwd)
          ? `the directory "${config.cwd}" does not exist`
          : `"${program}" was not found (is it installed and on PATH?)`
        : error instanceof Deno.errors.PermissionDenied
        ? `"${program}" is not executable`
        : (error as Error).message;
      throw new Error(`cannot start ${JSON.stringify(config.command)}: ${why}`);
    }
    this.pid = this.#child.pid;
    this.#bus = services.bus.scoped({
      owner: `worker/${config.name}/${index}/${this.pid}`,
      name: config.name,
    });
    const output = Promise.all([
      this.#pump(this.#child.stdout, "stdout"),
      this.#pump(this.#child.stderr, "stderr"),
    ]);
    // The last lines explain an exit; a grandchild holding the pipes open must not delay it long.
    this.exited = this.#child.status.then(async (status) => {
      await exitsWithin(output, OUTPUT_DRAIN_MS);
      return this.#onExit(status);
    });
    this.#ready.promise.catch(() => {});
    this.#waitTimer = setTimeout(
      () => this.#kill(`did not say hello within ${config.startTimeout} ms`),
      config.startTimeout,
    );
  }

  /** Resolves at the first `hello`; rejects when the process exits or is killed first. */
  get ready(): Promise<void> {
    return this.#ready.promise;
  }

  /** Takes new calls. */
  get healthy(): boolean {
    return this.state === "ready";
  }

  /** Calls sent to it and not answered yet. */
  get inFlight(): number {
    return this.#pending.size;
  }

  /** Whether it waits for a `hello` (first, or again after its connection dropped). */
  get awaitingHello(): boolean {
    return this.state === "starting" || this.state === "disconnected";
  }

  /** Whether `hello` carries this instance's secret (compared in constant time). */
  owns(hello: Hello): boolean {
    return timingSafeEqual(hello.secret, this.#secret);
  }

  /** Takes over the connection on which this instance said `hello`, and welcomes it. */
  attach(connection: WorkerConnection, hello: Hello): void {
    clearTimeout(this.#waitTimer);
    this.#connection = connection;
    this.functions = hello.functions;
    this.concurrency = Math.min(this.config.concurrency, hello.concurrency);
    connection.send({
      type: "welcome",
      protocol: PROTOCOL_VERSION,
      codec: "json",
      maxFrame: this.config.maxFrame,
      heartbeat: this.config.heartbeat,
    });
    for (const filter of hello.subscriptions) this.#subscribe(filter);
    connection.handler = (frame) => this.#receive(frame);
    connection.closed.then(({ reason, byPeer }) => this.#onDisconnect(connection, reason, byPeer));
    this.#heartbeat.start();
    if (this.state === "starting" || this.state === "disconnected") this.state = "ready";
    logger.info("{worker}[{instance}] pid {pid} ready: {functions}", {
      worker: this.config.name,
      instance: this.index,
      pid: this.pid,
      functions: hello.functions.join(", ") || "(no functions)",
    });
    this.#ready.resolve();
    this.onAvailable();
  }

  /**
   * Calls the instance's function `name`. Rejects with a FunctionCallError:
   * the worker's own error, `timeout` at `deadline` (the worker is sent a
   * `cancel`), or `worker_exited` when the process or its connection is lost.
   */
  call(
    name: string,
    args: unknown,
    deadline: number,
    meta: Record<string, string>,
  ): Promise<unknown> {
    const connection = this.#connection;
    if (!connection?.open) {
      return Promise.reject(this.#lost(`${this.label} is not connected`));
    }
    const timeout = Math.max(0, Math.round(deadline - Date.now()));
    const { id, result } = this.#pending.open(
      name,
      deadline,
      undefined,
      (id) => connection.send({ type: "cancel", id }),
    );
    try {
      connection.send({ type: "call", id, function: name, args, timeout, meta });
    } catch (error) {
      this.#settle(id, new FunctionCallError({ type: "bad_arguments", message: String(error) }));
    }
    return result;
  }

  /** Stops taking new calls; the ones in flight finish. */
  drain(): void {
    if (this.state === "ready" || this.state === "starting") this.state = "draining";
  }

  /**
   * Stops the process: `stop` (when connected), then SIGTERM, then SIGKILL,
   * each step after `stopTimeout` without an exit. Resolves once it exited.
   */
  async stop(): Promise<InstanceExit> {
    this.#stopping ??= this.#stop();
    await this.#stopping;
    return this.exited;
  }

  /** The instance as `GET /workers` shows it. */
  status(): Record<string, unknown> {
    return {
      index: this.index,
      pid: this.pid,
      state: this.state,
      uptimeSeconds: Math.round((Date.now() - this.spawnedAt) / 1000),
      concurrency: this.concurrency,
      inFlight: this.inFlight,
      functions: this.functions,
      subscriptions: [...this.#subscriptions.keys()],
    };
  }

  async #stop(): Promise<void> {
    if (this.state === "exited") return;
    this.state = "stopping";
    clearTimeout(this.#waitTimer);
    const wait = this.config.stopTimeout;
    if (this.#connection?.open) {
      this.#stoppedBy = "stop";
      this.#connection.send({ type: "stop", timeout: wait });
      if (await exitsWithin(this.exited, wait)) return;
    }
    this.#stoppedBy = "SIGTERM";
    this.#signal("SIGTERM");
    if (await exitsWithin(this.exited, wait)) return;
    this.#stoppedBy = "SIGKILL";
    this.#signal("SIGKILL");
    await this.exited;
  }

  #kill(reason: string): void {
    if (this.state === "exited") return;
    this.#failure ??= reason;
    logger.warning("{worker}[{instance}] pid {pid} killed: {reason}", {
      worker: this.config.name,
      instance: this.index,
      pid: this.pid,
      reason,
    });
    this.#signal("SIGKILL");
  }

  #signal(signal: Deno.Signal): void {
    try {
      this.#child.kill(signal);
    } catch { /* already exited */ }
  }

  #receive(frame: FrameMessage): void {
    this.#heartbeat.seen();
    const message: WorkerMessage = parseWorkerMessage(frame);
    switch (message.type) {
      case "result": {
        if (typeof message.id !== "number") return;
        this.#settle(
          message.id,
          message.ok ? undefined : new FunctionCallError(message.error),
          message.ok ? message.value : undefined,
        );
        return;
      }
      case "call":
        this.#callOut(message);
        return;
      case "cancel":
        if (this.#outbound.has(message.id)) this.#cancelled.add(message.id);
        return;
      case "ping":
        this.#connection?.send({ type: "pong", id: message.id });
        return;
      case "pong":
        return;
      case "publish":
        this.#publish(message.topic, message, message.meta ?? {});
        return;
      case "subscribe":
        this.#subscribe(message.filter);
        return;
      case "unsubscribe":
        this.#subscriptions.get(message.filter)?.unsubscribe();
        this.#subscriptions.delete(message.filter);
        return;
      case "log":
        logger[message.level]("{worker}[{instance}] {message}", {
          ...message.fields,
          worker: this.config.name,
          instance: this.index,
          pid: this.pid,
          message: message.message,
        });
    }
  }

  #settle(id: number, error?: Error, value?: unknown): void {
    const settled = error ? this.#pending.reject(id, error) : this.#pending.resolve(id, value);
    if (settled) this.onAvailable();
  }

  /** A call the worker makes: through the bus to any function, answered with a `result`. */
  #callOut(call: Call): void {
    this.#outbound.add(call.id);
    const answer = (result: { ok: true; value: unknown } | { ok: false; error: ErrorInfo }) => {
      this.#outbound.delete(call.id);
      if (this.#cancelled.delete(call.id)) return;
      try {
        this.#connection?.send({ type: "result", id: call.id, ...result });
      } catch (error) {
        this.#connection?.send({ type: "result", id: call.id, ok: false, error: errorBody(error) });
      }
    };
    let ref;
    try {
      ref = parseFunctionRef(call.function);
    } catch (error) {
      answer({ ok: false, error: { type: "bad_arguments", message: (error as Error).message } });
      return;
    }
    callFunction(this.#services.bus, ref, call.args, {
      source: this.#source,
      timeout: call.timeout ?? DEFAULT_CALL_TIMEOUT,
      ...(call.meta ? { meta: call.meta } : {}),
    }).then(
      (value) => answer({ ok: true, value }),
      (error) => answer({ ok: false, error: errorBody(error) }),
    );
  }

  #publish(topic: string, encoded: EncodedPayload, meta: Record<string, string>): void {
    try {
      const payload = encoded.encoding === "base64"
        ? Uint8Array.fromBase64(encoded.payload)
        : encoder.encode(encoded.payload);
      this.#bus.publish({ topic, payload, source: this.#source, meta });
    } catch (error) {
      logger.warning("{worker}[{instance}] publish on {topic} refused: {error}", {
        worker: this.config.name,
        instance: this.index,
        topic,
        error: (error as Error).message,
      });
    }
  }

  #subscribe(filter: string): void {
    if (this.#subscriptions.has(filter)) return;
    try {
      this.#subscriptions.set(
        filter,
        this.#bus.subscribe(filter, (message) => this.#deliver(filter, message)),
      );
    } catch (error) {
      logger.warning("{worker}[{instance}] subscription to {filter} refused: {error}", {
        worker: this.config.name,
        instance: this.index,
        filter,
        error: (error as Error).message,
      });
    }
  }

  /**
   * Sends a bus message as an `event`. While the worker is far behind, waits
   * for the socket to drain: its subscription's bounded queue then fills and
   * drops (counted in gateway_bus_dropped_total) instead of gateway memory.
   */
  #deliver(filter: string, message: BusMessage): Promise<void> | undefined {
    const connection = this.#connection;
    if (!connection?.open || this.state === "exited") return;
    let encoded: EncodedPayload;
    try {
      encoded = { payload: utf8.decode(message.payload), encoding: "utf8" };
    } catch {
      encoded = { payload: message.payload.toBase64(), encoding: "base64" };
    }
    connection.send({
      type: "event",
      filter,
      topic: message.topic,
      ...encoded,
      meta: message.meta,
    });
    if (connection.buffered > EVENT_BACKLOG_BYTES) return connection.drained();
  }

  #onDisconnect(connection: WorkerConnection, reason: string, byPeer: boolean): void {
    if (connection !== this.#connection || this.state === "exited") return;
    this.#heartbeat.stop();
    // Out of the pool first: rejecting the calls frees slots that queued calls would take.
    const stopping = this.state === "stopping" || this.state === "draining";
    if (!stopping) this.state = "disconnected";
    this.#rejectPending(`${this.label} lost its connection: ${reason}`);
    if (!byPeer) {
      this.#kill(`connection dropped: ${reason}`);
      return;
    }
    if (stopping) return;
    logger.warning("{worker}[{instance}] disconnected ({reason}); waiting for it to reconnect", {
      worker: this.config.name,
      instance: this.index,
      reason,
    });
    this.#waitTimer = setTimeout(
      () => this.#kill(`did not reconnect within ${this.config.startTimeout} ms`),
      this.config.startTimeout,
    );
  }

  #onExit(status: Deno.CommandStatus): InstanceExit {
    const requested = this.#stoppedBy !== undefined;
    this.state = "exited";
    clearTimeout(this.#waitTimer);
    this.#heartbeat.stop();
    this.#connection?.close("the process exited");
    for (const subscription of this.#subscriptions.values()) subscription.unsubscribe();
    this.#subscriptions.clear();
    const how = status.signal
      ? `was killed by ${status.signal}`
      : `exited with code ${status.code}`;
    const stderr = this.#stderrTail.length ? `; stderr: ${this.#stderrTail.join(" | ")}` : "";
    const reason = this.#failure ? `${this.#failure} (${how})` : `${how}${stderr}`;
    this.#rejectPending(`${this.label} ${how} before answering`);
    const early = this.#failure ? reason : `${how} before saying hello${stderr}`;
    this.#ready.reject(new Error(`${this.label} ${early}`));
    const exit: InstanceExit = {
      code: status.code,
      signal: status.signal,
      reason,
      requested,
      ...(this.#stoppedBy ? { stoppedBy: this.#stoppedBy } : {}),
      uptime: Date.now() - this.spawnedAt,
    };
    logger[requested ? "info" : "warning"]("{worker}[{instance}] pid {pid} {reason}", {
      worker: this.config.name,
      instance: this.index,
      pid: this.pid,
      reason: requested ? `stopped (${this.#stoppedBy}, ${how})` : reason,
    });
    this.onAvailable();
    return exit;
  }

  #rejectPending(message: string): void {
    if (this.#pending.size === 0) return;
    this.#pending.failAll(this.#lost(message));
    this.onAvailable();
  }

  #lost(message: string): FunctionCallError {
    return new FunctionCallError({ type: "worker_exited", message });
  }

  async #pump(stream: ReadableStream<Uint8Array>, name: "stdout" | "stderr"): Promise<void> {
    let pending = "";
    const emit = (line: string) => {
      if (name === "stderr") {
        this.#stderrTail.push(line);
        if (this.#stderrTail.length > STDERR_TAIL) this.#stderrTail.shift();
      }
      logger[name === "stderr" ? "warning" : "info"]("{worker}[{instance}] {stream}: {line}", {
        worker: this.config.name,
        instance: this.index,
        pid: this.pid,
        stream: name,
        line,
      });
    };
    try {
      for await (const chunk of stream.pipeThrough(new TextDecoderStream())) {
        pending += chunk;
        const lines = pending.split("\n");
        pending = lines.pop()!;
        for (const line of lines) emit(line.trimEnd());
      }
    } catch { /* the process went away */ }
    if (pending) emit(pending.trimEnd());
  }
}

async function exitsWithin(exited: Promise<unknown>, ms: number): Promise<boolean> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  const timeout = new Promise<false>((resolve) => timer = setTimeout(() => resolve(false), ms));
  const done = await Promise.race([exited.then(() => true), timeout]);
  clearTimeout(timer);
  return done;
}

function existsDir(path: string): boolean {
  try {
    return Deno.statSync(path).isDirectory;
  } catch {
    return false;
  }
}
