/**
 * The gateway's lifecycle. Every module is built from one validated config;
 * a reload builds the complete new set beside the old one (new listeners
 * bound, new route table, new upstreams started), swaps it in at once, then
 * releases the old set. If anything in the new set fails, the new parts are
 * torn down, nothing changes, and the error says why.
 *
 * @module
 */

import { join } from "node:path";
import { getLogger } from "@logtape/logtape";
import { ConfigError, loadConfig, type LoadedConfig } from "./config/load.ts";
import { watchFiles } from "./config/watch.ts";
import { type HttpBinding, HttpListener } from "./listeners/http.ts";
import { buildListenerApp, type ServeHandler } from "./router/app.ts";
import { buildRouteTable } from "./router/table.ts";
import { Upstream } from "./upstreams/upstream.ts";
import type { UpstreamClient } from "./upstreams/client.ts";
import { createHttp1Client } from "./upstreams/http1_client.ts";
import { createAdminApp } from "./admin/api.ts";
import { MetricsRegistry } from "./observability/metrics.ts";
import { HttpMetrics } from "./observability/http_metrics.ts";
import { configureLogging } from "./observability/log.ts";
import { VERSION } from "./version.ts";

const logger = getLogger(["gateway"]);
const SECRET_KEY = /token|password|secret|authorization/i;

/** One built config: everything that is swapped as a whole on reload. */
interface Runtime {
  loaded: LoadedConfig;
  upstreams: Map<string, Upstream>;
  /** Handler per listener name, and `ADMIN` for the admin API. */
  handlers: Map<string, ServeHandler>;
  bindings: Map<string, { label: string; binding: HttpBinding }>;
}

const ADMIN = "\0admin";

/** The result of a reload. */
export interface ReloadOutcome {
  hash: string;
  changed: boolean;
}

/**
 * The running gateway.
 *
 * @example
 * ```ts
 * import { Gateway } from "./gateway.ts";
 * const gateway = new Gateway("config/config.json");
 * await gateway.start();
 * await gateway.reload();
 * await gateway.stop();
 * ```
 */
export class Gateway {
  readonly metrics = new MetricsRegistry();
  readonly #httpMetrics = new HttpMetrics(this.metrics);
  readonly #client: UpstreamClient = createHttp1Client();
  readonly #startedAt = Date.now();
  #runtime?: Runtime;
  #listeners = new Map<string, HttpListener>();
  #queue: Promise<unknown> = Promise.resolve();
  #state: "created" | "running" | "stopping" | "stopped" = "created";
  #lastReloadError?: string;
  #stopWatching?: () => void;
  #stopped?: Promise<void>;
  readonly #finished = Promise.withResolvers<void>();
  readonly #reloads = this.metrics.counter(
    "gateway_config_reloads_total",
    "Config reloads, by result (ok, failed).",
    ["result"],
  );

  constructor(readonly configPath: string) {
    const memory = this.metrics.gauge(
      "gateway_process_memory_bytes",
      "Process memory, by kind (rss, heap_used, heap_total, external).",
      ["kind"],
    );
    const health = this.metrics.gauge(
      "gateway_upstream_target_healthy",
      "1 when an upstream target is taking traffic, 0 when it is ejected or unhealthy.",
      ["upstream", "target"],
    );
    const breaker = this.metrics.gauge(
      "gateway_upstream_breaker_open",
      "Circuit breaker state per target: 0 closed, 1 open, 0.5 half-open.",
      ["upstream", "target"],
    );
    this.metrics.collect(() => {
      const usage = Deno.memoryUsage();
      memory.labels({ kind: "rss" }).set(usage.rss);
      memory.labels({ kind: "heap_used" }).set(usage.heapUsed);
      memory.labels({ kind: "heap_total" }).set(usage.heapTotal);
      memory.labels({ kind: "external" }).set(usage.external);
      health.reset();
      breaker.reset();
      for (const [name, upstream] of this.#runtime?.upstreams ?? []) {
        for (const target of upstream.snapshot().targets) {
          const labels = { upstream: name, target: target.url };
          health.labels(labels).set(target.healthy ? 1 : 0);
          breaker.labels(labels).set(
            target.breaker === "open" ? 1 : target.breaker === "half-open" ? 0.5 : 0,
          );
        }
      }
    });
  }

  /** The loaded config now serving. */
  get loaded(): LoadedConfig {
    if (!this.#runtime) throw new Error("the gateway has not started");
    return this.#runtime.loaded;
  }

  /** The bound port of a listener (by name) or of the admin API (`"admin"`). */
  port(name: string): number | undefined {
    return this.#listeners.get(name === "admin" ? ADMIN : name)?.port;
  }

  /**
   * Loads the config, binds every listener and starts every module. Throws a
   * `ConfigError` or `ListenError` that says what and where; nothing is left
   * running when it throws.
   */
  async start(): Promise<void> {
    const loaded = await loadConfig(this.configPath);
    await configureLogging(loaded.config.log);
    await this.#apply(loaded);
    await Deno.writeTextFile(join(loaded.config.storage.dataDir, "gateway.pid"), `${Deno.pid}\n`);
    this.#state = "running";
    this.#watch(loaded.files);
    logger.info("gateway {version} running config {file} ({hash})", {
      version: VERSION,
      file: loaded.file,
      hash: loaded.hash,
    });
  }

  /**
   * Re-reads the config file and applies it atomically. Reloads run one at a
   * time. Rejects with the reasons when the new config cannot be used; the
   * old one keeps serving.
   */
  reload(): Promise<ReloadOutcome> {
    const run = this.#queue.then(() => this.#reload());
    this.#queue = run.catch(() => {});
    return run;
  }

  async #reload(): Promise<ReloadOutcome> {
    if (this.#state !== "running") throw new Error(`cannot reload while ${this.#state}`);
    try {
      const loaded = await loadConfig(this.configPath);
      if (loaded.hash === this.#runtime?.loaded.hash) {
        this.#reloads.labels({ result: "ok" }).inc();
        return { hash: loaded.hash, changed: false };
      }
      await configureLogging(loaded.config.log);
      await this.#apply(loaded);
      this.#watch(loaded.files);
      this.#lastReloadError = undefined;
      this.#reloads.labels({ result: "ok" }).inc();
      logger.info("config reloaded ({hash})", { hash: loaded.hash });
      return { hash: loaded.hash, changed: true };
    } catch (error) {
      this.#reloads.labels({ result: "failed" }).inc();
      const problems = error instanceof ConfigError ? error.problems : [(error as Error).message];
      this.#lastReloadError = problems.join("\n");
      logger.error("config reload refused, the previous config keeps serving: {problems}", {
        problems: this.#lastReloadError,
      });
      throw error;
    }
  }

  /**
   * Stops accepting, lets in-flight requests finish (each listener's
   * drainTimeout), stops every module. Idempotent.
   */
  stop(): Promise<void> {
    this.#stopped ??= (async () => {
      this.#state = "stopping";
      this.#stopWatching?.();
      await this.#queue;
      await Promise.all([...this.#listeners.values()].map((listener) => listener.stop()));
      await Promise.all([...this.#runtime?.upstreams.values() ?? []].map((u) => u.stop()));
      this.#client.close();
      if (this.#runtime) {
        await Deno.remove(join(this.#runtime.loaded.config.storage.dataDir, "gateway.pid"))
          .catch(() => {});
      }
      this.#state = "stopped";
      logger.info("gateway stopped");
      this.#finished.resolve();
    })();
    return this.#stopped;
  }

  /** Settles when the gateway has stopped, however the stop was asked for. */
  get finished(): Promise<void> {
    return this.#finished.promise;
  }

  /** What `GET /status` shows. */
  status(): Record<string, unknown> {
    const runtime = this.#runtime;
    const config = runtime?.loaded.config;
    return {
      version: VERSION,
      pid: Deno.pid,
      state: this.#state,
      uptimeSeconds: Math.round((Date.now() - this.#startedAt) / 1000),
      configFile: runtime?.loaded.file,
      configHash: runtime?.loaded.hash,
      lastReloadError: this.#lastReloadError ?? null,
      listeners: [...this.#listeners.entries()].filter(([id]) => id !== ADMIN).map((
        [name, listener],
      ) => ({
        name,
        url: `${
          listener.binding.tls ? "https" : "http"
        }://${listener.binding.host}:${listener.port}`,
      })),
      routes: config?.routes.map((route, i) => ({
        name: route.name ?? `routes[${i}]`,
        priority: route.priority,
        listeners: route.listeners ?? "all",
        methods: route.match.methods ?? "all",
        path: route.match.path,
        host: route.match.host,
        target: route.target.upstream
          ? { upstream: route.target.upstream }
          : route.target.static
          ? { static: route.target.static.root }
          : { respond: route.target.respond?.status },
      })),
      upstreams: Object.fromEntries(
        [...runtime?.upstreams ?? []].map(([name, upstream]) => [name, upstream.snapshot()]),
      ),
    };
  }

  #build(loaded: LoadedConfig, adminToken: string): Runtime {
    const { config } = loaded;
    const upstreams = new Map(
      Object.entries(config.upstreams).map((
        [name, upstream],
      ) => [name, new Upstream(name, upstream, this.#client)]),
    );
    const routes = buildRouteTable(config, {
      upstreams,
      client: this.#client,
      metrics: this.#httpMetrics,
    });
    const handlers = new Map<string, ServeHandler>();
    const bindings = new Map<string, { label: string; binding: HttpBinding }>();
    for (const [name, listener] of Object.entries(config.listeners)) {
      if (listener.type !== "http") continue;
      handlers.set(
        name,
        buildListenerApp({
          listener: name,
          routes,
          metrics: this.#httpMetrics,
          accessLog: config.log.access,
          trustProxy: config.security.trustProxy,
        }),
      );
      bindings.set(name, {
        label: `listener "${name}"`,
        binding: { ...listener, tls: loaded.tls[name] },
      });
    }
    if (config.admin.enabled) {
      const admin = createAdminApp({
        status: () => this.status(),
        reload: () => this.reload(),
        config: () => redact(this.loaded.document),
        metrics: () => this.metrics.render(),
        ready: () => this.#state === "running",
        stop: () => void this.stop(),
      }, adminToken);
      handlers.set(ADMIN, (request) => Promise.resolve(admin.fetch(request)));
      bindings.set(ADMIN, {
        label: "admin API",
        binding: { host: config.admin.host, port: config.admin.port, drainTimeout: 2000 },
      });
    }
    return { loaded, upstreams, handlers, bindings };
  }

  async #apply(loaded: LoadedConfig): Promise<void> {
    await Deno.mkdir(loaded.config.storage.dataDir, { recursive: true });
    const token = loaded.config.admin.token ?? await localAdminToken(loaded.config.storage.dataDir);
    const runtime = this.#build(loaded, token);
    const reusable = new Map([...this.#listeners.values()].map((l) => [l.key, l]));
    const next = new Map<string, HttpListener>();
    const bound: HttpListener[] = [];
    try {
      for (const [id, { label, binding }] of runtime.bindings) {
        const listener = new HttpListener(label, binding);
        const existing = reusable.get(listener.key);
        if (existing) {
          reusable.delete(listener.key);
          next.set(id, existing);
          continue;
        }
        listener.start(runtime.handlers.get(id)!);
        bound.push(listener);
        next.set(id, listener);
      }
      for (const upstream of runtime.upstreams.values()) upstream.start();
    } catch (error) {
      await Promise.all([...runtime.upstreams.values()].map((upstream) => upstream.stop()));
      await Promise.all(bound.map((listener) => listener.stop()));
      throw error;
    }
    for (const [id, listener] of next) listener.setHandler(runtime.handlers.get(id)!);
    const previous = this.#runtime;
    this.#runtime = runtime;
    this.#listeners = next;
    for (const upstream of previous?.upstreams.values() ?? []) void upstream.stop();
    for (const retired of reusable.values()) {
      retired.stop().catch((error) =>
        logger.warn("retired listener did not stop cleanly: {error}", { error })
      );
    }
  }

  #watch(files: string[]): void {
    this.#stopWatching?.();
    this.#stopWatching = watchFiles(files, () => {
      logger.info("config file changed, reloading");
      this.reload().catch(() => {/* logged by reload */});
    });
  }
}

/**
 * The admin token kept in the data directory, created on first use (mode 0600).
 *
 * @example
 * ```ts
 * import { localAdminToken } from "./gateway.ts";
 * const token = await localAdminToken("data");
 * ```
 */
export async function localAdminToken(dataDir: string): Promise<string> {
  const file = join(dataDir, "admin.token");
  try {
    const token = (await Deno.readTextFile(file)).trim();
    if (token.length >= 16) return token;
  } catch (error) {
    if (!(error instanceof Deno.errors.NotFound)) throw error;
  }
  const bytes = crypto.getRandomValues(new Uint8Array(24));
  const token = [...bytes].map((b) => b.toString(16).padStart(2, "0")).join("");
  await Deno.writeTextFile(file, `${token}\n`, { mode: 0o600 });
  return token;
}

function redact(value: unknown, key = ""): unknown {
  if (typeof value === "string") {
    return SECRET_KEY.test(key) && !value.startsWith("env:") ? "[redacted]" : value;
  }
  if (Array.isArray(value)) return value.map((item) => redact(item));
  if (value && typeof value === "object") {
    return Object.fromEntries(Object.entries(value).map(([k, v]) => [k, redact(v, k)]));
  }
  return value;
}
