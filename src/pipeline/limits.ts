/**
 * Request size limits: header count and bytes (431) and body size (413).
 *
 * A body that declares its length is refused up front, before a byte of it
 * is read. A body without `Content-Length` (chunked) is counted as the target
 * reads it: the request passed on carries a wrapped body stream that errors
 * once more than `maxBodySize` bytes have passed, and any response the chain
 * produces after that is replaced by 413.
 *
 * @module
 */

import type { LimitsConfig } from "./config.ts";
import { errorResponse, GatewayError } from "../errors.ts";
import type { Stage } from "./stage.ts";

/** The error a limited body stream fails with once it has passed `maxBodySize` bytes: 413. */
export class BodyTooLargeError extends GatewayError {
  /**
   * Creates the error for a limit of `maxBodySize` bytes.
   *
   * @example
   * ```ts
   * import { BodyTooLargeError } from "./limits.ts";
   * new BodyTooLargeError(1024).message; // "request body is larger than 1024 bytes"
   * ```
   */
  constructor(readonly maxBodySize: number) {
    super(413, "body_too_large", `request body is larger than ${maxBodySize} bytes`);
    this.name = "BodyTooLargeError";
  }
}

/**
 * Creates the size-limit stage of one route; null when `config` sets no limit,
 * so the caller can leave it out of the chain.
 *
 * @example
 * ```ts
 * import { createLimitsStage } from "./limits.ts";
 * const stage = createLimitsStage({ maxBodySize: 1024 * 1024, maxHeaderCount: 100 });
 * ```
 */
export function createLimitsStage(config: LimitsConfig): Stage | null {
  const { maxBodySize, maxHeaderSize, maxHeaderCount } = config;
  if (maxBodySize === undefined && maxHeaderSize === undefined && maxHeaderCount === undefined) {
    return null;
  }
  const checksHeaders = maxHeaderSize !== undefined || maxHeaderCount !== undefined;
  const headerCountLimit = maxHeaderCount ?? Infinity;
  const headerSizeLimit = maxHeaderSize ?? Infinity;

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
    if (maxBodySize === undefined || request.body === null) return await next();

    const contentLength = request.headers.get("content-length");
    if (contentLength !== null) {
      // The server holds a body to its declared length, so only that needs checking.
      return Number(contentLength) > maxBodySize
        ? bodyTooLarge(maxBodySize, c.env.requestId)
        : await next();
    }

    let received = 0;
    let tripped = false;
    const limitedBody = request.body.pipeThrough(
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
  };
}

function bodyTooLarge(maxBodySize: number, requestId: string): Response {
  return errorResponse(new BodyTooLargeError(maxBodySize), requestId);
}
