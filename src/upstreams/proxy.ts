/**
 * The reverse proxy target: sends a route's requests to an upstream and
 * streams the answer back, with failover, retries and JSON errors when no
 * target can answer.
 *
 * @module
 */

import { errorResponse, GatewayError } from "../errors.ts";
import type { GatewayContext, Target } from "../pipeline/stage.ts";
import { type UpstreamClient, UpstreamError } from "./client.ts";
import type { Upstream, UpstreamTarget } from "./upstream.ts";
import { connectionNamed, isHopByHop, withoutConnectionNamed } from "./hop_by_hop.ts";

/** A route's upstream target settings (the `target` of a route in the config). */
export interface UpstreamRouteTarget {
  /** The upstream's name. */
  upstream: string;
  /** Removed from the start of the path (at a segment boundary) before proxying. */
  stripPrefix?: string;
  /** Send the client's Host header instead of the target's. */
  preserveHost?: boolean;
}

/** Methods a retry may repeat (RFC 9110, 9.2.2). */
const IDEMPOTENT = new Set(["GET", "HEAD", "OPTIONS", "PUT", "DELETE", "TRACE"]);

/**
 * Copies the request's headers without the hop-by-hop ones. The headers the
 * client's `Connection` named are gone already (removed where the request
 * entered); plugins may have added headers of the same names since.
 */
function endToEndHeaders(source: Headers): Headers {
  const headers = new Headers();
  for (const [name, value] of source) {
    if (!isHopByHop(name)) headers.append(name, value);
  }
  return headers;
}

/** An address as a `Forwarded` node (RFC 7239, 6): IPv6 quoted in brackets. */
function forwardedNode(address: string): string {
  return address.includes(":") ? `"[${address}]"` : address;
}

/**
 * The failure of a request that no target answered. The client learns the
 * upstream's name and what went wrong; the target's address and the
 * connection error are the detail, for the log and the admin API.
 */
function upstreamFailure(
  upstream: Upstream,
  target: UpstreamTarget,
  error: UpstreamError,
  attempts: number,
): GatewayError {
  const [status, code, what] = UPSTREAM_FAILURES[error.kind];
  const tries = attempts > 1 ? ` (${attempts} attempts)` : "";
  return new GatewayError(status, code, `upstream "${upstream.name}": ${what}${tries}`, {
    cause: error,
    detail: { upstream: upstream.name, target: target.url, attempts },
  });
}

/** Status, code and client message of each way an upstream request fails. */
const UPSTREAM_FAILURES: Record<UpstreamError["kind"], [number, string, string]> = {
  "connect": [502, "upstream_unreachable", "cannot connect"],
  "connect-timeout": [504, "upstream_timeout", "timed out connecting"],
  "response-timeout": [504, "upstream_timeout", "timed out waiting for the response"],
  "aborted": [499, "client_closed_request", "the client went away before the response"],
  "protocol": [502, "bad_upstream_response", "bad response"],
};

/**
 * Creates the target that proxies a route's requests to `upstream`.
 *
 * Request and response bodies stream through. Hop-by-hop headers are
 * dropped both ways. `X-Forwarded-For` and `Forwarded` get the peer's address
 * appended when the peer is a trusted proxy and are replaced by it otherwise;
 * `X-Real-IP` is the client address (see `security.trustedProxies`);
 * `X-Forwarded-Proto` and `X-Forwarded-Host` tell how the client reached
 * the gateway, and `Via: 1.1 gateway` is appended.
 *
 * A failed attempt moves to another target, up to `retries` times, only
 * for idempotent methods without a request body (a streamed body cannot be
 * sent twice). Errors: 503 `no_healthy_target`, 502 `upstream_unreachable`,
 * 504 `upstream_timeout`, 502 `bad_upstream_response`, and 499
 * `client_closed_request` (for the access log) when the client went away.
 *
 * With least-connections balancing a request counts as in flight until its
 * response body has streamed; with the other algorithms, until the response
 * headers arrive (so the body is not piped through a JavaScript transform).
 *
 * @example
 * ```ts
 * import { Hono } from "hono";
 * import type { GatewayEnv } from "../pipeline/stage.ts";
 * import { UpstreamConfig } from "./config.ts";
 * import { createHttp1Client } from "./http1_client.ts";
 * import { createUpstreamTarget } from "./proxy.ts";
 * import { TargetStatePool } from "./target_state.ts";
 * import { Upstream } from "./upstream.ts";
 *
 * const client = createHttp1Client();
 * const config = UpstreamConfig.parse({ targets: ["http://127.0.0.1:9000"] });
 * const upstream = new Upstream("api", config, client, new TargetStatePool());
 * const proxy = createUpstreamTarget({ upstream: "api", stripPrefix: "/api" }, upstream, client);
 * const app = new Hono<GatewayEnv>();
 * app.all("/api/*", (c) => proxy(c));
 * ```
 */
export function createUpstreamTarget(
  route: UpstreamRouteTarget,
  upstream: Upstream,
  client: UpstreamClient,
): Target {
  const { connect: connectTimeout, response: responseTimeout } = upstream.config.timeouts;
  const retries = upstream.config.retries;
  const releaseAfterBody = upstream.config.balance === "least-connections";
  const prefix = route.stripPrefix?.replace(/\/+$/, "") ?? "";
  const preserveHost = route.preserveHost ?? false;

  /**
   * The path and query to request upstream, with the prefix stripped. The
   * path is the canonical one the request was routed by (the listener made it
   * so, see router/canonical_path.ts), which `new URL` keeps unchanged.
   */
  function upstreamPath(url: string, pathStart: number): string {
    const path = url.slice(pathStart);
    if (prefix === "" || !path.startsWith(prefix)) return path;
    const rest = path.slice(prefix.length);
    if (rest === "" || rest[0] === "?") return `/${rest}`;
    return rest[0] === "/" ? rest : path;
  }

  /**
   * The upstream response with its hop-by-hop headers removed in place and
   * in-flight accounting attached. The response object itself goes back to the
   * client when possible: re-wrapping it would turn a body the client already
   * holds as bytes into a stream, which Deno.serve sends much more slowly.
   */
  function downstreamResponse(
    response: Response,
    target: UpstreamTarget,
    requestId: string,
  ): Response {
    const { headers } = response;
    const named = connectionNamed(headers.get("connection"));
    for (const name of [...headers.keys()]) {
      if (isHopByHop(name) || named?.has(name)) headers.delete(name);
    }
    headers.set("x-request-id", requestId);
    if (response.body === null || !releaseAfterBody) {
      target.release();
      return response;
    }
    const body = response.body.pipeThrough(
      new TransformStream({ flush: () => target.release(), cancel: () => target.release() }),
    );
    return new Response(body, {
      status: response.status,
      statusText: response.statusText,
      headers,
    });
  }

  return async (c: GatewayContext): Promise<Response> => {
    // The client's Connection-named headers go (a plugin's headers of the same name stay:
    // the plugin stage removed the client's before any plugin ran).
    const request = withoutConnectionNamed(c.req.raw);
    const url = request.url;
    const hostStart = url.indexOf("//") + 2;
    const pathStart = url.indexOf("/", hostStart);
    const path = upstreamPath(url, pathStart);
    // The authority the request was checked and routed with (the Host header, or an
    // absolute-form request target's).
    const clientHost = url.slice(hostStart, pathStart);

    const headers = endToEndHeaders(request.headers);
    // A trusted proxy's forwarding headers are extended; anyone else's are replaced.
    const { peerAddress, peerTrusted } = c.env;
    const forwardedFor = peerTrusted ? request.headers.get("x-forwarded-for") : null;
    headers.set(
      "x-forwarded-for",
      forwardedFor === null ? peerAddress : `${forwardedFor}, ${peerAddress}`,
    );
    const forwarded = peerTrusted ? request.headers.get("forwarded") : null;
    const node = `for=${forwardedNode(peerAddress)}`;
    headers.set("forwarded", forwarded === null ? node : `${forwarded}, ${node}`);
    headers.set("x-real-ip", c.env.clientIp);
    headers.set("x-forwarded-proto", url.startsWith("https:") ? "https" : "http");
    headers.set("x-forwarded-host", clientHost);
    const via = request.headers.get("via");
    headers.set("via", via === null ? "1.1 gateway" : `${via}, 1.1 gateway`);
    headers.set("x-request-id", c.env.requestId);
    if (preserveHost) headers.set("host", clientHost);

    const canRetry = request.body === null && IDEMPOTENT.has(request.method);
    let tried: Set<UpstreamTarget> | undefined;
    let lastFailure: { target: UpstreamTarget; error: UpstreamError } | undefined;
    for (let attempt = 1;; attempt++) {
      const target = upstream.pick(tried);
      if (target === undefined) {
        return errorResponse(
          lastFailure === undefined
            ? new GatewayError(
              503,
              "no_healthy_target",
              `upstream "${upstream.name}" has no available target: ` +
                "all are unhealthy, ejected or behind an open circuit breaker",
            )
            : upstreamFailure(upstream, lastFailure.target, lastFailure.error, attempt - 1),
          c.env.requestId,
        );
      }
      c.env.upstreamTarget = target.url;
      if (!preserveHost) headers.set("host", target.host);
      try {
        const response = await client.request({
          url: new URL(target.url + path),
          method: request.method,
          headers,
          body: request.body,
          connectTimeout,
          responseTimeout,
          signal: request.signal,
        });
        target.reportSuccess();
        return downstreamResponse(response, target, c.env.requestId);
      } catch (error) {
        if (!(error instanceof UpstreamError)) {
          target.release();
          throw error;
        }
        if (error.kind !== "aborted") target.reportFailure(`${error.kind}: ${error.message}`);
        target.release();
        if (error.kind === "aborted" || !canRetry || attempt > retries) {
          return errorResponse(upstreamFailure(upstream, target, error, attempt), c.env.requestId);
        }
        (tried ??= new Set()).add(target);
        lastFailure = { target, error };
      }
    }
  };
}
