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
import { HttpListener } from "./listeners/http.ts";
import { ListenerSet, type PlannedListener } from "./listeners/set.ts";
import { TcpListener } from "./listeners/tcp.ts";
import { UdpListener } from "./listeners/udp.ts";
import { UnixFramedListener } from "./listeners/unix_framed.ts";
import { Bus } from "./bus/bus.ts";
import { ConnectionManager } from "./connections/manager.ts";
import { installDescriptorGuard } from "./connections/fd_guard.ts";
import { buildListenerApp } from "./router/app.ts";
import { buildRouteTable } from "./router/table.ts";
import { Upstream } from "./upstreams/upstream.ts";
import type { UpstreamClient } from "./upstreams/client.ts";
import { createHttp1Client } from "./upstreams/http1_client.ts";
import { createAdminApp } from "./admin/api.ts";
import type { GatewayModule, ModuleChange } from "./module.ts";
import { PluginHost } from "./plugins/host.ts";
import { MetricsRegistry } from "./observability/metrics.ts";
import { HttpMetrics } from "./observability/http_metrics.ts";
import { configureLogging } from "./observability/log.ts";
import { VERSION } from "./version.ts";
import { MqttModule } from "./mqtt/module.ts";
import { WorkerSupervisor } from "./workers/supervisor.ts";
import { ModelRegistry } from "./models/registry.ts";

const logger = getLogger(["gateway"]);
const SECRET_KEY = /token|password|secret|authorization/i;

/** One built config: everything that is swapped as a whole on reload. */
interface Runtime {
  loaded: LoadedConfig;
  upstreams: Map<string, Upstream>;
  /** The listeners it wants, by listener name, and `ADMIN` for the admin API. */
  listeners: Map<string, PlannedListener>;
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
  /** The bus lives as long as the process: subscriptions survive reloads. */
  readonly bus = new Bus(this.metrics);
  /** Every WebSocket, TCP, UDP-peer and Unix connection, across reloads. */
  readonly connections = new ConnectionManager(this.bus, this.metrics);
  /** The serving config's upstreams, for listeners kept across reloads (TCP proxy mode). */
  readonly #upstreams = new Map<string, Upstream>();
  /** TypeScript plugins, each in its own sandboxed Worker. */
  readonly #plugins = new PluginHost(this.bus, this.metrics);
  /** ONNX models and OCR, run in inference Workers. */
  readonly #models = new ModelRegistry(this.bus, this.metrics);
  /** The embedded MQTT broker (idle while the config has no `mqtt` section). */
  readonly #mqtt = new MqttModule(this.bus, this.connections, this.metrics);
  /**
   * The modules with a lifecycle of their own, in start order (stopped in
   * reverse): functions (plugins, workers, models) are served before the
   * broker lets clients in. Each is prepared from every new config beside its
   * running state.
   */
  readonly #modules: readonly GatewayModule[] = [
    this.#plugins,
    new WorkerSupervisor(this.bus, this.metrics),
    this.#models,
    this.#mqtt,
  ];
  readonly #startedAt = Date.now();
  #runtime?: Runtime;
  readonly #listeners = new ListenerSet();
  #removeDescriptorGuard?: () => void;
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

  /**
   * Loads the config, binds every listener and starts every module. Throws a
   * `ConfigError` or `ListenError` that says what and where; nothing is left
   * running when it throws.
   */
  async start(): Promise<void> {
    const loaded = await loadConfig(this.configPath);
    await configureLogging(loaded.config.log);
    this.#removeDescriptorGuard = installDescriptorGuard();
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
      await this.#apply(loaded);
      await configureLogging(loaded.config.log);
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
      await this.#listeners.stop();
      for (const module of this.#modules.toReversed()) await module.stop();
      await Promise.all([...this.#runtime?.upstreams.values() ?? []].map((u) => u.stop()));
      this.connections.stop();
      this.#client.close();
      this.#removeDescriptorGuard?.();
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
      listeners: this.#listeners.entries().filter(([id]) => id !== ADMIN).map(([name, module]) => ({
        name,
        type: config?.listeners[name]?.type,
        ...(module instanceof HttpListener ? { url: module.url } : {}),
        ...(module instanceof TcpListener || module instanceof UdpListener
          ? { port: module.port }
          : {}),
      })),
      connections: this.connections.openCount,
      routes: config?.routes.map((route, i) => ({
        name: route.name ?? `routes[${i}]`,
        priority: route.priority,
        listeners: route.listeners ?? "all",
        methods: route.match.methods ?? "all",
        path: route.match.path,
        host: route.match.host,
        plugins: route.plugins ?? [],
        target: route.target,
      })),
      upstreams: Object.fromEntries(
        [...runtime?.upstreams ?? []].map(([name, upstream]) => [name, upstream.snapshot()]),
      ),
      ...Object.fromEntries(this.#modules.map((module) => [module.name, module.status()])),
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
      bus: this.bus,
      connections: this.connections,
      mqtt: this.#mqtt,
      plugins: this.#plugins,
      models: this.#models,
    });
    const httpHandler = (name: string) =>
      buildListenerApp({
        listener: name,
        routes,
        metrics: this.#httpMetrics,
        accessLog: config.log.access,
        trustProxy: config.security.trustProxy,
      });
    const services = { bus: this.bus, connections: this.connections, upstreams: this.#upstreams };
    const listeners = new Map<string, PlannedListener>();
    for (const [name, listener] of Object.entries(config.listeners)) {
      const label = `listener "${name}"`;
      const settings = `${name}\n${JSON.stringify(listener)}`;
      if (listener.type === "http") {
        const tls = loaded.tls[name];
        const binding = { ...listener, tls };
        const handler = httpHandler(name);
        listeners.set(name, {
          address: `tcp:${listener.host}:${listener.port}`,
          key: `${settings}\n${tls?.cert}\n${tls?.key}`,
          create: () => new HttpListener(label, binding, handler),
          handler,
        });
      } else if (listener.type === "unix" && listener.protocol === "http") {
        const binding = { host: "", port: 0, ...listener };
        const handler = httpHandler(name);
        listeners.set(name, {
          address: `unix:${listener.path}`,
          key: settings,
          create: () => new HttpListener(label, binding, handler),
          handler,
        });
      } else if (listener.type === "unix") {
        listeners.set(name, {
          address: `unix:${listener.path}`,
          key: settings,
          create: () => new UnixFramedListener(name, listener, services),
        });
      } else if (listener.type === "tcp") {
        listeners.set(name, {
          address: `tcp:${listener.host}:${listener.port}`,
          key: settings,
          create: () => new TcpListener(name, listener, services),
        });
      } else {
        listeners.set(name, {
          address: `udp:${listener.host}:${listener.port}`,
          key: settings,
          create: () => new UdpListener(name, listener, services),
        });
      }
    }
    if (config.admin.enabled) {
      const admin = createAdminApp({
        status: () => this.status(),
        reload: () => this.reload(),
        config: () => redact(this.loaded.document),
        metrics: () => this.metrics.render(),
        ready: () => this.#state === "running",
        stop: () => void this.stop(),
        connections: (filter) => this.connections.list(filter),
        closeConnection: (id) => this.connections.close(id, "closed by the admin API"),
        modules: this.#modules,
      }, adminToken);
      const { host, port } = config.admin;
      const binding = { host, port, drainTimeout: 2000 };
      const handler = (request: Request) => admin.fetch(request);
      listeners.set(ADMIN, {
        address: `tcp:${host}:${port}`,
        key: `admin\n${host}:${port}\n${adminToken}`,
        create: () => new HttpListener("admin API", binding, handler),
        handler,
      });
    }
    return { loaded, upstreams, listeners };
  }

  async #apply(loaded: LoadedConfig): Promise<void> {
    await Deno.mkdir(loaded.config.storage.dataDir, { recursive: true });
    const token = loaded.config.admin.token ?? await localAdminToken(loaded.config.storage.dataDir);
    const runtime = this.#build(loaded, token);
    const prepared: ModuleChange[] = [];
    try {
      for (const module of this.#modules) prepared.push(await module.prepare(loaded.config));
    } catch (error) {
      for (const change of prepared.toReversed()) await change.abort();
      throw error;
    }
    const change = await this.#listeners.prepare(runtime.listeners).catch(async (error) => {
      for (const change of prepared.toReversed()) await change.abort();
      throw error;
    });
    for (const moduleChange of prepared) await moduleChange.commit();
    for (const upstream of runtime.upstreams.values()) upstream.start();
    const previous = this.#runtime;
    this.#runtime = runtime;
    this.#upstreams.clear();
    for (const [name, upstream] of runtime.upstreams) this.#upstreams.set(name, upstream);
    change.commit();
    for (const upstream of previous?.upstreams.values() ?? []) void upstream.stop();
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
