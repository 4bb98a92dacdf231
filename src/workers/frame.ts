/**
 * Frames of the worker protocol: the listeners' `length` framing
 * (src/listeners/framing.ts) with a 4-byte big-endian length, each body UTF-8
 * JSON holding one object with a string `type`. {@link FrameDecoder} turns a
 * byte stream into messages and refuses oversize or malformed frames with a
 * `FrameError` naming the byte offset of the frame in the stream;
 * {@link encodeFrame} is its inverse.
 *
 * @module
 */

import { createFrameCodec, type FrameDecoder as Frames, FrameError } from "../listeners/framing.ts";

/** Bytes of the length prefix. */
const HEADER = 4;
const codec = createFrameCodec({
  type: "length",
  bytes: HEADER,
  endian: "big",
  headerOffset: 0,
  lengthIncludesHeader: false,
  maxLength: 0xffff_ffff,
});
const encoder = new TextEncoder();
/** Frames of more characters than this are encoded into their own buffer at once. */
const DIRECT_ENCODE = 64 * 1024;
const decoder = new TextDecoder("utf-8", { fatal: true });

/** A decoded frame body: a JSON object with a string `type`. */
export type FrameMessage = Record<string, unknown> & { type: string };

/** A message and where its frame starts in the stream (for errors about it). */
export interface DecodedFrame {
  message: FrameMessage;
  /** Offset in the stream of the frame's first length byte. */
  offset: number;
}

/**
 * Cuts a byte stream into frame messages. Chunks may split frames anywhere;
 * a partial frame is kept (copied) until the rest arrives, so the caller may
 * read the next chunk into the same memory.
 *
 * @example
 * ```ts
 * import { encodeFrame, FrameDecoder } from "./frame.ts";
 * const decoder = new FrameDecoder(1024);
 * const bytes = encodeFrame({ type: "ping", id: 1 });
 * decoder.push(bytes.subarray(0, 3)); // []
 * decoder.push(bytes.subarray(3)); // [{ message: { type: "ping", id: 1 }, offset: 0 }]
 * ```
 */
export class FrameDecoder {
  readonly #frames: Frames = codec.decoder();
  /** Bytes pushed so far. */
  #received = 0;
  /** Stream offset of the next frame's first length byte. */
  #offset = 0;
  #failed?: FrameError;

  /** `maxFrame`: the largest body accepted, in bytes. */
  constructor(maxFrame: number) {
    this.#frames.maxLength = maxFrame;
  }

  /** The largest body accepted, in bytes; a change applies from the frame not yet complete on. */
  get maxFrame(): number {
    return this.#frames.maxLength;
  }

  set maxFrame(bytes: number) {
    this.#frames.maxLength = bytes;
  }

  /** Bytes received that do not yet form a whole frame. */
  get pending(): number {
    return this.#received - this.#offset;
  }

  /**
   * Takes the next chunk and returns the messages it completes. Throws a
   * `FrameError` (from src/listeners/framing.ts) on an oversize length,
   * invalid UTF-8, invalid JSON, or a body that is not an object with a
   * string `type`; every later call throws the same error.
   */
  push(chunk: Uint8Array): DecodedFrame[] {
    if (this.#failed) throw this.#failed;
    this.#received += chunk.length;
    let bodies: Uint8Array[];
    try {
      bodies = this.#frames.push(chunk);
    } catch (error) {
      if (!(error instanceof FrameError)) throw error;
      throw this.#fail(error.offset, error.message);
    }
    const decoded: DecodedFrame[] = [];
    for (const body of bodies) {
      decoded.push({ message: this.#parse(body), offset: this.#offset });
      this.#offset += HEADER + body.length;
    }
    return decoded;
  }

  #parse(body: Uint8Array): FrameMessage {
    let value: unknown;
    try {
      value = JSON.parse(decoder.decode(body));
    } catch (error) {
      const reason = error instanceof SyntaxError ? "invalid JSON" : "invalid UTF-8";
      throw this.#fail(this.#offset, `${reason}: ${(error as Error).message}`);
    }
    if (value === null || typeof value !== "object" || Array.isArray(value)) {
      throw this.#fail(this.#offset, "the body is not a JSON object");
    }
    if (typeof (value as { type?: unknown }).type !== "string") {
      throw this.#fail(this.#offset, 'the body has no string "type"');
    }
    return value as FrameMessage;
  }

  #fail(offset: number, reason: string): FrameError {
    this.#failed = new FrameError(`frame at byte offset ${offset}: ${reason}`, offset);
    return this.#failed;
  }
}

/**
 * Encodes `message` as one frame. Throws a RangeError when the body would be
 * larger than `maxFrame` bytes. The bytes may be a view of a buffer shared
 * with other frames: write them, do not keep or modify them.
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
  const json = JSON.stringify(message);
  if (json.length > DIRECT_ENCODE && json.length <= maxFrame) {
    // Large ASCII JSON (base64 bodies, most text) is encoded straight into the frame, not copied
    // there; small frames come from the codec's slab, which is cheaper than an allocation.
    const frame = new Uint8Array(HEADER + json.length);
    if (encoder.encodeInto(json, frame.subarray(HEADER)).read === json.length) {
      new DataView(frame.buffer).setUint32(0, json.length);
      return frame;
    }
  }
  const body = encoder.encode(json);
  if (body.length > maxFrame) {
    throw new RangeError(
      `a "${message.type}" frame of ${body.length} bytes exceeds the maximum frame of ${maxFrame}`,
    );
  }
  return codec.encode(body);
}
