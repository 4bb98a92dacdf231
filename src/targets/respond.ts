/**
 * The fixed-response target, for health endpoints and tests.
 *
 * @module
 */

import type { RespondTargetConfig } from "./config.ts";
import type { Target } from "../pipeline/stage.ts";

/**
 * Creates a target that always answers with the configured status, headers
 * and body. A string body is sent as `text/plain; charset=utf-8` and an object
 * or array as JSON, unless a `content-type` header is configured. The body is
 * serialised once, here; each request only builds a `Response`. The config schema
 * has already refused statuses below 200 and bodies on 204, 205 and 304.
 *
 * @example
 * ```ts
 * import { createRespondTarget } from "./respond.ts";
 * const health = createRespondTarget({ status: 200, headers: {}, body: { ok: true } });
 * ```
 */
export function createRespondTarget(config: RespondTargetConfig): Target {
  const { status, body } = config;
  const headers = new Headers(config.headers);
  // A string body is much cheaper for Deno.serve to send than bytes.
  let text: string | null = null;
  if (body !== undefined) {
    const isText = typeof body === "string";
    text = isText ? body : JSON.stringify(body);
    if (!headers.has("content-type")) {
      headers.set("content-type", isText ? "text/plain; charset=utf-8" : "application/json");
    }
  }
  const init = { status, headers: [...headers] };
  return () => new Response(text, init);
}
