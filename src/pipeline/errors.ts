/**
 * The one shape of every error the gateway itself answers with:
 * `{ "error": { "status", "code", "message", "requestId" } }`.
 *
 * @module
 */

/**
 * Builds a JSON error response; with a request id, it is also sent as the
 * `X-Request-Id` header.
 *
 * @example
 * ```ts
 * import { jsonError } from "./errors.ts";
 * const res = jsonError(503, "no_healthy_target", 'upstream "api" has no healthy target', "req-1");
 * res.status; // 503
 * ```
 */
export function jsonError(
  status: number,
  code: string,
  message: string,
  requestId?: string,
  headers?: HeadersInit,
): Response {
  const response = Response.json({ error: { status, code, message, requestId } }, {
    status,
    headers,
  });
  if (requestId) response.headers.set("x-request-id", requestId);
  return response;
}
