/**
 * Cutting a byte stream into frames, and framing replies the same way, for
 * the TCP and Unix-socket listeners. Modes (from {@link FramingConfig}):
 *
 * - `line`: frames end with `delimiter` (default `\n`); with the delimiter
 *   `\n`, a `\r` before it is removed too. Encoding appends the delimiter.
 * - `delimiter`: frames end with any byte sequence; encoding appends it.
 *   A payload that contains the delimiter (or ends with part of it, so that
 *   the delimiter would be found early) cannot be encoded.
 * - `length`: `headerOffset` header bytes, then a `bytes`-byte unsigned length
 *   field (`endian`), then the body. The length counts the body, or with
 *   `lengthIncludesHeader` the header, the length field and the body. A frame
 *   is the header followed by the body: the length field is removed, the
 *   header is kept. Encoding is the inverse: the payload starts with its
 *   `headerOffset` header bytes (a reply echoes the request's header, such as
 *   a Modbus TCP transaction id) and the length field is inserted after them.
 * - `fixed`: frames of exactly `size` bytes; encoding requires that size.
 * - `raw`: bytes as they arrive, cut into frames of at most `maxLength`;
 *   encoding returns the payload unchanged.
 *
 * `maxLength` bounds the payload of a frame (what the decoder returns); a
 * decoder's own limit may be changed while it runs (the workers socket
 * accepts larger frames once a worker has said hello). A
 * stream that breaks the framing makes the decoder throw a {@link FrameError}
 * whose `offset` is the absolute stream offset of the problem; for a frame
 * over `maxLength` that is the frame's first byte plus `maxLength`, however
 * the stream was split into chunks.
 *
 * Delimiters are text (UTF-8) or hex bytes written `hex:0d0a`.
 *
 * @module
 */

import type { FramingConfig } from "./config.ts";

/** A stream that breaks its framing: a frame over the maximum or a malformed length field. */
export class FrameError extends Error {
  /** Absolute byte offset in the stream (0 = first byte received) where the problem is. */
  readonly offset: number;
  /** The complete frames that came before the problem in the chunk whose push threw. */
  frames: Uint8Array[] = [];

  constructor(message: string, offset: number) {
    super(message);
    this.name = "FrameError";
    this.offset = offset;
  }
}

/** Cuts one stream into frames; one per connection. */
export interface FrameDecoder {
  /**
   * Takes the next chunk of the stream and returns the frames it completed,
   * in order. Frames are views of `chunk` or of the decoder's own buffer (the
   * decoder never writes to memory it has returned), so the caller must not
   * write to `chunk` after pushing it: read each chunk into fresh space. Throws a
   * {@link FrameError} when the stream breaks its framing, carrying the
   * frames of this chunk that came before the problem; the decoder is not
   * used after that.
   */
  push(chunk: Uint8Array): Uint8Array[];
  /**
   * The largest payload a frame may have: the codec's `maxLength` (in `fixed`
   * mode its `size`, which frames always have) until changed. A change
   * applies to every frame not yet complete.
   */
  maxLength: number;
}

/** A framing: decoders for incoming streams, and the encoder for replies. */
export interface FrameCodec {
  /** A new decoder, for one stream. */
  decoder(): FrameDecoder;
  /**
   * The bytes that carry `payload` as one frame, to be written to a socket:
   * they may be the payload itself or a view of a buffer shared with other
   * encoded frames, so they are not to be modified, kept or transferred.
   * Throws a `RangeError` when
   * it cannot be one: it contains the delimiter, it is not `size` bytes in
   * `fixed` mode, it is shorter than the header or too long for the length
   * field in `length` mode.
   */
  encode(payload: Uint8Array): Uint8Array;
}

/** Finds the frame at the start of the bytes not yet consumed. */
interface FrameScanner {
  /**
   * The first frame in `pending` (which starts `offset` bytes into the
   * stream) and how many bytes of `pending` it used, or undefined when more
   * bytes are needed. `maxLength` is the decoder's current limit.
   */
  next(
    pending: Uint8Array,
    offset: number,
    maxLength: number,
  ): { frame: Uint8Array; used: number } | undefined;
}

type LengthFraming = Extract<FramingConfig, { type: "length" }>;

const CR = 0x0d;
const EMPTY = new Uint8Array(0);
const ENCODE_SLAB_SIZE = 16 * 1024;

/** The slab encoded frames are carved from, and how much of it is handed out. */
let encodeSlab = EMPTY;
let encodeSlabUsed = 0;

/**
 * Space for an encoded frame. Frames up to a quarter of
 * {@link ENCODE_SLAB_SIZE} are carved out of a shared slab whose regions are
 * never reused; larger ones get their own array. A new small `Uint8Array`
 * costs Deno an off-heap allocation that took about 15% of a TCP echo round
 * trip in `bench/tcp_echo.ts`; a view of a slab costs next to nothing.
 */
function allocateEncoded(length: number): Uint8Array {
  if (length > ENCODE_SLAB_SIZE / 4) return new Uint8Array(length);
  if (encodeSlabUsed + length > encodeSlab.length) {
    encodeSlab = new Uint8Array(ENCODE_SLAB_SIZE);
    encodeSlabUsed = 0;
  }
  const bytes = encodeSlab.subarray(encodeSlabUsed, encodeSlabUsed + length);
  encodeSlabUsed += length;
  return bytes;
}

/**
 * The framing that `config` describes.
 *
 * @example
 * ```ts
 * import { createFrameCodec } from "./framing.ts";
 * const codec = createFrameCodec({ type: "line", delimiter: "\n", maxLength: 1024 });
 * const decoder = codec.decoder();
 * const bytes = (text: string) => new TextEncoder().encode(text);
 * decoder.push(bytes("hel")); // []
 * decoder.push(bytes("lo\r\nworld\n")); // [bytes("hello"), bytes("world")]
 * codec.encode(bytes("ok")); // bytes("ok\n")
 * ```
 */
export function createFrameCodec(config: FramingConfig): FrameCodec {
  switch (config.type) {
    case "line":
    case "delimiter": {
      const delimiter = parseByteString(config.delimiter);
      const stripCr = config.type === "line" && delimiter.length === 1 && delimiter[0] === 0x0a;
      const noun = config.type === "line" ? "line" : "frame";
      return {
        decoder: () =>
          new StreamDecoder(new DelimiterScanner(delimiter, stripCr, noun), config.maxLength),
        encode: (payload) => {
          const framed = allocateEncoded(payload.length + delimiter.length);
          framed.set(payload);
          framed.set(delimiter, payload.length);
          if (indexOfSequence(framed, delimiter, 0) !== payload.length) {
            throw new RangeError(
              `a ${noun} cannot contain its delimiter ${JSON.stringify(config.delimiter)}`,
            );
          }
          if (stripCr && payload[payload.length - 1] === CR) {
            throw new RangeError("a line cannot end with \\r: the peer would remove it");
          }
          return framed;
        },
      };
    }
    case "length":
      return {
        decoder: () => new StreamDecoder(new LengthScanner(config), config.maxLength),
        encode: (payload) => encodeLengthPrefixed(config, payload),
      };
    case "fixed":
      return {
        decoder: () => new StreamDecoder(new FixedScanner(config.size), config.size),
        encode: (payload) => {
          if (payload.length !== config.size) {
            throw new RangeError(
              `a fixed frame is ${config.size} bytes, the payload has ${payload.length}`,
            );
          }
          return payload;
        },
      };
    case "raw":
      if (config.maxLength < 1) throw new RangeError("raw framing needs a maxLength of at least 1");
      return {
        decoder: () => new StreamDecoder(new RawScanner(), config.maxLength),
        encode: (payload) => payload,
      };
  }
}

/** Bytes from a config string: `hex:0d0a` or UTF-8 text. */
function parseByteString(text: string): Uint8Array {
  if (!text.startsWith("hex:")) return new TextEncoder().encode(text);
  const hex = text.slice(4);
  if (!/^(?:[0-9a-fA-F]{2})+$/.test(hex)) {
    throw new Error(`invalid delimiter "${text}": hex: needs pairs of hex digits`);
  }
  return Uint8Array.from(hex.match(/../g)!, (pair) => parseInt(pair, 16));
}

/** Where `sequence` first occurs in `bytes` at or after `from`, or -1. */
function indexOfSequence(bytes: Uint8Array, sequence: Uint8Array, from: number): number {
  const last = bytes.length - sequence.length;
  for (let i = bytes.indexOf(sequence[0], from); i >= 0 && i <= last;) {
    let matched = 1;
    while (matched < sequence.length && bytes[i + matched] === sequence[matched]) matched++;
    if (matched === sequence.length) return i;
    i = bytes.indexOf(sequence[0], i + 1);
  }
  return -1;
}

/**
 * Runs a {@link FrameScanner} over a stream. Frames are found in the pushed
 * chunk itself and returned as views of it. Only the bytes of an incomplete
 * frame are kept, in a buffer that grows by doubling and is compacted instead
 * of reallocated when it has room; once the frame completes, it is returned as
 * a view of that buffer and the buffer is let go (never written again), so an
 * idle connection holds no buffer.
 */
class StreamDecoder implements FrameDecoder {
  readonly #scanner: FrameScanner;
  maxLength: number;
  #buffer = EMPTY;
  #start = 0;
  #end = 0;
  /** Stream offset of the first byte not yet consumed. */
  #offset = 0;

  constructor(scanner: FrameScanner, maxLength: number) {
    this.#scanner = scanner;
    this.maxLength = maxLength;
  }

  push(chunk: Uint8Array): Uint8Array[] {
    const frames: Uint8Array[] = [];
    try {
      /** Where the bytes not yet consumed start in `chunk`. */
      let from = 0;
      const kept = this.#end - this.#start;
      if (kept > 0) {
        this.#append(chunk);
        const found = this.#scanner.next(
          this.#buffer.subarray(this.#start, this.#end),
          this.#offset,
          this.maxLength,
        );
        if (found === undefined) return frames;
        frames.push(found.frame);
        this.#offset += found.used;
        from = found.used - kept;
        this.#buffer = EMPTY;
        this.#start = this.#end = 0;
      }
      for (;;) {
        const found = this.#scanner.next(chunk.subarray(from), this.#offset, this.maxLength);
        if (found === undefined) break;
        frames.push(found.frame);
        from += found.used;
        this.#offset += found.used;
      }
      if (from < chunk.length) this.#append(chunk.subarray(from));
    } catch (error) {
      if (error instanceof FrameError) error.frames = frames;
      throw error;
    }
    return frames;
  }

  #append(bytes: Uint8Array): void {
    const kept = this.#end - this.#start;
    if (this.#end + bytes.length > this.#buffer.length) {
      if (kept + bytes.length <= this.#buffer.length) {
        this.#buffer.copyWithin(0, this.#start, this.#end);
      } else {
        const grown = new Uint8Array(Math.max(this.#buffer.length * 2, kept + bytes.length, 256));
        grown.set(this.#buffer.subarray(this.#start, this.#end));
        this.#buffer = grown;
      }
      this.#start = 0;
      this.#end = kept;
    }
    this.#buffer.set(bytes, this.#end);
    this.#end += bytes.length;
  }
}

/** `line` and `delimiter` frames. */
class DelimiterScanner implements FrameScanner {
  /** Bytes of the current frame already searched for the delimiter. */
  #searched = 0;
  /** How many bytes past `maxLength` can still belong to a valid frame's delimiter and `\r`. */
  readonly #slack: number;

  constructor(
    readonly delimiter: Uint8Array,
    readonly stripCr: boolean,
    readonly noun: string,
  ) {
    this.#slack = delimiter.length - 1 + (stripCr ? 1 : 0);
  }

  next(
    pending: Uint8Array,
    offset: number,
    maxLength: number,
  ): { frame: Uint8Array; used: number } | undefined {
    const from = Math.max(0, this.#searched - this.delimiter.length + 1);
    const at = indexOfSequence(pending, this.delimiter, from);
    if (at < 0) {
      if (pending.length > maxLength + this.#slack) this.#tooLong(offset, maxLength);
      this.#searched = pending.length;
      return undefined;
    }
    this.#searched = 0;
    const end = this.stripCr && at > 0 && pending[at - 1] === CR ? at - 1 : at;
    if (end > maxLength) this.#tooLong(offset, maxLength);
    return { frame: pending.subarray(0, end), used: at + this.delimiter.length };
  }

  #tooLong(offset: number, maxLength: number): never {
    throw new FrameError(
      `${this.noun} longer than the maximum of ${maxLength} bytes`,
      offset + maxLength,
    );
  }
}

/** `length` frames: header, length field, body. */
class LengthScanner implements FrameScanner {
  constructor(readonly config: LengthFraming) {}

  next(
    pending: Uint8Array,
    offset: number,
    maxLength: number,
  ): { frame: Uint8Array; used: number } | undefined {
    const { headerOffset, bytes, lengthIncludesHeader } = this.config;
    const prefix = headerOffset + bytes;
    if (pending.length < prefix) return undefined;
    const length = readLength(pending, headerOffset, bytes, this.config.endian === "little");
    if (lengthIncludesHeader && length < prefix) {
      throw new FrameError(
        `length field says ${length} bytes, fewer than the ${prefix} bytes of header and length field it counts`,
        offset + headerOffset,
      );
    }
    const total = lengthIncludesHeader ? length : prefix + length;
    const payloadLength = total - bytes;
    if (payloadLength > maxLength) {
      throw new FrameError(
        `length field announces a frame of ${payloadLength} bytes, over the maximum of ${maxLength}`,
        offset + headerOffset,
      );
    }
    if (pending.length < total) return undefined;
    if (headerOffset === 0) return { frame: pending.subarray(prefix, total), used: total };
    const frame = new Uint8Array(payloadLength);
    frame.set(pending.subarray(0, headerOffset));
    frame.set(pending.subarray(prefix, total), headerOffset);
    return { frame, used: total };
  }
}

/** The unsigned `size`-byte integer at `at`. */
function readLength(bytes: Uint8Array, at: number, size: 1 | 2 | 4, little: boolean): number {
  let value = 0;
  for (let i = 0; i < size; i++) value = value * 256 + bytes[at + (little ? size - 1 - i : i)];
  return value;
}

/** A `length` frame: the payload's header, the length field, the payload's body. */
function encodeLengthPrefixed(config: LengthFraming, payload: Uint8Array): Uint8Array {
  const { headerOffset, bytes, lengthIncludesHeader, endian } = config;
  if (payload.length < headerOffset) {
    throw new RangeError(
      `a payload starts with its ${headerOffset}-byte header, this one has ${payload.length} bytes`,
    );
  }
  const length = lengthIncludesHeader ? payload.length + bytes : payload.length - headerOffset;
  if (length >= 2 ** (8 * bytes)) {
    throw new RangeError(`length ${length} does not fit a ${bytes}-byte length field`);
  }
  const framed = allocateEncoded(payload.length + bytes);
  framed.set(payload.subarray(0, headerOffset));
  for (let i = 0, rest = length; i < bytes; i++, rest = Math.floor(rest / 256)) {
    framed[headerOffset + (endian === "little" ? i : bytes - 1 - i)] = rest % 256;
  }
  framed.set(payload.subarray(headerOffset), headerOffset + bytes);
  return framed;
}

/** `fixed` frames. */
class FixedScanner implements FrameScanner {
  constructor(readonly size: number) {}

  next(pending: Uint8Array): { frame: Uint8Array; used: number } | undefined {
    if (pending.length < this.size) return undefined;
    return { frame: pending.subarray(0, this.size), used: this.size };
  }
}

/** `raw` frames: whatever arrived, at most `maxLength` at a time. */
class RawScanner implements FrameScanner {
  next(
    pending: Uint8Array,
    _offset: number,
    maxLength: number,
  ): { frame: Uint8Array; used: number } | undefined {
    if (pending.length === 0) return undefined;
    const used = Math.min(pending.length, maxLength);
    return { frame: pending.subarray(0, used), used };
  }
}
