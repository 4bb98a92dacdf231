/**
 * Builds the route table from the config: for each route, its stages
 * (CORS, rate limits, size limits) and its target (upstream, static,
 * respond, websocket), joined into one handler.
 *
 * @module
 */

import { type ListenersConfig, servesHttp } from "../listeners/config.ts";
import type { PluginsConfig } from "../plugins/config.ts";
import type { SecurityConfig } from "../security/config.ts";
import type { RouteConfig, RoutesConfig } from "./config.ts";
import { chain, type Stage, type Target } from "../pipeline/stage.ts";
import { createCorsStage } from "../pipeline/cors.ts";
import { createRateLimitStage, type PreparedRateLimits } from "../pipeline/rate_limit.ts";
import { createLimitsStage } from "../pipeline/limits.ts";
import { BodyBudget } from "../pipeline/body_budget.ts";
import { createStaticTarget } from "../targets/static.ts";
import { createRespondTarget } from "../targets/respond.ts";
import { createTopicTarget } from "../targets/topic.ts";
import { createFunctionTarget } from "../targets/function.ts";
import { createModelTarget, createOcrTarget } from "../models/http.ts";
import type { ModelRegistry } from "../models/registry.ts";
import { createWebSocketTarget } from "../targets/websocket.ts";
import { createMqttWebSocketTarget, type MqttWebSocketHost } from "../mqtt/websocket_target.ts";
import type { Bus } from "../bus/bus.ts";
import type { ConnectionManager } from "../connections/manager.ts";
import { createUpstreamTarget } from "../upstreams/proxy.ts";
import type { PluginHost } from "../plugins/host.ts";
import { createPluginStage } from "../plugins/stage.ts";
import type { Upstream } from "../upstreams/upstream.ts";
import type { UpstreamClient } from "../upstreams/client.ts";
import type { HttpMetrics } from "../observability/http_metrics.ts";
import { compileConditions, type CompiledRoute, routeOrder } from "./route.ts";

/** The sections a route table is built from. */
export interface RouteTableConfig {
  routes: RoutesConfig;
  /** Default limits and rate limits. */
  security: SecurityConfig;
  /** Which listeners serve HTTP, and the plugins each runs. */
  listeners: ListenersConfig;
  /** The plugins every route runs (`global`). */
  plugins: Pick<PluginsConfig, "global">;
}

/** What building a route table needs besides the config. */
export interface RouteTableDeps {
  upstreams: ReadonlyMap<string, Upstream>;
  client: UpstreamClient;
  metrics: HttpMetrics;
  /** The message bus; routes with a `websocket` target need it. */
  bus?: Bus;
  /** The connection manager; routes with a `websocket` target need it. */
  connections?: ConnectionManager;
  /** The MQTT module; routes with an `mqtt` target hand their WebSockets to it. */
  mqtt?: MqttWebSocketHost;
  /** The plugin host; routes that run plugins need it. */
  plugins?: PluginHost;
  /** The model registry; routes with a `model` or `ocr` target need it. */
  models?: ModelRegistry;
  /**
   * The process's budget of buffered request-body bytes, kept across reloads
   * (its limit set by the caller at commit); a new one for every build when absent.
   */
  bodyBudget?: BodyBudget;
  /** Rate-limit buckets kept across reloads; new buckets for every build when absent. */
  rateLimits?: PreparedRateLimits;
}

function createTarget(route: RouteConfig, name: string, deps: RouteTableDeps): Target {
  const { target } = route;
  if (target.static) return createStaticTarget(target.static, target.static.root);
  if (target.respond) return createRespondTarget(target.respond);
  if (target.topic) {
    if (!deps.bus) {
      throw new Error(`route "${name}": a topic target needs the bus (RouteTableDeps.bus)`);
    }
    return createTopicTarget(target.topic, deps.bus);
  }
  if (target.function) {
    if (!deps.bus) {
      throw new Error(`route "${name}": a function target needs the bus (RouteTableDeps.bus)`);
    }
    return createFunctionTarget(target.function, deps.bus);
  }
  if (target.model || target.ocr) {
    if (!deps.models) {
      throw new Error(
        `route "${name}": a model or ocr target needs the model registry (RouteTableDeps.models)`,
      );
    }
    return target.model
      ? createModelTarget(target.model, deps.models)
      : createOcrTarget(target.ocr!, deps.models);
  }
  if (target.mqtt) {
    if (!deps.mqtt) {
      throw new Error(
        `route "${name}": an mqtt target needs the MQTT module (RouteTableDeps.mqtt)`,
      );
    }
    return createMqttWebSocketTarget(target.mqtt, deps.mqtt);
  }
  if (target.websocket) {
    const { bus, connections } = deps;
    if (!bus || !connections) {
      throw new Error(
        `route "${name}": a websocket target needs the bus and the connection manager (RouteTableDeps.bus, .connections)`,
      );
    }
    const upstream = target.websocket.upstream === undefined
      ? undefined
      : deps.upstreams.get(target.websocket.upstream);
    const slowConsumers = deps.metrics.slowConsumers(name);
    return createWebSocketTarget(target.websocket, {
      bus,
      connections,
      upstream,
      onSlowConsumer: () => slowConsumers.inc(),
    });
  }
  const upstream = deps.upstreams.get(target.upstream!)!;
  return createUpstreamTarget(
    {
      upstream: target.upstream!,
      stripPrefix: target.stripPrefix,
      preserveHost: target.preserveHost ?? false,
    },
    upstream,
    deps.client,
  );
}

/**
 * Compiles every route of the config. Routes are returned in config order;
 * the listener app sorts them.
 *
 * @example
 * ```ts
 * import { buildRouteTable } from "./table.ts";
 * // const routes = buildRouteTable(config, { upstreams, client, metrics });
 * ```
 */
export function buildRouteTable(
  config: RouteTableConfig,
  deps: RouteTableDeps,
): CompiledRoute[] {
  const { maxBufferedBytes, ...limitDefaults } = config.security.limits;
  const budget = deps.bodyBudget ?? new BodyBudget(maxBufferedBytes);
  return config.routes.map((route, i) => {
    const name = route.name ?? `routes[${i}]`;
    const stages: Stage[] = [];
    if (route.cors) stages.push(createCorsStage(route.cors));
    const rateLimit = route.rateLimit ?? config.security.rateLimit;
    const limited = rateLimit &&
      createRateLimitStage(rateLimit, (scope) => deps.metrics.rateLimited(name, scope).inc(), {
        buckets: deps.rateLimits?.buckets(name, rateLimit),
      });
    if (limited) stages.push(limited);
    const plugins = pluginsByListener(config, route);
    const { function: fn, topic, model, ocr } = route.target;
    const limits = createLimitsStage({ ...limitDefaults, ...route.limits }, {
      target: fn || topic || model || ocr ? "buffered" : "streamed",
      plugins: plugins.size > 0,
      budget,
    });
    if (limits) stages.push(limits);
    if (plugins.size > 0) {
      if (!deps.plugins) {
        throw new Error(`route "${name}": plugins need the plugin host (RouteTableDeps.plugins)`);
      }
      stages.push(createPluginStage(deps.plugins, (listener) => plugins.get(listener) ?? []));
    }
    return {
      name,
      listeners: route.listeners,
      methods: route.match.methods,
      path: route.match.path,
      accepts: compileConditions(route.match),
      handle: chain(stages, createTarget(route, name, deps)),
      order: routeOrder(route.priority, route.match),
      accessLog: route.accessLog,
    };
  });
}

/** A route's plugins for each listener that runs any: global, then the listener's, then the route's. */
function pluginsByListener(
  config: Pick<RouteTableConfig, "listeners" | "plugins">,
  route: RouteConfig,
): Map<string, string[]> {
  const byListener = new Map<string, string[]>();
  for (const [name, listener] of Object.entries(config.listeners)) {
    if (!servesHttp(listener) || (route.listeners && !route.listeners.includes(name))) continue;
    const names = [
      ...new Set([
        ...config.plugins.global,
        ...(listener.type === "http" ? listener.plugins ?? [] : []),
        ...route.plugins ?? [],
      ]),
    ];
    if (names.length > 0) byListener.set(name, names);
  }
  return byListener;
}
