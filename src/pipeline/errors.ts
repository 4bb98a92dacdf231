/**
 * The error response of a status, code and message, for the modules that
 * build one directly; it is {@link errorResponse} of a {@link GatewayError}.
 *
 * @module
 */

import { errorResponse, GatewayError } from "../errors.ts";

/**
 * Builds a JSON error response through {@link errorResponse}; with a request
 * id, it is also sent as the `X-Request-Id` header.
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
  return errorResponse(new GatewayError(status, code, message, { headers }), requestId);
}
