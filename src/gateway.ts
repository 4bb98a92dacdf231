/**
 * The gateway's lifecycle, and nothing else: it composes the participants
 * (modules, upstreams, listeners), prepares each from its config slice beside
 * the serving set, commits them together inside a guard, and stops them in
 * reverse order. If anything fails to prepare, what was prepared is aborted
 * and nothing changes; a commit that throws aborts the participants not yet
 * committed (the listeners commit last, so the old listeners keep serving and
 * no new socket is left bound).
 *
 * @module
 */

import { join } from "node:path";
import { getLogger } from "@logtape/logtape";
import { createAdminApp } from "./admin/api.ts";
import { localAdminToken, redactSecrets } from "./admin/secrets.ts";
import { Bus } from "./bus/bus.ts";
import { ConfigError, type LoadedConfig } from "./config/load.ts";
import { watchFiles } from "./config/watch.ts";
import { installDescriptorGuard } from "./connections/fd_guard.ts";
import { ConnectionManager } from "./connections/manager.ts";
import { planHttpListener, planListeners } from "./listeners/plan.ts";
import { ListenerSet } from "./listeners/set.ts";
import { ModelRegistry } from "./models/registry.ts";
import type { Change, GatewayModule, PrepareContext } from "./module.ts";
import { MqttModule } from "./mqtt/module.ts";
import { HttpMetrics } from "./observability/http_metrics.ts";
import { configureLogging, logsAsJson } from "./observability/log.ts";
import { MetricsRegistry } from "./observability/metrics.ts";
import { RateLimitPool } from "./pipeline/rate_limit.ts";
import { BodyBudget } from "./pipeline/body_budget.ts";
import { PluginHost } from "./plugins/host.ts";
import { buildListenerApp } from "./router/app.ts";
import { buildRouteTable } from "./router/table.ts";
import { GatewayConfig, loadGatewayConfig } from "./sections.ts";
import { TrustedProxies } from "./security/trusted_proxies.ts";
import { createHttp1Client } from "./upstreams/http1_client.ts";
import { UpstreamSet } from "./upstreams/set.ts";
import { VERSION } from "./version.ts";
import { WorkerSupervisor } from "./workers/supervisor.ts";

const logger = getLogger(["gateway"]);

/** The listener id of the admin API (not a valid listener name). */
const ADMIN = "\0admin";

/** The result of a reload. */
export interface ReloadOutcome {
  hash: string;
  changed: boolean;
}

/** What a gateway is built with besides its config file. */
export interface GatewayOptions {
  /** Modules added after the built-in ones (prepared and committed with them). */
  modules?: readonly GatewayModule[];
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
  /** The bus lives as long as the process: subscriptions survive reloads. */
  readonly bus = new Bus(this.metrics);
  /** Every WebSocket, TCP, UDP-peer and Unix connection, across reloads. */
  readonly connections = new ConnectionManager(this.bus, this.metrics);
  readonly #upstreams = new UpstreamSet(createHttp1Client());
  /** Rate-limit buckets, kept across reloads that do not change a route's limits. */
  readonly #rateLimits = new RateLimitPool();
  /** Buffered request-body bytes of the whole process, across reloads (`security.limits.maxBufferedBytes`). */
  readonly #bodyBudget = new BodyBudget(Infinity);
  readonly #plugins = new PluginHost(this.bus, this.metrics);
  readonly #models = new ModelRegistry(this.bus, this.metrics);
  readonly #mqtt = new MqttModule(this.bus, this.connections, this.metrics);
  /**
   * The modules in start order (stopped in reverse): functions (plugins,
   * workers, models) are served before the broker lets clients in.
   */
  readonly #modules: readonly GatewayModule[];
  readonly #listeners = new ListenerSet();
  readonly #startedAt = Date.now();
  #loaded?: LoadedConfig<GatewayConfig>;
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

  constructor(readonly configPath: string, options: GatewayOptions = {}) {
    this.#modules = [
      this.#plugins,
      new WorkerSupervisor(this.bus, this.metrics),
      this.#models,
      this.#mqtt,
      ...options.modules ?? [],
    ];
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
      for (const [name, upstream] of this.#upstreams.entries()) {
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
  get loaded(): LoadedConfig<GatewayConfig> {
    if (!this.#loaded) throw new Error("the gateway has not started");
    return this.#loaded;
  }

  /**
   * Loads the config, binds every listener and starts every module. Throws a
   * `ConfigError` or `ListenError` that says what and where; nothing is left
   * running when it throws. A worker, plugin or model that fails at run time
   * does not stop the start: it is shown as failed and retried.
   */
  async start(): Promise<void> {
    const loaded = await loadGatewayConfig(this.configPath);
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
      const loaded = await loadGatewayConfig(this.configPath);
      if (loaded.hash === this.#loaded?.hash) {
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
   * drainTimeout), then stops the modules in reverse order. Idempotent.
   */
  stop(): Promise<void> {
    this.#stopped ??= (async () => {
      this.#state = "stopping";
      this.#stopWatching?.();
      await this.#queue;
      // The reverse of the order participants are prepared and committed in.
      await this.#listeners.stop();
      await this.#upstreams.stop();
      for (const module of this.#modules.toReversed()) await module.stop();
      this.connections.stop();
      this.#upstreams.client.close();
      this.#removeDescriptorGuard?.();
      if (this.#loaded) {
        await Deno.remove(join(this.#loaded.config.storage.dataDir, "gateway.pid"))
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
    const loaded = this.#loaded;
    const config = loaded?.config;
    return {
      version: VERSION,
      pid: Deno.pid,
      state: this.#state,
      uptimeSeconds: Math.round((Date.now() - this.#startedAt) / 1000),
      configFile: loaded?.file,
      configHash: loaded?.hash,
      lastReloadError: this.#lastReloadError ?? null,
      listeners: this.#listeners.entries().filter(([id]) => id !== ADMIN).map(([name, module]) => ({
        name,
        type: config?.listeners[name]?.type,
        url: module.url,
        port: module.port,
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
        this.#upstreams.entries().map(([name, upstream]) => [name, upstream.snapshot()]),
      ),
      ...Object.fromEntries(this.#modules.map((module) => [module.name, module.status()])),
    };
  }

  /** Prepares every participant for `loaded`, then commits them all, or none. */
  async #apply(loaded: LoadedConfig<GatewayConfig>): Promise<void> {
    const { config } = loaded;
    await Deno.mkdir(config.storage.dataDir, { recursive: true });
    const changes: Change[] = [];
    try {
      for (const module of this.#modules) {
        const context: PrepareContext = {
          starting: this.#loaded === undefined,
          dataDir: config.storage.dataDir,
          references: loaded.references.only(module.references ?? []),
        };
        changes.push(await module.prepare(sliceOf(config, module.sections), context));
      }
      const upstreams = await this.#upstreams.prepare(config.upstreams);
      changes.push(upstreams);
      const rateLimits = this.#rateLimits.prepare();
      changes.push({ commit: rateLimits.commit, abort() {} });
      const { maxBufferedBytes } = config.security.limits;
      changes.push({
        commit: () => {
          this.#bodyBudget.limit = maxBufferedBytes;
        },
        abort() {},
      });
      const routes = buildRouteTable(config, {
        upstreams: upstreams.upstreams,
        client: this.#upstreams.client,
        metrics: this.#httpMetrics,
        bus: this.bus,
        connections: this.connections,
        mqtt: this.#mqtt,
        plugins: this.#plugins,
        models: this.#models,
        rateLimits,
        bodyBudget: this.#bodyBudget,
      });
      const plan = await planListeners(
        config.listeners,
        (listener) =>
          buildListenerApp({
            listener,
            routes,
            metrics: this.#httpMetrics,
            accessLog: config.log.access === "auto"
              ? logsAsJson(config.log.format)
              : config.log.access,
            redactQuery: config.log.redactQuery,
            trustedProxies: new TrustedProxies(config.security.trustedProxies),
          }),
        { bus: this.bus, connections: this.connections, upstreams: this.#upstreams },
        (listener) =>
          config.routes.some((route) =>
            (route.target.websocket || route.target.mqtt) &&
            (!route.listeners || route.listeners.includes(listener))
          ),
      );
      if (config.admin.enabled) {
        const token = config.admin.token ?? await localAdminToken(config.storage.dataDir);
        const { host, port } = config.admin;
        const admin = this.#adminApp(token);
        plan.set(
          ADMIN,
          planHttpListener(
            "admin API",
            `admin\n${host}:${port}\n${token}`,
            { host, port, drainTimeout: 2000 },
            (request) => admin.fetch(request),
          ),
        );
      }
      // Last: until the listeners commit, the old handlers serve.
      changes.push(await this.#listeners.prepare(plan));
    } catch (error) {
      for (const change of changes.toReversed()) await change.abort();
      throw error;
    }
    for (const [i, change] of changes.entries()) {
      try {
        await change.commit();
      } catch (error) {
        logger.error("a commit failed; the participants after it are aborted: {error}", { error });
        for (const rest of changes.slice(i + 1).toReversed()) await rest.abort();
        throw error;
      }
    }
    this.#loaded = loaded;
  }

  #adminApp(token: string) {
    return createAdminApp({
      status: () => this.status(),
      reload: () => this.reload(),
      config: () => redactSecrets(this.loaded.document, GatewayConfig),
      metrics: () => this.metrics.render(),
      ready: () => this.#state === "running",
      stop: () => void this.stop(),
      connections: (filter) => this.connections.list(filter),
      closeConnection: (id) => this.connections.close(id, "closed by the admin API"),
      modules: this.#modules,
    }, token);
  }

  #watch(files: string[]): void {
    this.#stopWatching?.();
    this.#stopWatching = watchFiles(files, () => {
      logger.info("config file changed, reloading");
      this.reload().catch(() => {/* logged by reload */});
    });
  }
}

/** The sections a module owns, picked out of the config. */
function sliceOf(config: GatewayConfig, sections: readonly string[]): never {
  return Object.fromEntries(
    sections.map((key) => [key, config[key as keyof GatewayConfig]]),
  ) as never;
}
