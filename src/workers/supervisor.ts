/**
 * The `workers` module: language workers from the config's `workers`
 * section, reloaded atomically with the rest of the config (new and changed
 * workers are started beside the running ones and must all say hello before
 * the change is committed; removed and replaced ones are then stopped
 * gracefully). At the gateway's first start a worker whose instances exit or
 * stay silent does not refuse the config: it serves degraded (in backoff,
 * `failed` in its status, its calls `unavailable`); on a reload a new or
 * changed worker that cannot start refuses the config, and an unchanged one
 * that is failing is started afresh without blocking it. One Unix socket
 * serves every worker; each connection names
 * its worker and instance, and proves it with the instance's secret, in its
 * `hello`. Admin endpoints: `GET /workers`,
 * `GET /workers/:name`, `POST /workers/:name/restart` (rolling).
 *
 * @module
 */

import { dirname, join } from "node:path";
import { getLogger } from "@logtape/logtape";
import { eventWarnings } from "../observability/rate_limited_log.ts";
import type { Hono } from "hono";
import type { Bus } from "../bus/bus.ts";
import type { WorkersConfig } from "./config.ts";
import { StreamServer } from "../listeners/stream_connection.ts";
import { claimSocketPath } from "../listeners/unix_socket.ts";
import type { Change, GatewayModule, PrepareContext } from "../module.ts";
import type { MetricsRegistry } from "../observability/metrics.ts";
import { errorResponse, GatewayError } from "../errors.ts";
import { WorkerConnection } from "./connection.ts";
import { SupervisionMetrics } from "../supervision/metrics.ts";
import { parseHello } from "./protocol.ts";
import { LanguageWorker } from "./worker.ts";

const logger = getLogger(["gateway", "workers"]);
/** sun_path holds 108 bytes on Linux, including the terminating NUL. */
const SUN_PATH_MAX = 107;
/** Frames before a `hello` are small; this bounds what an unknown peer can make us buffer. */
const HELLO_MAX_FRAME = 1024 * 1024;
const HELLO_TIMEOUT_MS = 10_000;

/**
 * Makes the private directory the workers socket is bound in and returns the
 * socket's path: `<dataDir>/sockets/workers.sock`, or, when that is longer
 * than a Unix socket path may be, `workers.sock` in a fresh directory under
 * the temporary directory. Either directory has mode 0700 and belongs to
 * this user before anything is bound in it, so no other user can connect
 * (`Deno.listen` takes no mode; `Deno.umask` is unstable and process-wide).
 * Throws when `<dataDir>/sockets` is not a directory of this user.
 *
 * @example
 * ```ts
 * import { workerSocketPath } from "./supervisor.ts";
 * await workerSocketPath(Deno.makeTempDirSync()); // "/tmp/…/sockets/workers.sock"
 * ```
 */
export async function workerSocketPath(dataDir: string): Promise<string> {
  const dir = join(dataDir, "sockets");
  const path = join(dir, "workers.sock");
  if (new TextEncoder().encode(path).length > SUN_PATH_MAX) {
    // mkdtemp: a new directory, mode 0700, that no one else can have made in advance.
    return join(await Deno.makeTempDir({ prefix: "gateway-workers-" }), "workers.sock");
  }
  await Deno.mkdir(dir, { recursive: true, mode: 0o700 });
  const info = await Deno.lstat(dir);
  if (!info.isDirectory || (info.uid !== null && info.uid !== Deno.uid())) {
    throw new Error(`workers socket: ${dir} is not a directory of this user; not using it`);
  }
  await Deno.chmod(dir, 0o700);
  return path;
}

/**
 * Supervises the configured language workers.
 *
 * @example
 * ```ts
 * import { Bus } from "../bus/bus.ts";
 * import { References } from "../config/references.ts";
 * import { MetricsRegistry } from "../observability/metrics.ts";
 * import { WorkerConfig } from "./config.ts";
 * import { WorkerSupervisor } from "./supervisor.ts";
 * const supervisor = new WorkerSupervisor(new Bus(), new MetricsRegistry());
 * const workers = [
 *   WorkerConfig.parse({ name: "echo", command: ["python3", "examples/workers/python/worker.py"] }),
 * ];
 * const context = { starting: true, dataDir: "/tmp/gw", references: new References() };
 * const change = await supervisor.prepare({ workers }, context);
 * await change.commit();
 * await supervisor.stop();
 * ```
 */
export class WorkerSupervisor implements GatewayModule<{ workers: WorkersConfig }> {
  readonly name = "workers";
  readonly sections = ["workers"] as const;
  readonly #bus: Bus;
  readonly #metrics: SupervisionMetrics;
  /** The committed workers by name. */
  #workers = new Map<string, LanguageWorker>();
  /** Every worker with live instances: committed, being prepared, or draining after a reload. */
  readonly #all = new Set<LanguageWorker>();
  readonly #retiring = new Set<Promise<void>>();
  #server?: StreamServer;
  #socketPath?: string;
  #stopped?: Promise<void>;

  constructor(bus: Bus, registry: MetricsRegistry) {
    this.#bus = bus;
    this.#metrics = new SupervisionMetrics(registry);
  }

  /** A committed worker by name. */
  worker(name: string): LanguageWorker | undefined {
    return this.#workers.get(name);
  }

  /**
   * Starts the workers that are new or whose config changed (beside the
   * running ones), and those unchanged that are failing, and waits for every
   * instance's hello. Throws, with every problem naming its `workers[i]`
   * entry, when a command cannot be spawned, or when a new or changed worker
   * cannot start on a reload; what it started is stopped again then.
   */
  async prepare(config: { workers: WorkersConfig }, context: PrepareContext): Promise<Change> {
    if (this.#stopped) throw new Error("the workers module is stopped");
    const next = new Map<string, LanguageWorker>();
    const started: LanguageWorker[] = [];
    /** Those that may serve degraded: all at the first start, the unchanged failing ones later. */
    const degraded = new Set<LanguageWorker>();
    if (config.workers.length > 0) await this.#listen(context.dataDir);
    for (const [i, entry] of config.workers.entries()) {
      const current = this.#workers.get(entry.name);
      const unchanged = current?.key === JSON.stringify(entry);
      if (current && unchanged && current.state !== "failed") {
        next.set(entry.name, current);
        continue;
      }
      const worker = new LanguageWorker(entry, `workers[${i}]`, {
        bus: this.#bus,
        socketPath: this.#socketPath!,
        metrics: this.#metrics.of("worker", entry.name),
      });
      started.push(worker);
      if (context.starting || unchanged) degraded.add(worker);
      next.set(entry.name, worker);
      this.#all.add(worker);
    }
    const discard = async () => {
      await Promise.all(started.map((worker) => worker.stop()));
      for (const worker of started) this.#all.delete(worker);
    };
    const outcomes = await Promise.allSettled(
      started.map((worker) => worker.start(degraded.has(worker))),
    );
    const problems = outcomes.flatMap((outcome) =>
      outcome.status === "rejected" ? [(outcome.reason as Error).message] : []
    );
    if (problems.length > 0) {
      await discard();
      throw new Error(problems.join("\n"));
    }
    return {
      commit: () => {
        const previous = this.#workers;
        this.#workers = next;
        const replaced = [...previous.values()].filter((worker) =>
          next.get(worker.name) !== worker
        );
        for (const worker of replaced) worker.unserve();
        for (const worker of started) worker.serve();
        for (const worker of replaced) this.#retire(worker);
      },
      abort: discard,
    };
  }

  /** Stops every worker gracefully and closes the socket. Idempotent. */
  stop(): Promise<void> {
    this.#stopped ??= (async () => {
      for (const worker of this.#workers.values()) this.#retire(worker);
      this.#workers = new Map();
      await Promise.all([...this.#all].map((worker) => worker.stop()));
      await Promise.all(this.#retiring);
      await this.#server?.stop();
      if (this.#socketPath) {
        await Deno.remove(this.#socketPath).catch(() => {});
        // The private directory goes too when nothing else is in it.
        await Deno.remove(dirname(this.#socketPath)).catch(() => {});
      }
    })();
    return this.#stopped;
  }

  /** Every committed worker with its instances. */
  status(): Record<string, unknown> {
    return {
      socket: this.#socketPath ?? null,
      workers: [...this.#workers.values()].map((worker) => worker.status()),
    };
  }

  /** `GET /workers`, `GET /workers/:name`, `POST /workers/:name/restart`. */
  admin(app: Hono): void {
    app.get("/workers", (c) => c.json(this.status()));
    app.get("/workers/:name", (c) => {
      const worker = this.#workers.get(c.req.param("name"));
      return worker ? c.json(worker.status()) : unknownWorker(c.req.param("name"));
    });
    app.post("/workers/:name/restart", async (c) => {
      const worker = this.#workers.get(c.req.param("name"));
      if (!worker) return unknownWorker(c.req.param("name"));
      try {
        await worker.restart();
      } catch (error) {
        return errorResponse(new GatewayError(500, "restart_failed", (error as Error).message));
      }
      return c.json({ status: "restarted", worker: worker.status() });
    });
  }

  #retire(worker: LanguageWorker): void {
    const stopping = worker.stop().finally(() => {
      this.#all.delete(worker);
      this.#retiring.delete(stopping);
    });
    this.#retiring.add(stopping);
  }

  async #listen(dataDir: string): Promise<void> {
    if (this.#server) return;
    const path = await workerSocketPath(dataDir);
    await claimSocketPath(path, "workers socket");
    const listener = Deno.listen({ transport: "unix", path });
    await Deno.chmod(path, 0o600);
    this.#socketPath = path;
    // Like every listener's, the accept loop outlives accept errors (EMFILE).
    this.#server = new StreamServer("workers socket", listener, (conn) => this.#accept(conn));
    logger.info("workers connect to {path}", { path });
  }

  /**
   * Waits for a connection's hello and hands it to the instance it names;
   * resolves when the connection closes.
   */
  async #accept(conn: Deno.Conn): Promise<void> {
    const connection = new WorkerConnection(conn, HELLO_MAX_FRAME);
    const refuse = (message: string) => {
      eventWarnings.warn(
        logger,
        "workers/refused",
        "workers socket: refused a connection: {message}",
        { message },
      );
      connection.send({ type: "error", message });
      connection.end(message);
    };
    const timer = setTimeout(
      () => refuse(`no hello within ${HELLO_TIMEOUT_MS} ms`),
      HELLO_TIMEOUT_MS,
    );
    connection.handler = (frame) => {
      clearTimeout(timer);
      connection.handler = () => {};
      let hello;
      try {
        hello = parseHello(frame);
      } catch (error) {
        refuse((error as Error).message);
        return;
      }
      for (const worker of this.#all) {
        if (worker.name !== hello.worker) continue;
        const instance = worker.claim(hello);
        if (!instance) continue;
        connection.maxFrame = worker.config.maxFrame;
        worker.attach(instance, connection, hello);
        return;
      }
      refuse(
        `no instance ${hello.instance} of worker "${hello.worker}" with that secret is waiting ` +
          `for a hello (pid ${hello.pid} claimed it; a worker sends its GATEWAY_SECRET)`,
      );
    };
    await connection.closed;
    clearTimeout(timer);
  }
}

function unknownWorker(name: string): Response {
  return errorResponse(new GatewayError(404, "unknown_worker", `no worker is named "${name}"`));
}
