/**
 * The plugin host: the `plugins` module of the gateway. It loads every plugin
 * in the plugins directory into its own sandbox, serves their functions on
 * the bus (`fn/<plugin>/<function>`) and their message handlers, and keeps
 * them current: a saved file is loaded beside the running version and
 * swapped in once its `init` succeeded (the old one drains, then ends); a
 * broken save is reported with its file and line and the old version keeps
 * serving; a removed file unloads the plugin. A hook or function that throws
 * fails only its request or call (and is counted); a plugin whose Worker
 * crashes or stops answering is restarted with capped
 * exponential backoff (a {@link Restarter}), and is `failed` after repeated
 * quick crashes. A plugin that cannot load or init (at start or later) does
 * not stop the gateway: it is tried again with the same backoff, its routes
 * answer 503 and its functions `unavailable`, with the reason.
 *
 * @module
 */

import { getLogger } from "@logtape/logtape";
import type { Hono } from "hono";
import type { Bus, Subscription } from "../bus/bus.ts";
import type { BusScope } from "../bus/scope.ts";
import type { MessageSource } from "../bus/message.ts";
import {
  callFunction,
  FunctionCallError,
  parseFunctionRef,
  serveFunction,
} from "../functions/call.ts";
import type { Change, GatewayModule, PrepareContext } from "../module.ts";
import { errorResponse, GatewayError } from "../errors.ts";
import type { MetricsRegistry } from "../observability/metrics.ts";
import type { PluginGrantConfig, PluginsConfig } from "./config.ts";
import { discoverPlugins, type PluginSource } from "./discover.ts";
import type { AskMessage, PluginErrorInfo, RuntimeMessage } from "./messages.ts";
import { planPermissions } from "./permissions.ts";
import { type PartMetricValues, SupervisionMetrics } from "../supervision/metrics.ts";
import { Restarter } from "../supervision/restart.ts";
import { CallStats, type PartProblem, type PartStatus } from "../supervision/stats.ts";
import { PluginError, PluginSandbox, type SandboxServices } from "./sandbox.ts";
import { PluginMetricWriter } from "./metric_writer.ts";
import { PluginStores } from "./store.ts";
import { watchDebounced } from "../util/watch.ts";
import { handOver } from "./handover.ts";
import { LoadRound, majorOf } from "./requirements.ts";

const logger = getLogger(["gateway", "plugins"]);
/** How long a call may take when nothing set a deadline (outside hooks: init, onMessage). */
const DEFAULT_TIMEOUT = 30_000;
/** The host's own metrics, which no plugin metric may write to. */
const HOST_METRICS = new Set([
  "gateway_plugin_failures_total",
  "gateway_plugin_loads_total",
]);

/**
 * One plugin by name, across its versions: the active one, its source, its
 * restarts, and the counts and timings `GET /plugins` shows.
 *
 * @example
 * ```ts
 * import { PluginSlot } from "./host.ts";
 * import { MetricsRegistry } from "../observability/metrics.ts";
 * import { SupervisionMetrics } from "../supervision/metrics.ts";
 * const metrics = new SupervisionMetrics(new MetricsRegistry()).of("plugin", "stamp");
 * const slot = new PluginSlot("stamp", metrics, () => {});
 * slot.stats.record(0.4);
 * slot.stats.durations.quantile(0.5); // 0.4
 * ```
 */
export class PluginSlot {
  /** The version serving hooks and calls; absent while none loaded. */
  active?: PluginSandbox;
  /** What `active` was built from: hash, settings and grant. */
  key = "";
  /** The source last seen on disk (absent once the file is removed). */
  source?: PluginSource;
  /** Set while a crashed version waits for its replacement; work waits for it rather than failing. */
  restarting?: PromiseWithResolvers<void>;
  /** Set while the active version hands its state to the next: work waits for the swap. */
  handingOver?: Promise<unknown>;
  functions?: Subscription;
  /** Disabled (`plugins.disabled` or the admin API): not loaded, its routes answer 503. */
  disabled = false;
  readonly stats: CallStats;
  readonly restarter: Restarter;

  /** `restart` loads the plugin again once a crash's backoff has passed. */
  constructor(readonly name: string, metrics: PartMetricValues, restart: () => void) {
    this.stats = new CallStats(metrics);
    this.restarter = new Restarter(restart);
  }

  /** The latest problem: what threw and where. */
  get lastError(): PartProblem | undefined {
    return this.stats.lastError;
  }

  set lastError(problem: PartProblem | undefined) {
    this.stats.lastError = problem;
  }
}

function problemOf(error: unknown): PartProblem {
  const info: PluginErrorInfo = error instanceof PluginError
    ? error.info
    : { type: "Error", message: error instanceof Error ? error.message : String(error) };
  // A message that already names its error (an import's "SyntaxError: …") is not prefixed again.
  const named = /^[A-Z]\w*(Error|Exception): /.test(info.message);
  return {
    message: named ? info.message : `${info.type}: ${info.message}`,
    ...(info.at ? { at: info.at } : {}),
    time: new Date().toISOString(),
  };
}

function grantsAnything(grant: PluginGrantConfig | undefined): boolean {
  const { bus: _bus, ...permissions } = grant ?? {};
  return Object.values(permissions).some((value) => value === true || (value || []).length > 0);
}

/**
 * Loads, serves, watches and restarts the plugins.
 *
 * @example
 * ```ts
 * import { PluginHost } from "./host.ts";
 * import { Bus } from "../bus/bus.ts";
 * import { MetricsRegistry } from "../observability/metrics.ts";
 * const host = new PluginHost(new Bus(), new MetricsRegistry());
 * // const change = await host.prepare(config); change.commit(); ... await host.stop();
 * ```
 */
export class PluginHost implements GatewayModule<{ plugins: PluginsConfig }> {
  readonly name = "plugins";
  readonly sections = ["plugins"] as const;
  /** Which plugins routes and listeners run, and the worker names a plugin may not take. */
  readonly references = ["plugin-use", "worker"] as const;
  readonly #slots = new Map<string, PluginSlot>();
  /** Bus subscriptions each sandbox asked for, made while it is the active version. */
  readonly #subscriptions = new WeakMap<
    PluginSandbox,
    Map<number, { filter: string; live?: Subscription }>
  >();
  /** The round each sandbox was loaded in: where its init finds what it requires. */
  readonly #rounds = new WeakMap<PluginSandbox, LoadRound<PluginSandbox>>();
  /** The bus as each sandbox may use it: out of `fn/`, reply and `$` topics, within its grant. */
  readonly #buses = new WeakMap<PluginSandbox, BusScope>();
  /** Answers owed for bus requests delivered to a sandbox; only that sandbox may give them. */
  readonly #replies = new Map<
    number,
    {
      sandbox: PluginSandbox;
      reply: (payload: Uint8Array) => void;
      timer: ReturnType<typeof setTimeout>;
    }
  >();
  #nextReply = 1;
  #config?: PluginsConfig;
  /** Function owners that are not plugins, from the serving config: workers and `model`. */
  #taken = new Set<string>(["model"]);
  /** What the admin API set, by plugin: true enabled, false disabled (until a config reload). */
  readonly #adminChoice = new Map<string, boolean>();
  readonly #stores = new PluginStores();
  #stopWatching?: () => void;
  #queue: Promise<unknown> = Promise.resolve();
  #stopped = false;
  readonly #services: SandboxServices = {
    ask: (sandbox, ask) => this.#ask(sandbox, ask),
    notify: (sandbox, message) => this.#notify(sandbox, message),
    crashed: (sandbox, error) => {
      const slot = this.#slots.get(sandbox.source.name);
      if (slot?.active !== sandbox) return;
      slot.lastError = problemOf(new PluginError(error, "threw"));
      this.#restart(slot, `an uncaught error ended its worker: ${error.message}`);
    },
  };
  readonly #supervision: SupervisionMetrics;
  readonly #failures;
  readonly #reloads;
  readonly #metricWriter: PluginMetricWriter;

  constructor(readonly bus: Bus, readonly metrics: MetricsRegistry) {
    this.#supervision = new SupervisionMetrics(metrics);
    this.#failures = metrics.counter(
      "gateway_plugin_failures_total",
      "Plugin hooks and functions that threw or ran past their deadline, by plugin, kind " +
        "(request, response, function) and reason (threw, timeout, gone).",
      ["plugin", "kind", "reason"],
    );
    this.#reloads = metrics.counter(
      "gateway_plugin_loads_total",
      "Plugin versions loaded, by plugin and result (ok, failed).",
      ["plugin", "result"],
    );
    this.#metricWriter = new PluginMetricWriter(metrics, HOST_METRICS);
  }

  /** The serving plugins section. */
  get config(): PluginsConfig {
    if (!this.#config) throw new Error("the plugin host has not been configured");
    return this.#config;
  }

  /** The plugin called `name`, loaded or not; undefined when none was ever seen. */
  slot(name: string): PluginSlot | undefined {
    return this.#slots.get(name);
  }

  async prepare(config: { plugins: PluginsConfig }, context: PrepareContext): Promise<Change> {
    const next = config.plugins;
    // Before any init: a plugin's init may use its store and define metrics.
    this.#stores.dataDir ||= context.dataDir;
    const seriesLimit = this.#metricWriter.limit;
    this.#metricWriter.limit = next.maxMetricSeries;
    const taken = new Set(["model", ...context.references.names("worker")]);
    const sources = await discoverPlugins(next.dir);
    const started = new Map<string, { sandbox: PluginSandbox; key: string }>();
    const failed = new Map<string, unknown>();
    const round = this.#round(next);
    await Promise.all([...sources.values()].map(async (source) => {
      if (this.#isDisabled(next, source.name, true)) return;
      const key = versionKey(source, next);
      const slot = this.#slots.get(source.name);
      if (slot?.active && slot.key === key && !taken.has(source.name)) return;
      try {
        started.set(source.name, { sandbox: await this.#loadIn(round, source, next, taken), key });
      } catch (error) {
        failed.set(source.name, error);
      }
    }));
    // Settings the config gives and the plugin refuses are the config's fault: refuse it. A
    // plugin that needs settings the config does not give fails alone (its routes answer 503).
    const badSettings = [...failed].filter(([name, error]) =>
      Object.hasOwn(next.settings, name) && isSettingsError(error)
    );
    if (badSettings.length > 0) {
      for (const { sandbox } of started.values()) sandbox.terminate();
      throw new Error(
        badSettings.map(([, error]) => (error as PluginError).info.message).join("\n"),
      );
    }
    for (const name of Object.keys(next.settings)) {
      if (!sources.has(name)) {
        logger.warn("plugins.settings.{name}: no plugin {name} in {dir}", { name, dir: next.dir });
      }
    }
    const referenced = new Set(context.references.names("plugin-use"));
    for (const name of referenced) {
      if (!sources.has(name)) {
        logger.warn(
          "plugin {name} is named in the config but not in {dir}: its routes answer 503",
          {
            name,
            dir: next.dir,
          },
        );
      }
    }
    return {
      commit: () => {
        const watchChanged = this.#config?.dir !== next.dir;
        this.#config = next;
        this.#taken = taken;
        for (const [name, slot] of this.#slots) {
          if (!sources.has(name) && slot.active) this.#unload(slot);
        }
        for (const [name, { sandbox, key }] of started) {
          const slot = this.#slotFor(name);
          slot.restarter.reset();
          this.#activate(slot, sandbox, key, sources.get(name)!);
        }
        for (const [name, error] of failed) {
          const slot = this.#slotFor(name);
          const source = sources.get(name)!;
          if (taken.has(name) && slot.active) this.#unload(slot);
          if (referenced.has(name) || !isSettingsError(error)) {
            this.#loadFailed(slot, error, source);
            // A runtime failure (init threw, timed out) is tried again; a refusal is for good.
            if (
              !slot.active && !taken.has(name) && !source.escape && !isSettingsError(error) &&
              !isRequirementError(error)
            ) {
              slot.restarter.reset();
              slot.key = versionKey(source, next);
              this.#backoff(slot, slot.lastError!.message, 0);
            }
          } else {
            // A shipped plugin nobody configured or uses is not a failure worth an error.
            slot.lastError = problemOf(error);
            slot.source = sources.get(name);
            logger.info("plugin {name} is not loaded, no route uses it: {message}", {
              name,
              message: slot.lastError.message,
            });
          }
        }
        // The config's list wins over what the admin API set for the plugins it names.
        for (const name of next.disabled) this.#adminChoice.delete(name);
        for (const [name, source] of sources) {
          const slot = this.#slotFor(name);
          slot.disabled = this.#isDisabled(next, name);
          if (slot.disabled) this.#disable(slot, source);
        }
        if (watchChanged) this.#watch(next.dir);
      },
      abort: () => {
        this.#metricWriter.limit = seriesLimit;
        for (const { sandbox } of started.values()) sandbox.terminate();
      },
    };
  }

  async stop(): Promise<void> {
    if (this.#stopped) return;
    this.#stopped = true;
    this.#stopWatching?.();
    await this.#queue;
    const timeout = this.#config?.drainTimeout ?? 10_000;
    await Promise.all([...this.#slots.values()].map((slot) => {
      slot.restarter.stop();
      const active = slot.active;
      if (!active) return;
      this.#unload(slot, false);
      return active.stop(timeout);
    }));
    await this.#stores.close();
  }

  status(): unknown {
    return [...this.#slots.values()].map((slot) => this.#describe(slot));
  }

  admin(app: Hono): void {
    app.get("/plugins", (c) => c.json(this.status()));
    app.post("/plugins/:name/reload", async (c) => {
      const name = c.req.param("name");
      const slot = await this.reloadPlugin(name);
      if (!slot) {
        return errorResponse(
          new GatewayError(404, "unknown_plugin", `no plugin "${name}" in ${this.config.dir}`),
        );
      }
      const described = this.#describe(slot);
      return c.json(described, slot.lastError && !slot.active ? 422 : 200);
    });
    for (const action of ["enable", "disable"] as const) {
      app.post(`/plugins/:name/${action}`, async (c) => {
        const name = c.req.param("name");
        const slot = await this.setEnabled(name, action === "enable");
        if (!slot) {
          return errorResponse(
            new GatewayError(404, "unknown_plugin", `no plugin "${name}" in ${this.config.dir}`),
          );
        }
        return c.json(this.#describe(slot), !slot.disabled && !slot.active ? 422 : 200);
      });
    }
  }

  /**
   * Enables or disables `name` (the admin API) until the next config reload,
   * where `plugins.disabled` wins for the plugins it names, or the next
   * restart. A disabled plugin ends once its in-flight work is done; an
   * enabled one is loaded from disk. Resolves with its slot, or undefined
   * when there is no such plugin.
   */
  setEnabled(name: string, enabled: boolean): Promise<PluginSlot | undefined> {
    return this.#serially(async () => {
      const slot = this.#slots.get(name);
      if (!slot) return undefined;
      this.#adminChoice.set(name, enabled);
      if (!enabled) {
        this.#disable(slot, slot.source);
        return slot;
      }
      slot.disabled = false;
      const source = (await discoverPlugins(this.config.dir)).get(name);
      if (source && !slot.active) await this.#reloadOne(source, true);
      return slot;
    });
  }

  /**
   * Whether `name` is disabled under `config`: by the admin API, else by
   * `plugins.disabled`. `reloading` (a config not yet committed): the
   * config's list wins over the admin API for the plugins it names.
   */
  #isDisabled(config: PluginsConfig, name: string, reloading = false): boolean {
    const listed = config.disabled.includes(name);
    const choice = reloading && listed ? undefined : this.#adminChoice.get(name);
    return choice === undefined ? listed : !choice;
  }

  /** Stops serving `slot` while it is disabled: its version ends once its in-flight work is done. */
  #disable(slot: PluginSlot, source: PluginSource | undefined): void {
    slot.disabled = true;
    slot.restarter.reset();
    slot.restarting?.resolve();
    slot.restarting = undefined;
    slot.source = source;
    slot.key = "";
    if (!this.#taken.has(slot.name)) this.#serveFunctions(slot);
    const active = slot.active;
    if (!active) return;
    slot.active = undefined;
    this.#setSubscribed(active, false);
    void active.stop(this.config.drainTimeout);
    logger.info("plugin {name} disabled: it ends once its in-flight work is done", {
      name: slot.name,
    });
  }

  /**
   * Loads `name` again from disk even when unchanged (the admin API's reload).
   * Resolves with its slot, or undefined when there is no such plugin.
   */
  reloadPlugin(name: string): Promise<PluginSlot | undefined> {
    return this.#serially(async () => {
      const source = (await discoverPlugins(this.config.dir)).get(name);
      if (!source) return this.#slots.get(name);
      const round = this.#round(this.config);
      await this.#reloadOne(source, true, round);
      await this.#reloadDependants(round);
      return this.#slots.get(name);
    });
  }

  /**
   * Runs a hook or function on `slot`'s active version, counting and timing
   * it, and restarting the plugin when it ran past the deadline and no longer
   * answers a ping. A throw fails only this hook or call.
   */
  async run<T>(
    slot: PluginSlot,
    kind: "request" | "response" | "function",
    invoke: (sandbox: PluginSandbox) => Promise<T>,
  ): Promise<T> {
    if (slot.restarting) await slot.restarting.promise;
    if (slot.handingOver) await slot.handingOver;
    const sandbox = slot.active;
    if (!sandbox) {
      throw new PluginError(
        { type: "Unavailable", message: `plugin "${slot.name}" is not loaded` },
        "gone",
      );
    }
    const started = performance.now();
    try {
      const result = await invoke(sandbox);
      slot.stats.record(performance.now() - started);
      return result;
    } catch (error) {
      slot.stats.record(performance.now() - started, error);
      const reason = error instanceof PluginError ? error.kind : "threw";
      this.#failures.labels({ plugin: slot.name, kind, reason }).inc();
      slot.lastError = problemOf(error);
      // A throw is the request's failure, not the plugin's: only a worker that stops answering
      // is restarted here (crashes and missed heartbeats come through the sandbox's services).
      if (reason === "timeout") {
        void sandbox.ping(1000).then((alive) => {
          if (!alive && slot.active === sandbox) {
            this.#restart(slot, "its worker stopped answering");
          }
        });
      }
      throw error;
    }
  }

  #slotFor(name: string): PluginSlot {
    let slot = this.#slots.get(name);
    if (!slot) {
      const created = new PluginSlot(
        name,
        this.#supervision.of("plugin", name),
        () => this.#retry(created),
      );
      slot = created;
      this.#slots.set(name, slot);
    }
    return slot;
  }

  #describe(slot: PluginSlot): PartStatus & Record<string, unknown> {
    const info = slot.active?.info;
    const state = slot.disabled
      ? "disabled"
      : slot.restarting
      ? "restarting"
      : slot.active
      ? "running"
      : slot.source
      ? "failed"
      : "removed";
    return {
      name: slot.name,
      ...slot.stats.status(state, slot.active?.inFlight ?? 0, 0),
      version: info?.version ?? null,
      hash: slot.source?.hash ?? null,
      file: slot.source?.entry ?? null,
      ...(slot.restarter.state === "backoff" ? { nextTryMs: slot.restarter.delay } : {}),
      priority: info?.priority ?? null,
      permissions: slot.active?.permissions ?? null,
      hooks: info ? Object.keys(info.hooks).filter((k) => info.hooks[k as "onRequest"]) : [],
      functions: info?.functions ?? [],
      requires: info?.requires ?? {},
      loadedAt: slot.active?.loadedAt.toISOString() ?? null,
    };
  }

  /**
   * Starts a sandbox for `source` with exactly the permissions it asks for and
   * is granted. `taken` are the function owners that are not plugins (workers,
   * `model`): a plugin of the same name would serve the same functions.
   */
  async #load(
    source: PluginSource,
    config: PluginsConfig,
    taken = this.#taken,
    round = this.#round(config),
  ): Promise<PluginSandbox> {
    const refuse = (message: string) =>
      new PluginError({ type: "PluginError", message, at: source.entry }, "threw");
    if (source.escape) {
      throw refuse(
        `a link leads outside the plugin's directory, so it is not loaded: ${source.escape}`,
      );
    }
    if (taken.has(source.name)) {
      throw refuse(
        `"${source.name}" is also a worker's name (or "model"): functions are served as ` +
          `fn/<owner>/<name>, so the plugin is not loaded; rename one of them`,
      );
    }
    const grant = config.grants[source.name];
    const settings = config.settings[source.name];
    let plan = planPermissions(undefined, grant, config.dir, source.files);
    const bus = this.bus.scoped({
      owner: `plugin:${source.name}`,
      name: source.name,
      grant: grant?.bus,
    });
    if (grantsAnything(grant)) {
      // Its request is in its source: read it in a sandbox with no permissions, then start it
      // with what it asked for and was granted.
      const probe = new PluginSandbox(source, plan.permissions, this.#services);
      this.#buses.set(probe, bus);
      const asked = await probe.load(settings, config.initTimeout, true);
      probe.terminate();
      plan = planPermissions(asked.permissions, grant, config.dir, source.files);
    }
    const sandbox = new PluginSandbox(source, plan.permissions, this.#services);
    this.#buses.set(sandbox, bus);
    this.#rounds.set(sandbox, round);
    try {
      const info = await sandbox.load(
        settings,
        config.initTimeout,
        false,
        grant?.bus,
        (imported) => round.ready(source.name, imported.requires, source.entry),
      );
      const denied = planPermissions(info.permissions, grant, config.dir, source.files).denied;
      if (denied.length > 0) {
        logger.warn(
          "plugin {name} asks for permissions that plugins.grants.{name} does not give: {denied}",
          { name: source.name, denied: denied.join(", ") },
        );
      }
      this.#reloads.labels({ plugin: source.name, result: "ok" }).inc();
      return sandbox;
    } catch (error) {
      this.#reloads.labels({ plugin: source.name, result: "failed" }).inc();
      throw error;
    }
  }

  /** {@link #load} as one of `round`'s plugins: its dependants in the round start after it. */
  async #loadIn(
    round: LoadRound<PluginSandbox>,
    source: PluginSource,
    config: PluginsConfig,
    taken = this.#taken,
  ): Promise<PluginSandbox> {
    round.join(source.name);
    try {
      const sandbox = await this.#load(source, config, taken, round);
      round.settle(source.name, { version: sandbox.info!.version, started: sandbox });
      return sandbox;
    } catch (error) {
      round.settle(source.name, { failed: problemOf(error).message });
      throw error;
    }
  }

  /** A round of loads under `config`, which sees the other plugins as they are now. */
  #round(config: PluginsConfig): LoadRound<PluginSandbox> {
    return new LoadRound(config.dir, (name) => {
      const slot = this.#slots.get(name);
      const info = slot?.active?.info;
      if (info) return { version: info.version, requires: info.requires };
      if (!slot?.source) return undefined;
      return slot.disabled ? "it is disabled" : slot.lastError?.message ?? "no version loaded";
    });
  }

  /**
   * After `round`: loads again the plugins that require one whose major
   * version changed, appeared or went away, and those refused for a
   * requirement, until nothing more changes.
   */
  async #reloadDependants(round: LoadRound<PluginSandbox>): Promise<void> {
    while (round.changed.size > 0 && !this.#stopped) {
      const sources = await discoverPlugins(this.config.dir);
      const next = this.#round(this.config);
      const again = [...this.#slots.values()].filter((slot) => {
        const requires = slot.active?.info?.requires ?? {};
        return !round.has(slot.name) && sources.has(slot.name) &&
          (Object.keys(requires).some((name) => round.changed.has(name)) ||
            (!slot.active && slot.lastError?.message.startsWith("RequirementError: ")));
      });
      await Promise.all(again.map((slot) => this.#reloadOne(sources.get(slot.name)!, true, next)));
      round = next;
    }
  }

  #activate(slot: PluginSlot, sandbox: PluginSandbox, key: string, source: PluginSource): void {
    const old = slot.active;
    if (old) this.#setSubscribed(old, false);
    slot.active = sandbox;
    slot.key = key;
    slot.source = source;
    this.#setSubscribed(sandbox, true);
    slot.restarter.started();
    this.#serveFunctions(slot);
    logger.info("plugin {name} {version} loaded ({hash})", {
      name: slot.name,
      version: sandbox.info?.version,
      hash: source.hash,
    });
    if (old) void old.stop(this.config.drainTimeout);
  }

  /**
   * Serves `fn/<plugin>/*` for `slot`, loaded or not: while no version is
   * loaded its calls answer `unavailable` with the reason.
   */
  #serveFunctions(slot: PluginSlot): void {
    slot.functions ??= serveFunction(this.bus, slot.name, "+", async (args, call) => {
      if (!slot.active && !slot.restarting) {
        const next = slot.restarter.state === "backoff"
          ? ` (next try in ${slot.restarter.delay} ms)`
          : "";
        throw new FunctionCallError({
          type: "unavailable",
          message: slot.disabled
            ? `plugin "${slot.name}" is disabled`
            : `plugin "${slot.name}" is not loaded${next}: ${
              slot.lastError?.message ?? "no version loaded"
            }`,
        });
      }
      try {
        return await this.run(slot, "function", (active) => {
          if (!active.info?.functions.includes(call.name)) {
            throw new FunctionCallError({
              type: "no_responder",
              message: `plugin "${slot.name}" has no function "${call.name}"`,
            });
          }
          return active.call(call.name, args, call.deadline);
        });
      } catch (error) {
        if (!(error instanceof PluginError)) throw error;
        throw new FunctionCallError({
          type: error.kind === "timeout"
            ? "timeout"
            : error.kind === "gone"
            ? "unavailable"
            : error.info.type,
          // The file:line stays in the traceback (log, admin API), not in what a client sees.
          message: error.info.message,
          traceback: error.info.stack,
        });
      }
    });
  }

  #loadFailed(slot: PluginSlot, error: unknown, source: PluginSource): void {
    slot.lastError = problemOf(error);
    if (!slot.active) {
      slot.source = source;
      if (!this.#taken.has(slot.name)) this.#serveFunctions(slot);
    }
    const { at } = slot.lastError;
    const problem = {
      name: slot.name,
      // The location when the message does not give it already.
      message: at && !slot.lastError.message.includes(at)
        ? `${slot.lastError.message} (at ${at})`
        : slot.lastError.message,
    };
    if (slot.active) {
      logger.error(
        "plugin {name} failed to load, the previous version keeps serving: {message}",
        problem,
      );
    } else {
      logger.error("plugin {name} failed to load: {message}", problem);
    }
  }

  /** Stops serving `slot`'s plugin; `drain` lets its in-flight work finish first. */
  #unload(slot: PluginSlot, drain = true): void {
    const active = slot.active;
    slot.functions?.unsubscribe();
    slot.functions = undefined;
    slot.active = undefined;
    slot.source = undefined;
    slot.key = "";
    slot.restarter.reset();
    if (!active) return;
    this.#setSubscribed(active, false);
    if (drain) void active.stop(this.config.drainTimeout);
    logger.info("plugin {name} unloaded", { name: slot.name });
  }

  /** Ends `slot`'s crashed or hung version and loads it again after the backoff. */
  #restart(slot: PluginSlot, why: string): void {
    if (!slot.source || this.#stopped) return;
    const old = slot.active;
    old?.terminate();
    slot.restarting ??= Promise.withResolvers();
    this.#backoff(slot, why, old ? Date.now() - old.loadedAt.getTime() : 0);
  }

  /**
   * After a crash or a failed load `uptime` ms after it was started: the
   * next try after the backoff, or, after too many quick ones, `failed`.
   */
  #backoff(slot: PluginSlot, why: string, uptime: number): void {
    const name = slot.name;
    if (slot.restarter.crashed(why, uptime) === "backoff") {
      logger.warn("restarting plugin {name} in {delay} ms: {why}", {
        name,
        delay: slot.restarter.delay,
        why,
      });
      return;
    }
    logger.error("plugin {name} failed: {reason}", { name, reason: slot.restarter.reason });
    slot.lastError = { message: slot.restarter.reason!, time: new Date().toISOString() };
    this.#giveUp(slot);
  }

  /** Stops trying `slot`: its last version is gone, its routes and functions answer why. */
  #giveUp(slot: PluginSlot): void {
    const source = slot.source;
    if (slot.active) {
      this.#setSubscribed(slot.active, false);
      slot.active = undefined;
    }
    slot.source = source;
    slot.restarting?.resolve();
    slot.restarting = undefined;
  }

  /** The restarter's restart: loads `slot`'s source again. */
  #retry(slot: PluginSlot): void {
    void this.#serially(async () => {
      const source = slot.source;
      if (!source || this.#stopped || slot.disabled) return;
      slot.stats.restarted(slot.restarter.reason ?? "restarted");
      try {
        const key = slot.key || versionKey(source, this.config);
        this.#activate(slot, await this.#load(source, this.config), key, source);
      } catch (error) {
        const crashed = slot.active;
        if (crashed) this.#setSubscribed(crashed, false);
        slot.active = undefined;
        this.#loadFailed(slot, error, source);
        this.#backoff(slot, slot.lastError!.message, 0);
      } finally {
        slot.restarting?.resolve();
        slot.restarting = undefined;
      }
    });
  }

  #serially<T>(task: () => Promise<T>): Promise<T> {
    const run = this.#queue.then(task);
    this.#queue = run.catch(() => {});
    return run;
  }

  #watch(dir: string): void {
    this.#stopWatching?.();
    this.#stopWatching = watchDebounced([dir], () => void this.#serially(() => this.#rescan()), {
      debounceMs: this.config.debounce,
      onError: (_, error) =>
        logger.warn("not watching {dir} for plugin changes: {error}", { dir, error }),
    });
  }

  async #rescan(): Promise<void> {
    if (this.#stopped) return;
    const sources = await discoverPlugins(this.config.dir);
    const round = this.#round(this.config);
    for (const [name, slot] of this.#slots) {
      if (!sources.has(name) && slot.source) {
        if (slot.active) round.changed.add(name);
        this.#unload(slot);
      }
    }
    await Promise.all(
      [...sources.values()].map((source) => this.#reloadOne(source, false, round)),
    );
    await this.#reloadDependants(round);
  }

  async #reloadOne(
    source: PluginSource,
    force: boolean,
    round = this.#round(this.config),
  ): Promise<void> {
    const slot = this.#slotFor(source.name);
    const key = versionKey(source, this.config);
    const unchanged = slot.active ? slot.key === key : slot.source?.hash === source.hash &&
      slot.lastError !== undefined;
    if (unchanged && !force) return;
    if (slot.disabled) {
      slot.source = source;
      return;
    }
    // Its files changed into a link out of its directory: the running version's read
    // permission on that path would reach through it, so it ends now.
    if (source.escape && slot.active) {
      const active = slot.active;
      this.#unload(slot, false);
      active.terminate();
    }
    let sandbox: PluginSandbox | undefined;
    try {
      sandbox = await this.#loadIn(round, source, this.config);
      const old = slot.active;
      if (old?.state === "ready") {
        slot.handingOver = handOver(old, sandbox);
        try {
          await slot.handingOver;
        } finally {
          slot.handingOver = undefined;
        }
      }
      if (!old || majorOf(old.info?.version) !== majorOf(sandbox.info?.version)) {
        round.changed.add(source.name);
      }
      slot.restarter.reset();
      this.#activate(slot, sandbox, key, source);
      slot.lastError = undefined;
    } catch (error) {
      sandbox?.terminate();
      // Built against what it can no longer have: the running version ends too.
      if (isRequirementError(error) && slot.active) this.#unload(slot);
      this.#loadFailed(slot, error, source);
    }
  }

  #setSubscribed(sandbox: PluginSandbox, on: boolean): void {
    for (const entry of this.#subscriptions.get(sandbox)?.values() ?? []) {
      entry.live?.unsubscribe();
      entry.live = undefined;
    }
    if (!on) return;
    for (const [id, entry] of this.#subscriptions.get(sandbox) ?? []) {
      entry.live = this.#subscribe(sandbox, id, entry.filter);
    }
  }

  /** Subscribes `sandbox` to `filter`; undefined (and logged) when the bus refuses the filter. */
  #subscribe(sandbox: PluginSandbox, id: number, filter: string): Subscription | undefined {
    try {
      return this.#buses.get(sandbox)!.subscribe(filter, (message) => {
        let replyId: number | undefined;
        const reply = message.reply;
        if (reply) {
          replyId = this.#nextReply++;
          const timer = setTimeout(() => this.#replies.delete(replyId!), 60_000);
          this.#replies.set(replyId, { sandbox, reply, timer });
        }
        sandbox.deliver(id, {
          topic: message.topic,
          payload: message.payload,
          source: message.source,
          meta: message.meta,
          ...(replyId === undefined ? {} : { replyId }),
        });
      });
    } catch (error) {
      logger.error("plugin {name}: cannot subscribe to {filter}: {error}", {
        name: sandbox.source.name,
        filter,
        error: (error as Error).message,
      });
      return undefined;
    }
  }

  #source(sandbox: PluginSandbox): MessageSource {
    return { listener: `plugin:${sandbox.source.name}`, protocol: "plugin" };
  }

  #notify(sandbox: PluginSandbox, message: RuntimeMessage): void {
    const name = sandbox.source.name;
    switch (message.kind) {
      case "publish":
        try {
          this.#buses.get(sandbox)!.publish({
            topic: message.topic,
            payload: message.payload,
            source: this.#source(sandbox),
            meta: message.meta,
          });
        } catch (error) {
          logger.error("plugin {name}: cannot publish on {topic}: {error}", {
            name,
            topic: message.topic,
            error: (error as Error).message,
          });
        }
        return;
      case "subscribe": {
        let owned = this.#subscriptions.get(sandbox);
        if (!owned) {
          owned = new Map();
          this.#subscriptions.set(sandbox, owned);
        }
        const entry: { filter: string; live?: Subscription } = { filter: message.filter };
        owned.set(message.subscription, entry);
        if (this.#slots.get(name)?.active === sandbox) {
          entry.live = this.#subscribe(sandbox, message.subscription, message.filter);
        }
        return;
      }
      case "unsubscribe": {
        const owned = this.#subscriptions.get(sandbox);
        owned?.get(message.subscription)?.live?.unsubscribe();
        owned?.delete(message.subscription);
        return;
      }
      case "reply": {
        const owed = this.#replies.get(message.replyId);
        if (owed?.sandbox !== sandbox) return;
        this.#replies.delete(message.replyId);
        clearTimeout(owed.timer);
        owed.reply(message.payload);
        return;
      }
      case "log":
        getLogger(["gateway", "plugin", name])[message.level](message.message, {
          ...message.fields,
        });
        return;
      case "metric":
        this.#metricWriter.write(name, message);
        return;
    }
  }

  async #ask(sandbox: PluginSandbox, ask: Exclude<AskMessage, { op: "body" }>): Promise<unknown> {
    switch (ask.op) {
      case "call": {
        // During its init a dependant reaches what it requires before that is made current.
        const ref = pluginRef(ask.fn);
        const starting = this.#slots.get(sandbox.source.name)?.active !== sandbox;
        const early = ref && starting &&
          await this.#rounds.get(sandbox)?.startedFor(sandbox.source.name, ref.owner);
        if (early && early.state === "ready" && this.#slots.get(ref.owner)?.active !== early) {
          return await early.call(ref.name, ask.args, ask.deadline);
        }
        return await callFunction(this.bus, ask.fn, ask.args, {
          source: this.#source(sandbox),
          timeout: Number.isFinite(ask.deadline) ? ask.deadline - Date.now() : DEFAULT_TIMEOUT,
          deadline: ask.deadline,
        });
      }
      case "request":
        return (await this.#buses.get(sandbox)!.request(ask.topic, ask.payload, {
          source: this.#source(sandbox),
          timeout: Number.isFinite(ask.deadline)
            ? Math.max(1, ask.deadline - Date.now())
            : DEFAULT_TIMEOUT,
        })).payload;
      default:
        return await this.#stores.answer(sandbox.source.name, ask);
    }
  }
}

/** Whether a load was refused for the plugin's `requires`. */
function isRequirementError(error: unknown): boolean {
  return error instanceof PluginError && error.info.type === "RequirementError";
}

/** The plugin and function `fn` names, when it names a plugin's function. */
function pluginRef(fn: string): { owner: string; name: string } | undefined {
  try {
    const ref = parseFunctionRef(fn);
    return ref.kind === undefined || ref.kind === "plugin" ? ref : undefined;
  } catch {
    return undefined;
  }
}

/** Whether a load failed because the plugin refused its settings. */
function isSettingsError(error: unknown): error is PluginError {
  return error instanceof PluginError && error.info.message.startsWith("plugins.settings.");
}

/** What makes a loaded version current: its files, its settings and its grant. */
function versionKey(source: PluginSource, config: PluginsConfig): string {
  return JSON.stringify([
    source.hash,
    config.settings[source.name] ?? null,
    config.grants[source.name] ?? null,
    config.dir,
  ]);
}
