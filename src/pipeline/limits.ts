/**
 * Request size limits: header count and bytes (431) and body size (413), and
 * the body budget (503) of routes whose body is read whole.
 *
 * A body that declares its length is refused up front, before a byte of it
 * is read. On a proxied route, a body without `Content-Length` (chunked) is
 * counted as the target reads it, and only when `maxBodySize` is set: the
 * request passed on carries a wrapped body stream that errors once more than
 * `maxBodySize` bytes have passed, and any response the chain produces after
 * that is replaced by 413. A body read whole (by the target or a plugin, see
 * {@link BufferedBody}) is held to `maxBodySize`, 10MB when unset, and
 * counted in the process's {@link BodyBudget} until the request is answered.
 *
 * @module
 */

import type { LimitsConfig } from "./config.ts";
import { errorResponse, GatewayError } from "../errors.ts";
import type { GatewayContext, Stage } from "./stage.ts";
import { type BodyBudget, BodyBudgetError } from "./body_budget.ts";
import { BodyTooLargeError, BufferedBody, DEFAULT_MAX_BUFFERED_BODY } from "./buffered_body.ts";

export { BodyTooLargeError } from "./buffered_body.ts";

/** How a route's body is taken, for the limits that apply to it. */
export interface BodyHandling {
  /** `buffered`: the target reads the whole body (function, topic, model); else it streams it. */
  target: "buffered" | "streamed";
  /** Plugins run on the route: one may read the whole body. */
  plugins: boolean;
  /** The process-wide budget of body bytes held in memory. */
  budget: BodyBudget;
}

/**
 * Creates the size-limit stage of one route; null when nothing needs
 * checking (no limit set, and a streamed body no plugin may read), so the
 * caller can leave it out of the chain. Without `body`, the route is taken as
 * streamed, without plugins and outside any budget.
 *
 * @example
 * ```ts
 * import { createLimitsStage } from "./limits.ts";
 * import { BodyBudget } from "./body_budget.ts";
 * const budget = new BodyBudget(64 * 1024 * 1024);
 * const stage = createLimitsStage({ maxHeaderCount: 100 }, { target: "buffered", plugins: false, budget });
 * ```
 */
export function createLimitsStage(config: LimitsConfig, body?: BodyHandling): Stage | null {
  const { maxBodySize, maxHeaderSize, maxHeaderCount } = config;
  const buffered = body?.target === "buffered";
  const readsWhole = buffered || body?.plugins === true;
  if (
    maxBodySize === undefined && maxHeaderSize === undefined && maxHeaderCount === undefined &&
    !readsWhole
  ) {
    return null;
  }
  const checksHeaders = maxHeaderSize !== undefined || maxHeaderCount !== undefined;
  const headerCountLimit = maxHeaderCount ?? Infinity;
  const headerSizeLimit = maxHeaderSize ?? Infinity;
  const wholeLimit = maxBodySize ?? DEFAULT_MAX_BUFFERED_BODY;
  // The limit a declared length is held to before anything runs.
  const declaredLimit = buffered ? wholeLimit : maxBodySize;

  return async (c, next) => {
    const request = c.req.raw;
    if (checksHeaders) {
      let count = 0;
      let bytes = 0;
      for (const [name, value] of request.headers) {
        count += 1;
        bytes += name.length + value.length;
      }
      if (count > headerCountLimit || bytes > headerSizeLimit) {
        return errorResponse(
          new GatewayError(
            431,
            "headers_too_large",
            `request has ${count} headers of ${bytes} bytes, over the limit`,
          ),
          c.env.requestId,
        );
      }
    }
    if (request.body === null) return await next();

    const contentLength = request.headers.get("content-length");
    if (contentLength !== null && declaredLimit !== undefined) {
      // The server holds a body to its declared length, so only that needs checking.
      if (Number(contentLength) > declaredLimit) {
        return bodyTooLarge(declaredLimit, c.env.requestId);
      }
    }
    // A streamed body of no declared length is counted as it passes, when a limit is set.
    const rest = !buffered && contentLength === null && maxBodySize !== undefined
      ? () => limitStream(c, request, maxBodySize, next)
      : next;
    if (!readsWhole) return await rest();
    const whole = new BufferedBody(wholeLimit, body!.budget);
    c.set("body", whole);
    try {
      return await rest();
    } catch (error) {
      // The whole body was over its limit or the budget when the target or a plugin read it.
      if (error instanceof BodyTooLargeError || error instanceof BodyBudgetError) {
        return errorResponse(error, c.env.requestId);
      }
      throw error;
    } finally {
      whole.release();
    }
  };
}

/**
 * Runs the rest of the chain with `request`'s body counted as it streams:
 * past `maxBodySize` bytes the stream errors and the answer is 413.
 */
async function limitStream(
  c: GatewayContext,
  request: Request,
  maxBodySize: number,
  next: () => Promise<Response>,
): Promise<Response> {
  let received = 0;
  let tripped = false;
  const limitedBody = request.body!.pipeThrough(
    new TransformStream<Uint8Array, Uint8Array>({
      transform(chunk, controller) {
        received += chunk.byteLength;
        if (received > maxBodySize) {
          tripped = true;
          controller.error(new BodyTooLargeError(maxBodySize));
        } else {
          controller.enqueue(chunk);
        }
      },
    }),
  );
  c.req.raw = new Request(request, { body: limitedBody });
  let response: Response;
  try {
    response = await next();
  } catch (error) {
    if (tripped) return bodyTooLarge(maxBodySize, c.env.requestId);
    throw error;
  }
  if (!tripped) return response;
  // The target gave up on the body (a 5xx, or an early answer); the client learns why.
  await response.body?.cancel();
  return bodyTooLarge(maxBodySize, c.env.requestId);
}

function bodyTooLarge(maxBodySize: number, requestId: string): Response {
  return errorResponse(new BodyTooLargeError(maxBodySize), requestId);
}
