/**
 * One configured worker: its instances (one slot per configured instance),
 * the pool that routes its calls, its functions served on the bus as
 * `fn/<worker>/<function>`, and its supervision: restart with exponential
 * backoff after an exit, `failed` after {@link MAX_FAST_CRASHES} crashes in a
 * row each within {@link FAST_CRASH_MS} of starting, and rolling restarts (on
 * a watched file change or on request) in which each new instance says hello
 * before the old one stops taking calls.
 *
 * @module
 */

import { getLogger } from "@logtape/logtape";
import type { Bus, Subscription } from "../bus/bus.ts";
import { type CallInfo, FunctionCallError, serveFunction } from "../functions/call.ts";
import type { WorkerConfig } from "./config.ts";
import type { WorkerConnection } from "./connection.ts";
import { type InstanceExit, WorkerInstance } from "./instance.ts";
import type { WorkerMetricValues } from "./metrics.ts";
import { WorkerPool } from "./pool.ts";
import type { Hello } from "./protocol.ts";
import { watchGlobs } from "./watch.ts";

const logger = getLogger(["gateway", "workers"]);

/** An instance that exits sooner than this after its spawn crashed "fast". */
export const FAST_CRASH_MS = 10_000;
/** Fast crashes in a row after which a slot gives up (state `failed`). */
export const MAX_FAST_CRASHES = 5;
/** The first restart delay; it doubles with each fast crash in a row. */
const BACKOFF_BASE_MS = 100;
const BACKOFF_MAX_MS = 30_000;
/** Call timeout when the caller gave no deadline. */
const DEFAULT_TIMEOUT_MS = 30_000;

/** Where one configured instance of a worker stands. */
export type SlotState = "starting" | "running" | "backoff" | "failed" | "stopped";

interface Slot {
  readonly index: number;
  instance?: WorkerInstance;
  state: SlotState;
  restarts: number;
  fastCrashes: number;
  reason?: string;
  lastExit?: InstanceExit;
  timer?: ReturnType<typeof setTimeout>;
}

/** What a worker uses of the gateway. */
export interface WorkerServices {
  bus: Bus;
  socketPath: string;
  metrics: WorkerMetricValues;
}

/**
 * A worker's instances and their supervision.
 *
 * @example
 * ```ts
 * import { Bus } from "../bus/bus.ts";
 * import { MetricsRegistry } from "../observability/metrics.ts";
 * import { WorkerConfig } from "./config.ts";
 * import { WorkerMetrics } from "./metrics.ts";
 * import { LanguageWorker } from "./worker.ts";
 * const config = WorkerConfig.parse({ name: "echo", command: ["python3", "echo.py"] });
 * const worker = new LanguageWorker(config, "workers[0]", {
 *   bus: new Bus(), socketPath: "/tmp/workers.sock",
 *   metrics: new WorkerMetrics(new MetricsRegistry()).of("echo"),
 * });
 * await worker.start(); // the socket server hands it each hello with worker.claim()
 * worker.serve();
 * await worker.stop();
 * ```
 */
export class LanguageWorker {
  readonly pool: WorkerPool<WorkerInstance>;
  /** The config as JSON: equal keys need no restart on reload. */
  readonly key: string;
  readonly #services: WorkerServices;
  readonly #slots: Slot[];
  /** Every instance not yet exited: the slots' and those starting or draining beside them. */
  readonly #live = new Set<WorkerInstance>();
  readonly #served = new Map<string, Subscription>();
  #serving = false;
  #stopped = false;
  #stopWatching?: () => void;
  #restarting?: Promise<void>;

  /** `path` names the entry in errors (`workers[2]`). Starts nothing. */
  constructor(readonly config: WorkerConfig, readonly path: string, services: WorkerServices) {
    this.#services = services;
    this.key = JSON.stringify(config);
    this.pool = new WorkerPool(config.name, config.queue);
    this.#slots = Array.from({ length: config.instances }, (_, index) => ({
      index,
      state: "starting" as SlotState,
      restarts: 0,
      fastCrashes: 0,
    }));
  }

  /** The worker's name. */
  get name(): string {
    return this.config.name;
  }

  /** `running`, `starting`, `degraded` (some slots down), `failed` (all) or `stopped`. */
  get state(): string {
    const states = this.#slots.map((slot) => slot.state);
    if (this.#stopped || states.every((state) => state === "stopped")) return "stopped";
    if (states.every((state) => state === "failed")) return "failed";
    if (states.every((state) => state === "running")) return "running";
    if (states.every((state) => state === "starting" || state === "running")) return "starting";
    return "degraded";
  }

  /**
   * Spawns every instance and waits for their hellos. Throws an error naming
   * the config entry when one cannot start (command missing, exit or silence
   * before hello); nothing is left running then.
   */
  async start(): Promise<void> {
    const started: WorkerInstance[] = [];
    try {
      for (const slot of this.#slots) started.push(this.#spawn(slot));
    } catch (error) {
      await Promise.all(started.map((instance) => instance.stop()));
      this.#stopped = true;
      throw new Error(`${this.path}.command: ${(error as Error).message}`);
    }
    const outcomes = await Promise.allSettled(started.map((instance) => instance.ready));
    const failure = outcomes.find((outcome) => outcome.status === "rejected");
    if (failure) {
      await this.stop();
      throw new Error(`${this.path} ("${this.name}"): ${(failure.reason as Error).message}`);
    }
  }

  /**
   * The instance a `hello` on a new connection belongs to: one of this
   * worker's with that index that waits for a hello, the one with the same
   * pid first.
   */
  claim(hello: Hello): WorkerInstance | undefined {
    let match: WorkerInstance | undefined;
    for (const instance of this.#live) {
      if (instance.index !== hello.instance || !instance.awaitingHello) continue;
      if (instance.pid === hello.pid) return instance;
      match ??= instance;
    }
    return match;
  }

  /** Attaches a claimed instance's connection. */
  attach(instance: WorkerInstance, connection: WorkerConnection, hello: Hello): void {
    instance.attach(connection, hello);
    if (this.#serving) this.#serveFunctions(instance.functions);
  }

  /** Starts serving the functions on the bus and watching the files. */
  serve(): void {
    this.#serving = true;
    for (const instance of this.#live) {
      if (instance.healthy) this.#serveFunctions(instance.functions);
    }
    if (this.config.watch.length > 0) {
      this.#stopWatching = watchGlobs(this.config.watch, (paths) => {
        logger.info("{worker}: {file} changed, restarting instance by instance", {
          worker: this.name,
          file: paths[0],
        });
        this.restart().catch((error) => {
          logger.error("{worker}: rolling restart failed: {error}", {
            worker: this.name,
            error: (error as Error).message,
          });
        });
      });
    }
  }

  /** Stops serving the functions and watching (calls in flight finish). */
  unserve(): void {
    this.#serving = false;
    this.#stopWatching?.();
    this.#stopWatching = undefined;
    for (const subscription of this.#served.values()) subscription.unsubscribe();
    this.#served.clear();
  }

  /**
   * Calls `name` on the least-busy healthy instance, queueing when all are
   * busy. Rejects with a FunctionCallError (`no_responder` when the worker
   * failed or stopped).
   */
  call(name: string, args: unknown, info: Pick<CallInfo, "deadline" | "meta">): Promise<unknown> {
    const down = this.#down();
    if (down) return Promise.reject(down);
    const deadline = Number.isFinite(info.deadline)
      ? info.deadline
      : Date.now() + DEFAULT_TIMEOUT_MS;
    return this.pool.run(
      deadline,
      (instance) => instance.call(name, args, deadline, info.meta),
    );
  }

  /**
   * Replaces the instances one by one: each new one must say hello before
   * the old one stops taking calls (the old one finishes its calls in
   * flight). A failed slot is started afresh. Rejects, leaving the old
   * instance serving, when a new one cannot start.
   */
  restart(): Promise<void> {
    this.#restarting ??= (async () => {
      try {
        for (const slot of this.#slots) await this.#replace(slot);
      } finally {
        this.#restarting = undefined;
      }
    })();
    return this.#restarting;
  }

  /** Stops serving and stops every instance gracefully. Idempotent. */
  async stop(): Promise<void> {
    this.#stopped = true;
    this.unserve();
    for (const slot of this.#slots) clearTimeout(slot.timer);
    this.pool.close(
      new FunctionCallError({ type: "no_responder", message: `worker "${this.name}" stopped` }),
    );
    await Promise.all([...this.#live].map((instance) => instance.stop()));
    for (const slot of this.#slots) slot.state = "stopped";
  }

  /** The worker as `GET /workers` shows it. */
  status(): Record<string, unknown> {
    return {
      name: this.name,
      state: this.state,
      command: this.config.command,
      queued: this.pool.queued,
      instances: this.#slots.map((slot) => ({
        ...slot.instance?.status() ?? { index: slot.index, pid: null },
        state: slot.state,
        ...(slot.instance && slot.state === "running" ? { process: slot.instance.state } : {}),
        restarts: slot.restarts,
        ...(slot.reason ? { reason: slot.reason } : {}),
        ...(slot.lastExit ? { lastExit: slot.lastExit } : {}),
      })),
    };
  }

  /** Calls in flight over all instances. */
  get inFlight(): number {
    let total = 0;
    for (const instance of this.#live) total += instance.inFlight;
    return total;
  }

  /** Why no instance can take calls now or later (stopped, or every slot failed or stopped). */
  #down(): FunctionCallError | undefined {
    if (this.#stopped) {
      return new FunctionCallError({
        type: "no_responder",
        message: `worker "${this.name}" is stopped`,
      });
    }
    if (!this.#slots.every((slot) => slot.state === "failed" || slot.state === "stopped")) return;
    return new FunctionCallError({
      type: "no_responder",
      message: `worker "${this.name}" is ${this.state}: ${this.#slots[0].reason}`,
    });
  }

  #spawn(slot: Slot): WorkerInstance {
    const instance = new WorkerInstance(this.config, slot.index, this.#services);
    this.#live.add(instance);
    this.pool.add(instance);
    instance.onAvailable = () => this.pool.wake();
    instance.exited.then((exit) => this.#onExit(slot, instance, exit));
    if (!slot.instance || slot.instance.state === "exited") {
      slot.instance = instance;
      slot.state = "starting";
      instance.ready.then(() => {
        if (slot.instance === instance) slot.state = "running";
      }, () => {});
    }
    return instance;
  }

  async #replace(slot: Slot): Promise<void> {
    if (this.#stopped) return;
    clearTimeout(slot.timer);
    const old = slot.instance;
    let next: WorkerInstance;
    try {
      next = this.#spawn(slot);
      await next.ready;
    } catch (error) {
      throw new Error(
        `${this.path} ("${this.name}") instance ${slot.index} was not replaced, ` +
          `the old one keeps serving: ${(error as Error).message}`,
      );
    }
    // The slot may have moved on while `next` started (the old instance crashed and its backoff
    // spawned another): retire whatever serves it now, not only the instance we replaced.
    const current = slot.instance;
    slot.instance = next;
    slot.state = "running";
    slot.fastCrashes = 0;
    slot.reason = undefined;
    for (const retired of new Set([old, current])) {
      if (retired && retired !== next && retired.state !== "exited") {
        retired.drain();
        void retired.stop();
      }
    }
  }

  #onExit(slot: Slot, instance: WorkerInstance, exit: InstanceExit): void {
    this.#live.delete(instance);
    this.pool.delete(instance);
    if (slot.instance !== instance) return;
    slot.lastExit = exit;
    if (this.#stopped || exit.requested) return;
    const crashed = exit.code !== 0 || exit.signal !== null;
    const policy = this.config.restart;
    if (policy === "never" || (policy === "on-failure" && !crashed)) {
      slot.state = "stopped";
      slot.reason = `${exit.reason}; restart policy "${policy}"`;
      this.#closeIfDown();
      return;
    }
    slot.fastCrashes = exit.uptime < FAST_CRASH_MS ? slot.fastCrashes + 1 : 0;
    if (slot.fastCrashes >= MAX_FAST_CRASHES) {
      slot.state = "failed";
      slot.reason = `exited ${slot.fastCrashes} times in a row within ${FAST_CRASH_MS / 1000} s ` +
        `of starting; gave up. Last: ${exit.reason}`;
      logger.error("{worker}[{instance}] failed: {reason}", {
        worker: this.name,
        instance: slot.index,
        reason: slot.reason,
      });
      this.#closeIfDown();
      return;
    }
    const delay = Math.min(
      BACKOFF_BASE_MS * 2 ** Math.max(0, slot.fastCrashes - 1),
      BACKOFF_MAX_MS,
    );
    slot.state = "backoff";
    slot.reason = exit.reason;
    logger.warning("{worker}[{instance}] restarting in {delay} ms", {
      worker: this.name,
      instance: slot.index,
      delay,
    });
    slot.timer = setTimeout(() => {
      if (this.#stopped || slot.instance !== instance) return;
      slot.restarts++;
      this.#services.metrics.restarts.inc();
      try {
        this.#spawn(slot);
      } catch (error) {
        slot.state = "failed";
        slot.reason = (error as Error).message;
      }
    }, delay);
  }

  /** Rejects the queued calls when no instance will come back to take them. */
  #closeIfDown(): void {
    const down = this.#down();
    if (down) this.pool.close(down);
  }

  #serveFunctions(names: string[]): void {
    for (const name of names) {
      if (this.#served.has(name)) continue;
      this.#served.set(
        name,
        serveFunction(
          this.#services.bus,
          this.name,
          name,
          (args, info) => this.call(name, args, info),
        ),
      );
    }
  }
}
