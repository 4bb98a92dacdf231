/**
 * Frames of the worker protocol: a 4-byte big-endian unsigned length, then
 * that many bytes of UTF-8 JSON holding one object with a string `type`.
 * {@link FrameDecoder} cuts a byte stream into messages incrementally and
 * refuses oversize or malformed frames with a {@link FrameError} naming the
 * byte offset of the frame in the stream; {@link encodeFrame} is its inverse.
 *
 * @module
 */

/** Bytes of the length prefix. */
const HEADER = 4;
/** A drained buffer larger than this is released rather than kept for the next frame. */
const SHRINK_ABOVE = 1 << 20;
const encoder = new TextEncoder();
const decoder = new TextDecoder("utf-8", { fatal: true });

/**
 * A frame that cannot be decoded. The stream is unusable after it: the
 * connection that carried it is dropped.
 *
 * @example
 * ```ts
 * import { FrameDecoder, FrameError } from "./frame.ts";
 * try {
 *   new FrameDecoder(8).push(new Uint8Array([0, 0, 1, 0]));
 * } catch (error) {
 *   if (error instanceof FrameError) console.log(error.offset); // 0
 * }
 * ```
 */
export class FrameError extends Error {
  /** Offset in the stream of the frame's first length byte. */
  readonly offset: number;

  constructor(offset: number, reason: string) {
    super(`frame at byte offset ${offset}: ${reason}`);
    this.name = "FrameError";
    this.offset = offset;
  }
}

/** A decoded frame body: a JSON object with a string `type`. */
export type FrameMessage = Record<string, unknown> & { type: string };

/**
 * Cuts a byte stream into frame messages. Chunks may split frames anywhere;
 * the decoder keeps the partial frame until the rest arrives.
 *
 * @example
 * ```ts
 * import { encodeFrame, FrameDecoder } from "./frame.ts";
 * const decoder = new FrameDecoder(1024);
 * const bytes = encodeFrame({ type: "ping", id: 1 });
 * decoder.push(bytes.subarray(0, 3)); // []
 * decoder.push(bytes.subarray(3)); // [{ type: "ping", id: 1 }]
 * ```
 */
export class FrameDecoder {
  #buffer = new Uint8Array(0);
  #start = 0;
  #end = 0;
  /** Stream offset of `#buffer[#start]`. */
  #offset = 0;
  #failed?: FrameError;

  /** `maxFrame`: the largest body accepted, in bytes (may be changed between pushes). */
  constructor(public maxFrame: number) {}

  /** Bytes received that do not yet form a whole frame. */
  get pending(): number {
    return this.#end - this.#start;
  }

  /**
   * Appends `chunk` and returns the messages it completes. Throws a
   * {@link FrameError} on an oversize length, invalid UTF-8, invalid JSON, or a
   * body that is not an object with a string `type`; every later call throws
   * the same error.
   */
  push(chunk: Uint8Array): FrameMessage[] {
    if (this.#failed) throw this.#failed;
    this.#append(chunk);
    const messages: FrameMessage[] = [];
    const view = new DataView(this.#buffer.buffer, this.#buffer.byteOffset);
    while (this.#end - this.#start >= HEADER) {
      const length = view.getUint32(this.#start);
      if (length > this.maxFrame) {
        throw this.#fail(
          `declares ${length} bytes, more than the maximum frame of ${this.maxFrame}`,
        );
      }
      if (this.#end - this.#start < HEADER + length) break;
      const body = this.#buffer.subarray(this.#start + HEADER, this.#start + HEADER + length);
      messages.push(this.#parse(body));
      this.#start += HEADER + length;
      this.#offset += HEADER + length;
    }
    if (this.#start === this.#end) {
      this.#start = this.#end = 0;
      if (this.#buffer.length > SHRINK_ABOVE) this.#buffer = new Uint8Array(0);
    }
    return messages;
  }

  #append(chunk: Uint8Array): void {
    const pending = this.#end - this.#start;
    if (this.#end + chunk.length > this.#buffer.length) {
      if (pending + chunk.length > this.#buffer.length) {
        const grown = new Uint8Array(
          Math.max(pending + chunk.length, this.#buffer.length * 2, 4096),
        );
        grown.set(this.#buffer.subarray(this.#start, this.#end));
        this.#buffer = grown;
      } else {
        this.#buffer.copyWithin(0, this.#start, this.#end);
      }
      this.#start = 0;
      this.#end = pending;
    }
    this.#buffer.set(chunk, this.#end);
    this.#end += chunk.length;
  }

  #parse(body: Uint8Array): FrameMessage {
    let value: unknown;
    try {
      value = JSON.parse(decoder.decode(body));
    } catch (error) {
      const reason = error instanceof SyntaxError ? "invalid JSON" : "invalid UTF-8";
      throw this.#fail(`${reason}: ${(error as Error).message}`);
    }
    if (value === null || typeof value !== "object" || Array.isArray(value)) {
      throw this.#fail("the body is not a JSON object");
    }
    if (typeof (value as { type?: unknown }).type !== "string") {
      throw this.#fail('the body has no string "type"');
    }
    return value as FrameMessage;
  }

  #fail(reason: string): FrameError {
    this.#failed = new FrameError(this.#offset, reason);
    return this.#failed;
  }
}

/**
 * Encodes `message` as one frame. Throws a RangeError when the body would be
 * larger than `maxFrame` bytes.
 *
 * @example
 * ```ts
 * import { encodeFrame } from "./frame.ts";
 * encodeFrame({ type: "pong", id: 7 }); // Uint8Array [0, 0, 0, 22, ...]
 * ```
 */
export function encodeFrame<M extends { readonly type: string }>(
  message: M,
  maxFrame = 0xffff_ffff,
): Uint8Array {
  const body = encoder.encode(JSON.stringify(message));
  if (body.length > maxFrame) {
    throw new RangeError(
      `a "${message.type}" frame of ${body.length} bytes exceeds the maximum frame of ${maxFrame}`,
    );
  }
  const frame = new Uint8Array(HEADER + body.length);
  new DataView(frame.buffer).setUint32(0, body.length);
  frame.set(body, HEADER);
  return frame;
}
