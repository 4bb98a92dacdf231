/**
 * The Hono app of one HTTP listener: an outer layer that gives each request
 * its id, client address, metrics and access-log line, then the routes in
 * priority order.
 *
 * @module
 */

import { Hono, type MiddlewareHandler } from "hono";
import { getLogger } from "@logtape/logtape";
import type { GatewayEnv } from "../pipeline/stage.ts";
import { jsonError } from "../pipeline/errors.ts";
import type { HttpMetrics } from "../observability/http_metrics.ts";
import { type CompiledRoute, sortRoutes } from "./route.ts";

/** How the outer layer behaves. */
export interface ListenerAppOptions {
  listener: string;
  routes: readonly CompiledRoute[];
  metrics: HttpMetrics;
  /** Write one access-log line per request. */
  accessLog: boolean;
  /** Take the client address from X-Forwarded-For. */
  trustProxy: boolean;
}

/** A request handler with Deno.serve's signature. */
export type ServeHandler = (request: Request, info: Deno.ServeHandlerInfo) => Promise<Response>;

const REQUEST_ID = /^[A-Za-z0-9._:-]{1,128}$/;
const accessLogger = getLogger(["gateway", "access"]);
const errorLogger = getLogger(["gateway", "http"]);

function remoteHost(info: Deno.ServeHandlerInfo): string {
  const addr = info.remoteAddr as Deno.Addr;
  return addr.transport === "tcp" || addr.transport === "udp" ? addr.hostname : "unix";
}

/**
 * Builds the handler for one listener from the routes that serve on it.
 *
 * @example
 * ```ts
 * import { buildListenerApp } from "./app.ts";
 * import { HttpMetrics } from "../observability/http_metrics.ts";
 * import { MetricsRegistry } from "../observability/metrics.ts";
 * const handler = buildListenerApp({
 *   listener: "web",
 *   routes: [],
 *   metrics: new HttpMetrics(new MetricsRegistry()),
 *   accessLog: false,
 *   trustProxy: false,
 * });
 * Deno.serve({ port: 0, onListen() {} }, handler);
 * ```
 */
export function buildListenerApp(options: ListenerAppOptions): ServeHandler {
  const { listener, metrics, accessLog, trustProxy } = options;
  const app = new Hono<GatewayEnv, Record<string, never>>();
  const unmatched = { name: "-", listener };
  const inFlight = metrics.inFlight(listener);

  app.use(async (c, next) => {
    const started = performance.now();
    const given = c.req.header("x-request-id");
    const requestId = given && REQUEST_ID.test(given) ? given : crypto.randomUUID();
    const info = c.env as unknown as Deno.ServeHandlerInfo;
    const forwarded = trustProxy ? c.req.header("x-forwarded-for")?.split(",")[0].trim() : "";
    c.set("requestId", requestId);
    c.set("clientIp", forwarded || remoteHost(info));
    c.set("route", unmatched);
    inFlight.inc();
    try {
      await next();
    } finally {
      inFlight.dec();
    }
    const res = c.res;
    const seconds = (performance.now() - started) / 1000;
    const route = c.var.route.name;
    metrics.record(listener, route, res.status, seconds);
    if (!res.headers.has("x-request-id")) {
      try {
        res.headers.set("x-request-id", requestId);
      } catch { /* immutable headers: leave the response as it is */ }
    }
    if (accessLog) {
      accessLogger.info(
        "{method} {path} {status} {durationMs}ms route={route} upstream={upstream}",
        {
          requestId,
          listener,
          route,
          method: c.req.method,
          path: c.req.path,
          status: res.status,
          bytes: Number(res.headers.get("content-length") ?? NaN) || undefined,
          durationMs: Math.round(seconds * 10000) / 10,
          client: c.var.clientIp,
          upstream: c.var.upstreamTarget ?? "-",
        },
      );
    }
  });

  for (const route of sortRoutes(options.routes)) {
    if (route.listeners && !route.listeners.includes(listener)) continue;
    const info = { name: route.name, listener };
    const handler: MiddlewareHandler<GatewayEnv> = async (c, next) => {
      if (!route.accepts(c)) return await next();
      c.set("route", info);
      return await route.handle(c);
    };
    if (route.methods) app.on([...route.methods], route.path, handler);
    else app.all(route.path, handler);
  }

  app.notFound((c) =>
    jsonError(404, "no_route", `no route for ${c.req.method} ${c.req.path}`, c.var.requestId)
  );
  app.onError((error, c) => {
    errorLogger.error("request {requestId} failed in route {route}: {error}", {
      requestId: c.var.requestId,
      route: c.var.route?.name,
      error,
    });
    return jsonError(
      500,
      "internal_error",
      "the gateway failed to handle this request",
      c.var.requestId,
    );
  });

  return (request, info) => Promise.resolve(app.fetch(request, info as never));
}
