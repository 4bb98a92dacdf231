/**
 * One configured worker: its instances (one slot per configured instance),
 * the pool that routes its calls, its functions served on the bus as
 * `fn/<worker>/<function>`, and its supervision: each slot's
 * {@link Restarter} restarts it with capped exponential backoff after an exit
 * and marks it `failed` after repeated quick crashes; rolling restarts (on a
 * watched file change or on request) start each new instance, which says
 * hello, before the old one stops taking calls. Calls to a worker none of
 * whose slots is up answer `unavailable` with the reason.
 *
 * @module
 */

import { getLogger } from "@logtape/logtape";
import type { Bus, Subscription } from "../bus/bus.ts";
import { type CallInfo, FunctionCallError, serveFunction } from "../functions/call.ts";
import type { WorkerConfig } from "./config.ts";
import type { WorkerConnection } from "./connection.ts";
import { type InstanceExit, WorkerInstance } from "./instance.ts";
import { CallPool } from "../supervision/pool.ts";
import { Restarter } from "../supervision/restart.ts";
import type { PartState, PartStatus } from "../supervision/stats.ts";
import { CallStats } from "../supervision/stats.ts";
import type { PartMetricValues } from "../supervision/metrics.ts";
import type { Hello } from "./protocol.ts";
import { watchGlobs } from "./watch.ts";

const logger = getLogger(["gateway", "workers"]);

/** Call timeout when the caller gave no deadline. */
const DEFAULT_TIMEOUT_MS = 30_000;

interface Slot {
  readonly index: number;
  instance?: WorkerInstance;
  readonly restarter: Restarter;
  lastExit?: InstanceExit;
}

/** What a worker uses of the gateway. */
export interface WorkerServices {
  bus: Bus;
  socketPath: string;
  /** The worker's values of the shared supervision metrics. */
  metrics: PartMetricValues;
}

/**
 * A worker's instances and their supervision.
 *
 * @example
 * ```ts
 * import { Bus } from "../bus/bus.ts";
 * import { MetricsRegistry } from "../observability/metrics.ts";
 * import { SupervisionMetrics } from "../supervision/metrics.ts";
 * import { WorkerConfig } from "./config.ts";
 * import { LanguageWorker } from "./worker.ts";
 * const config = WorkerConfig.parse({ name: "echo", command: ["python3", "echo.py"] });
 * const worker = new LanguageWorker(config, "workers[0]", {
 *   bus: new Bus(), socketPath: "/tmp/workers.sock",
 *   metrics: new SupervisionMetrics(new MetricsRegistry()).of("worker", "echo"),
 * });
 * await worker.start(); // the socket server hands it each hello with worker.claim()
 * worker.serve();
 * await worker.stop();
 * ```
 */
export class LanguageWorker {
  readonly pool: CallPool<WorkerInstance>;
  /** Calls, errors, durations and restarts over every instance. */
  readonly stats: CallStats;
  /** The config as JSON: equal keys need no restart on reload. */
  readonly key: string;
  readonly #services: WorkerServices & { stats: CallStats };
  readonly #slots: Slot[];
  /** Every instance not yet exited: the slots' and those starting or draining beside them. */
  readonly #live = new Set<WorkerInstance>();
  /** The functions its instances said they serve. */
  readonly #functions = new Set<string>();
  /** `fn/<worker>/+` while it serves. */
  #served?: Subscription;
  #stopped = false;
  #stopWatching?: () => void;
  #restarting?: Promise<void>;

  /** `path` names the entry in errors (`workers[2]`). Starts nothing. */
  constructor(readonly config: WorkerConfig, readonly path: string, services: WorkerServices) {
    this.stats = new CallStats(services.metrics);
    this.#services = { ...services, stats: this.stats };
    this.key = JSON.stringify(config);
    this.pool = new CallPool(`worker "${config.name}"`, config.queue, services.metrics.queued);
    this.#slots = Array.from({ length: config.instances }, (_, index) => {
      const slot: Slot = { index, restarter: new Restarter(() => this.#respawn(slot)) };
      return slot;
    });
  }

  /** The worker's name. */
  get name(): string {
    return this.config.name;
  }

  /**
   * `running`, `starting`, `degraded` (some slots down), `failed` (no slot up:
   * each in backoff or given up) or `stopped`.
   */
  get state(): string {
    const states: PartState[] = this.#slots.map((slot) => slot.restarter.state);
    if (this.#stopped || states.every((state) => state === "stopped")) return "stopped";
    if (states.every((state) => state === "running")) return "running";
    if (states.every((state) => state === "starting" || state === "running")) return "starting";
    if (states.some((state) => state === "starting" || state === "running")) return "degraded";
    return "failed";
  }

  /**
   * Spawns every instance and waits for their hellos. Throws an error naming
   * the config entry when one cannot start (command missing, exit or silence
   * before hello); nothing is left running then. With `degraded`, only a
   * command that cannot be spawned throws: an instance that exits or stays
   * silent is restarted with backoff, and calls answer `unavailable` meanwhile.
   */
  async start(degraded = false): Promise<void> {
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
    if (!failure) return;
    const message = `${this.path} ("${this.name}"): ${(failure.reason as Error).message}`;
    if (!degraded) {
      await this.stop();
      throw new Error(message);
    }
    this.stats.problem(message);
    logger.error("{worker} did not start, the gateway serves without it (in backoff): {message}", {
      worker: this.name,
      message,
    });
  }

  /**
   * The instance a `hello` on a new connection belongs to: the one of this
   * worker with that index that waits for a hello and whose secret the hello
   * carries. A hello without it claims nothing (the pid it names proves
   * nothing: any process can write any number).
   */
  claim(hello: Hello): WorkerInstance | undefined {
    for (const instance of this.#live) {
      if (instance.index === hello.instance && instance.awaitingHello && instance.owns(hello)) {
        return instance;
      }
    }
    return undefined;
  }

  /** Attaches a claimed instance's connection. */
  attach(instance: WorkerInstance, connection: WorkerConnection, hello: Hello): void {
    instance.attach(connection, hello);
    for (const name of instance.functions) this.#functions.add(name);
  }

  /**
   * Starts serving `fn/<worker>/*` on the bus and watching the files. A
   * function no instance named answers `no_responder`, or why the worker is
   * down (`unavailable`) when it is.
   */
  serve(): void {
    this.#served ??= serveFunction(this.#services.bus, this.name, "+", (args, info) => {
      if (this.#functions.has(info.name)) return this.call(info.name, args, info);
      throw this.#down() ?? new FunctionCallError({
        type: "no_responder",
        message: `worker "${this.name}" has no function "${info.name}"`,
      });
    });
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
    this.#stopWatching?.();
    this.#stopWatching = undefined;
    this.#served?.unsubscribe();
    this.#served = undefined;
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
    for (const slot of this.#slots) slot.restarter.stop();
    this.pool.close(
      new FunctionCallError({ type: "no_responder", message: `worker "${this.name}" stopped` }),
    );
    await Promise.all([...this.#live].map((instance) => instance.stop()));
  }

  /** The worker as `GET /workers` shows it: the shared status shape, its command and instances. */
  status(): PartStatus & {
    name: string;
    command: string[];
    instances: Record<string, unknown>[];
  } {
    return {
      name: this.name,
      ...this.stats.status(this.state, this.inFlight, this.pool.queued),
      command: this.config.command,
      instances: this.#slots.map((slot) => {
        const { state, restarts, reason } = slot.restarter;
        return {
          ...slot.instance?.status() ?? { index: slot.index, pid: null },
          state,
          ...(slot.instance && state === "running" ? { process: slot.instance.state } : {}),
          restarts,
          ...(reason ? { reason } : {}),
          ...(slot.lastExit ? { lastExit: slot.lastExit } : {}),
        };
      }),
    };
  }

  /** Calls in flight over all instances. */
  get inFlight(): number {
    let total = 0;
    for (const instance of this.#live) total += instance.inFlight;
    return total;
  }

  /**
   * Why no instance can take calls now: `no_responder` when the worker or
   * every slot stopped, `unavailable` when no slot is up (each in backoff or
   * failed), with the reason.
   */
  #down(): FunctionCallError | undefined {
    const states = this.#slots.map((slot) => slot.restarter.state);
    if (this.#stopped || states.every((state) => state === "stopped")) {
      const reason = this.#slots[0].restarter.reason;
      return new FunctionCallError({
        type: "no_responder",
        message: `worker "${this.name}" is stopped${reason ? `: ${reason}` : ""}`,
      });
    }
    if (states.some((state) => state === "running")) return;
    if (states.some((state) => state === "starting")) {
      // Until an instance says hello, which functions it serves is not known.
      if (this.#functions.size > 0) return;
      const reason = this.#slots.find((slot) => slot.restarter.reason)?.restarter.reason;
      return new FunctionCallError({
        type: "unavailable",
        message: `worker "${this.name}" is starting${reason ? ` (last: ${reason})` : ""}`,
      });
    }
    const down = this.#slots.find((slot) => slot.restarter.state === "failed") ??
      this.#slots.find((slot) => slot.restarter.state === "backoff")!;
    const { state, reason, delay } = down.restarter;
    const why = state === "failed" ? "is failed" : `is in backoff (next start in ${delay} ms)`;
    return new FunctionCallError({
      type: "unavailable",
      message: `worker "${this.name}" ${why}: ${reason}`,
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
      slot.restarter.starting();
      instance.ready.then(() => {
        if (slot.instance === instance) slot.restarter.started();
      }, () => {});
    }
    return instance;
  }

  async #replace(slot: Slot): Promise<void> {
    if (this.#stopped) return;
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
    slot.restarter.reset();
    slot.restarter.started();
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
    const { restarter } = slot;
    if (policy === "never" || (policy === "on-failure" && !crashed)) {
      restarter.stop();
      restarter.reason = `${exit.reason}; restart policy "${policy}"`;
      this.#closeIfDown();
      return;
    }
    const log = { worker: this.name, instance: slot.index, reason: "", delay: 0 };
    if (restarter.crashed(exit.reason, exit.uptime) === "failed") {
      logger.error("{worker}[{instance}] failed: {reason}", { ...log, reason: restarter.reason });
    } else {
      logger.warning("{worker}[{instance}] restarting in {delay} ms", {
        ...log,
        delay: restarter.delay,
      });
    }
    this.#closeIfDown();
  }

  /** The restarter's restart: a new instance in the slot its last one left. */
  #respawn(slot: Slot): void {
    if (this.#stopped) return;
    this.stats.restarted(slot.restarter.reason ?? "restarted");
    try {
      this.#spawn(slot);
    } catch (error) {
      slot.restarter.fail((error as Error).message);
      this.#closeIfDown();
    }
  }

  /** Rejects the queued calls when no instance will come back to take them. */
  #closeIfDown(): void {
    const down = this.#down();
    if (down) this.pool.close(down);
  }
}
