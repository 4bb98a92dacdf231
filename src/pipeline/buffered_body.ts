/**
 * A request body read whole, once per request, by whoever needs it whole
 * (the function, topic and model targets, a plugin that reads the body),
 * and shared by all of them. The bytes land in one buffer: one of the
 * declared length, which the socket is read into directly (a BYOB read) when
 * the body comes straight from the server; a body without a length is kept
 * as the chunks it came in (one chunk is returned as it is) and joined once.
 * Before a byte is read the body is held to its limit (413) and its bytes
 * are taken from the {@link BodyBudget} (503) until the request is answered.
 *
 * @module
 */

import { GatewayError } from "../errors.ts";
import type { BodyBudget } from "./body_budget.ts";
import { BodyBudgetError } from "./body_budget.ts";
import type { GatewayContext } from "./stage.ts";
import { concat } from "../util/concat.ts";

/** The largest body a buffering target reads when no `maxBodySize` is set: 10MB. */
export const DEFAULT_MAX_BUFFERED_BODY = 10 * 1024 * 1024;

/** The error a body over its limit fails with: 413. */
export class BodyTooLargeError extends GatewayError {
  /**
   * Creates the error for a limit of `maxBodySize` bytes.
   *
   * @example
   * ```ts
   * import { BodyTooLargeError } from "./buffered_body.ts";
   * new BodyTooLargeError(1024).message; // "request body is larger than 1024 bytes"
   * ```
   */
  constructor(readonly maxBodySize: number) {
    super(413, "body_too_large", `request body is larger than ${maxBodySize} bytes`);
    this.name = "BodyTooLargeError";
  }
}

const EMPTY = new Uint8Array(0);

/**
 * The body of one request, read at most once.
 *
 * @example
 * ```ts
 * import { BufferedBody } from "./buffered_body.ts";
 * import { BodyBudget } from "./body_budget.ts";
 * const budget = new BodyBudget(1024);
 * const body = new BufferedBody(100, budget);
 * await body.read(new Request("http://x/", { method: "POST", body: "hello" })); // 5 bytes
 * budget.used; // 5
 * body.release();
 * ```
 */
export class BufferedBody {
  #bytes?: Promise<Uint8Array>;
  #held = 0;

  /** `maxBodySize`: 413 above it; `budget`: where the bytes are counted (none: not counted). */
  constructor(readonly maxBodySize: number, readonly budget?: BodyBudget) {}

  /**
   * The bytes of `request`'s body, read on the first call and the same bytes
   * after it (do not modify them). `limit` (default `maxBodySize`) is for a
   * target with a limit of its own. Rejects with a {@link BodyTooLargeError},
   * a `BodyBudgetError`, or a 400 for a body longer than its declared length.
   */
  read(request: Request, limit = this.maxBodySize): Promise<Uint8Array> {
    return this.#bytes ??= this.#read(request, limit);
  }

  /**
   * Makes `bytes` the body (a plugin replaced it), giving back what the body
   * read before held: the new bytes are the plugin's, already in memory.
   */
  replace(bytes: Uint8Array): void {
    this.release();
    this.#bytes = Promise.resolve(bytes);
  }

  /** Gives the bytes taken from the budget back (the request is answered). */
  release(): void {
    this.budget?.give(this.#held);
    this.#held = 0;
  }

  /**
   * Counts `bytes` more against the budget until the request is answered: a
   * form of the body its reader keeps besides the bytes (the text or base64
   * a function's arguments carry). Throws a `BodyBudgetError` when the
   * budget cannot hold them.
   */
  hold(bytes: number): void {
    if (!this.budget) return;
    if (!this.budget.take(bytes)) throw new BodyBudgetError(this.budget.limit);
    this.#held += bytes;
  }

  async #read(request: Request, limit: number): Promise<Uint8Array> {
    const body = request.body;
    if (body === null) return EMPTY;
    const declared = Number(request.headers.get("content-length") ?? NaN);
    try {
      // A length the server did not check (a plugin's header) that is no length: read as chunked.
      if (!Number.isSafeInteger(declared) || declared < 0) {
        return await this.#readChunks(body, limit);
      }
      if (declared > limit) throw new BodyTooLargeError(limit);
      this.hold(declared);
      return await readDeclared(body, declared);
    } catch (error) {
      await body.cancel().catch(() => {});
      throw error;
    }
  }

  async #readChunks(body: ReadableStream<Uint8Array>, limit: number): Promise<Uint8Array> {
    const chunks: Uint8Array[] = [];
    let size = 0;
    for await (const chunk of body) {
      size += chunk.length;
      if (size > limit) throw new BodyTooLargeError(limit);
      this.hold(chunk.length);
      chunks.push(chunk);
    }
    return chunks.length === 1 ? chunks[0] : concat(chunks);
  }
}

/**
 * Reads a body of `length` declared bytes into one buffer of that size:
 * straight from the socket with a BYOB reader when the stream is the
 * server's own, else chunk by chunk.
 */
async function readDeclared(body: ReadableStream<Uint8Array>, length: number): Promise<Uint8Array> {
  let reader: ReadableStreamBYOBReader;
  try {
    reader = body.getReader({ mode: "byob" });
  } catch {
    return await copyDeclared(body, length);
  }
  let buffer = new ArrayBuffer(length);
  let filled = 0;
  while (filled < length) {
    const { value, done } = await reader.read(new Uint8Array(buffer, filled, length - filled));
    if (value) buffer = value.buffer as ArrayBuffer;
    if (done) return new Uint8Array(buffer, 0, filled);
    filled += value.byteLength;
  }
  if (!(await reader.read(new Uint8Array(1))).done) {
    await reader.cancel();
    throw longerThanDeclared(length);
  }
  return new Uint8Array(buffer);
}

async function copyDeclared(body: ReadableStream<Uint8Array>, length: number): Promise<Uint8Array> {
  const buffer = new Uint8Array(length);
  let filled = 0;
  for await (const chunk of body) {
    if (filled + chunk.length > length) throw longerThanDeclared(length);
    buffer.set(chunk, filled);
    filled += chunk.length;
  }
  return filled === length ? buffer : buffer.subarray(0, filled);
}

function longerThanDeclared(length: number): GatewayError {
  return new GatewayError(400, "bad_body", `the body is longer than its Content-Length ${length}`);
}

/**
 * The {@link BufferedBody} of the request `c` serves: the one the limits
 * stage set up (with the route's limit and the process's budget), else one
 * with the default limit and no budget.
 *
 * @example
 * ```ts
 * import { bufferedBody } from "./buffered_body.ts";
 * import type { Target } from "./stage.ts";
 * const echo: Target = async (c) => new Response(await bufferedBody(c).read(c.req.raw) as Uint8Array<ArrayBuffer>);
 * ```
 */
export function bufferedBody(c: GatewayContext): BufferedBody {
  let body = c.get("body");
  if (body === undefined) {
    body = new BufferedBody(DEFAULT_MAX_BUFFERED_BODY);
    c.set("body", body);
  }
  return body;
}

/**
 * A stream of `bytes` in one chunk, for a request that passes on a body
 * already read (a `Request` made from the bytes themselves would copy them).
 *
 * @example
 * ```ts
 * import { streamOf } from "./buffered_body.ts";
 * await new Response(streamOf(new Uint8Array([1, 2]))).bytes(); // Uint8Array [1, 2]
 * ```
 */
export function streamOf(bytes: Uint8Array): ReadableStream<Uint8Array> {
  return new ReadableStream({
    start(controller) {
      if (bytes.length > 0) controller.enqueue(bytes);
      controller.close();
    },
  });
}
