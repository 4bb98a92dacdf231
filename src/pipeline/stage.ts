/**
 * The typed core of request handling. A route is a chain of {@link Stage}s
 * (CORS, rate limits, size limits, later plugins) ending in a {@link Target}
 * (upstream proxy, static files, fixed response). Stages see the Hono
 * `Context`, may answer early, or call `next()` and change what comes back.
 *
 * @module
 */

import type { Context } from "hono";
import type { BufferedBody } from "./buffered_body.ts";

/** What the router knows about the route that took a request. */
export interface RouteInfo {
  /** The route's name: its `name` in the config, or `routes[i]`. */
  name: string;
  /** The listener the request came in on. */
  listener: string;
  /** Whether its requests get an access-log line (the route's `accessLog`). */
  accessLog: boolean;
}

/**
 * What the gateway knows about one request besides the request itself. The
 * listener creates it and hands it to Hono as the environment, so every stage
 * and target reads it as `c.env`. `requestId` and `clientIp` are worked out on
 * first use: a route that needs neither never pays for them.
 */
export interface RequestState {
  /** The route that took the request; `{ name: "-" }` until one does. */
  route: RouteInfo;
  /** From the client's `X-Request-Id` when it is well-formed, else generated. */
  readonly requestId: string;
  /** The client's address (from X-Forwarded-For when the peer is in `security.trustedProxies`). */
  readonly clientIp: string;
  /** The address of the peer on the socket (a proxy in front, when there is one). */
  readonly peerAddress: string;
  /** Whether the peer is in `security.trustedProxies`: its forwarding headers are believed. */
  readonly peerTrusted: boolean;
  /** Set by the upstream target: which server answered, for the access log. */
  upstreamTarget?: string;
}

/**
 * The Hono environment of the gateway's apps: `c.env` is the
 * {@link RequestState}; `c.get("body")` the request's body once something
 * reads it whole (see `bufferedBody`).
 */
export interface GatewayEnv {
  Bindings: RequestState;
  Variables: { body?: BufferedBody };
}

/** The context every stage and target receives. */
export type GatewayContext = Context<GatewayEnv>;

/** The end of a chain: produces the response. */
export type Target = (c: GatewayContext) => Response | Promise<Response>;

/** A step before the target; return a response to answer early, or `next()`'s. */
export type Stage = (
  c: GatewayContext,
  next: () => Promise<Response>,
) => Response | Promise<Response>;

/**
 * Joins stages and a target into one target. Stages run in array order.
 *
 * @example
 * ```ts
 * import { chain, type Stage } from "./stage.ts";
 * const poweredBy: Stage = async (_c, next) => {
 *   const res = await next();
 *   res.headers.set("x-powered-by", "gateway");
 *   return res;
 * };
 * const handler = chain([poweredBy], () => new Response("ok"));
 * ```
 */
export function chain(stages: readonly Stage[], target: Target): Target {
  return stages.reduceRight<Target>(
    (next, stage) => (c) => stage(c, async () => await next(c)),
    target,
  );
}
