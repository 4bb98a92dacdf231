/**
 * One route made ready to serve: its match conditions precompiled, its
 * order key computed, and its stages and target joined into one handler.
 *
 * @module
 */

import type { RouteConfig } from "./config.ts";
import type { GatewayContext, Target } from "../pipeline/stage.ts";

/** A route ready for the router. */
export interface CompiledRoute {
  name: string;
  /** Listener names it serves on; undefined for all HTTP listeners. */
  listeners?: readonly string[];
  /** Methods it takes; undefined for any. */
  methods?: readonly string[];
  /** The Hono path pattern. */
  path: string;
  /** Host and header conditions, checked after the path and method matched. */
  accepts: (c: GatewayContext) => boolean;
  /** Stages and target, joined. */
  handle: Target;
  /** Sort key: higher first, compared element by element. */
  order: readonly number[];
  /** Whether its requests get an access-log line. */
  accessLog: boolean;
}

function hostCondition(pattern: string): (host: string) => boolean {
  const wanted = pattern.toLowerCase();
  if (wanted.startsWith("*.")) {
    const suffix = wanted.slice(1);
    return (host) => host.endsWith(suffix) && host.length > suffix.length;
  }
  return (host) => host === wanted;
}

/**
 * Compiles the match conditions of a route that Hono's path router cannot
 * express (host and headers) into one predicate.
 *
 * @example
 * ```ts
 * import { compileConditions } from "./route.ts";
 * const accepts = compileConditions({ path: "/*", host: "*.example.com" });
 * ```
 */
export function compileConditions(match: RouteConfig["match"]): (c: GatewayContext) => boolean {
  const checks: ((c: GatewayContext) => boolean)[] = [];
  if (match.host) {
    const hostMatches = hostCondition(match.host);
    checks.push((c) => {
      const host = (c.req.header("host") ?? "").toLowerCase().replace(/:\d+$/, "");
      return hostMatches(host);
    });
  }
  for (const [name, value] of Object.entries(match.headers ?? {})) {
    checks.push(
      value === "*"
        ? (c) => c.req.raw.headers.has(name)
        : (c) => c.req.raw.headers.get(name) === value,
    );
  }
  if (checks.length === 0) return () => true;
  return (c) => checks.every((check) => check(c));
}

/**
 * The order key of a route: explicit priority first, then how specific its
 * match is (literal path segments, then parameters over wildcards, then
 * host/header/method conditions, then path length).
 *
 * @example
 * ```ts
 * import { routeOrder } from "./route.ts";
 * routeOrder(0, { path: "/api/users" }) > routeOrder(0, { path: "/api/*" }); // compared element-wise
 * ```
 */
export function routeOrder(priority: number, match: RouteConfig["match"]): number[] {
  const segments = match.path.split("/").filter(Boolean);
  const literal = segments.filter((s) => !s.startsWith(":") && !s.includes("*")).length;
  const params = segments.filter((s) => s.startsWith(":")).length;
  const wildcard = segments.some((s) => s.includes("*")) ? 0 : 1;
  const conditions = (match.host ? 1 : 0) + Object.keys(match.headers ?? {}).length +
    (match.methods ? 1 : 0);
  return [priority, literal, wildcard, params, conditions, match.path.length];
}

/**
 * Sorts routes into the order the router tries them (stable for equal keys,
 * so config order breaks ties).
 *
 * @example
 * ```ts
 * import { sortRoutes } from "./route.ts";
 * const ordered = sortRoutes([]);
 * ```
 */
export function sortRoutes<T extends { order: readonly number[] }>(routes: readonly T[]): T[] {
  return [...routes].sort((a, b) => {
    for (let i = 0; i < a.order.length; i++) {
      if (a.order[i] !== b.order[i]) return b.order[i] - a.order[i];
    }
    return 0;
  });
}
