/**
 * Cross-origin resource sharing for a route: answers preflight requests and
 * adds the CORS headers to actual responses.
 *
 * Allowed origins are exact (`https://app.example.com`), `*` (any), or
 * patterns where `*` stands for one or more subdomain labels
 * (`https://*.example.com` matches `https://a.example.com` and
 * `https://a.b.example.com`, not `https://example.com`). An origin that is not
 * allowed gets no CORS headers, and its preflight gets 403.
 *
 * @module
 */

import type { CorsConfig } from "./config.ts";
import { errorResponse, GatewayError } from "../errors.ts";
import type { Stage } from "./stage.ts";

const HOST_LABELS = "[a-z0-9-]+(?:\\.[a-z0-9-]+)*";

/**
 * Creates the CORS stage of one route. `Access-Control-Allow-Origin` is `*`
 * when any origin is allowed (the config refuses that with credentials); otherwise it echoes the
 * request's origin and responses carry `Vary: Origin`. Preflights without
 * configured `methods` or `headers` allow what they ask for.
 *
 * @example
 * ```ts
 * import { createCorsStage } from "./cors.ts";
 * const stage = createCorsStage({
 *   origins: ["https://app.example.com", "https://*.example.org"],
 *   methods: ["GET", "POST"],
 *   headers: ["content-type", "authorization"],
 *   credentials: true,
 *   maxAge: 600,
 * });
 * ```
 */
export function createCorsStage(config: CorsConfig): Stage {
  const anyOrigin = config.origins.includes("*");
  const exactOrigins = new Set<string>();
  const originPatterns: RegExp[] = [];
  for (const origin of config.origins) {
    const lower = origin.toLowerCase().replace(/\/$/, "");
    if (!origin.includes("*")) {
      exactOrigins.add(lower);
    } else if (origin !== "*") {
      const escaped = lower.split("*").map((part) => part.replace(/[.+?^${}()|[\]\\/]/g, "\\$&"));
      originPatterns.push(new RegExp(`^${escaped.join(HOST_LABELS)}$`));
    }
  }
  const isAllowed = (origin: string) =>
    anyOrigin || exactOrigins.has(origin) || originPatterns.some((re) => re.test(origin));
  const echoesOrigin = !anyOrigin;

  const actualHeaders: [string, string][] = [];
  if (config.credentials) actualHeaders.push(["access-control-allow-credentials", "true"]);
  if (config.exposeHeaders?.length) {
    actualHeaders.push(["access-control-expose-headers", config.exposeHeaders.join(", ")]);
  }
  const preflightHeaders: [string, string][] = [];
  if (config.credentials) preflightHeaders.push(["access-control-allow-credentials", "true"]);
  if (config.maxAge !== undefined) {
    preflightHeaders.push(["access-control-max-age", String(config.maxAge)]);
  }
  const addActualHeaders = (headers: Headers, allowedOrigin: string | null) => {
    // With an echoed origin the response differs by origin, allowed or not.
    if (echoesOrigin) headers.append("vary", "Origin");
    if (allowedOrigin === null) return;
    headers.set("access-control-allow-origin", echoesOrigin ? allowedOrigin : "*");
    for (const [name, value] of actualHeaders) headers.set(name, value);
  };
  const allowMethods = config.methods?.join(", ");
  const allowHeaders = config.headers?.join(", ");

  return async (c, next) => {
    const origin = c.req.raw.headers.get("origin");
    const requestedMethod = c.req.raw.headers.get("access-control-request-method");
    if (origin !== null && requestedMethod !== null && c.req.method === "OPTIONS") {
      if (!isAllowed(origin)) {
        return errorResponse(
          new GatewayError(403, "cors_origin_denied", "this origin may not call this route", {
            headers: echoesOrigin ? { vary: "Origin" } : undefined,
          }),
          c.env.requestId,
        );
      }
      const headers = new Headers(preflightHeaders);
      headers.set("access-control-allow-origin", echoesOrigin ? origin : "*");
      if (echoesOrigin) headers.set("vary", "Origin");
      headers.set("access-control-allow-methods", allowMethods ?? requestedMethod);
      const requestedHeaders = allowHeaders ??
        c.req.raw.headers.get("access-control-request-headers");
      if (requestedHeaders) headers.set("access-control-allow-headers", requestedHeaders);
      return new Response(null, { status: 204, headers });
    }

    let response = await next();
    const allowedOrigin = origin !== null && isAllowed(origin) ? origin : null;
    if (allowedOrigin === null && !echoesOrigin) return response;
    try {
      addActualHeaders(response.headers, allowedOrigin);
    } catch {
      // The headers of a fetch() response are immutable; answer with a copy.
      response = new Response(response.body, response);
      addActualHeaders(response.headers, allowedOrigin);
    }
    return response;
  };
}
