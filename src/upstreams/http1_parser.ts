/**
 * Bounded parsing of HTTP/1.x responses (RFC 9112): the response head and the
 * chunked transfer coding. Works on byte ranges of a caller-owned buffer so the
 * client can parse straight from its socket buffer without copying.
 *
 * @module
 */

/** Thrown when the upstream's bytes are not a valid HTTP/1.x response. */
export class Http1ParseError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "Http1ParseError";
  }
}

/** How the response body is delimited. */
export type BodyFraming = "none" | "content-length" | "chunked" | "until-close";

/** A parsed response head (status line and header section). */
export interface ResponseHead {
  status: number;
  statusText: string;
  headers: Headers;
  /** Body length when framed by Content-Length, else -1. */
  contentLength: number;
  /** Whether Transfer-Encoding ends with `chunked`. */
  chunked: boolean;
  /** Whether any Transfer-Encoding header was present. */
  hasTransferEncoding: boolean;
  /** Whether the connection may carry another request after this response. */
  keepAlive: boolean;
}

/** A complete head found in a buffer, and where the bytes after it start. */
export interface ParsedHead {
  head: ResponseHead;
  /** Index of the first byte after the head's empty line. */
  bodyStart: number;
}

const LF = 10;
const CR = 13;
const STATUS_LINE = /^HTTP\/1\.([01]) ([1-9]\d\d)(?: (.*))?$/;
const DIGITS = /^\d{1,15}$/;

/**
 * Finds the end of a head section (the empty line) that starts at `start`,
 * searching line feeds in `bytes[from, to)` (pass a later `from` to skip bytes
 * already searched). Returns the index just after the empty line's LF, or -1
 * if it is not there yet. Accepts CRLF and bare LF line endings.
 *
 * @example
 * ```ts
 * import { findHeadEnd } from "./http1_parser.ts";
 * const bytes = new TextEncoder().encode("HTTP/1.1 204 No Content\r\n\r\n");
 * console.assert(findHeadEnd(bytes, 0, 0, bytes.length) === bytes.length);
 * ```
 */
export function findHeadEnd(bytes: Uint8Array, start: number, from: number, to: number): number {
  let lf = bytes.indexOf(LF, from);
  // Visits each line feed once; bounded by `to - from`.
  while (lf !== -1 && lf < to) {
    if (lf > start && bytes[lf - 1] === LF) return lf + 1;
    if (lf > start + 1 && bytes[lf - 1] === CR && bytes[lf - 2] === LF) return lf + 1;
    lf = bytes.indexOf(LF, lf + 1);
  }
  return -1;
}

/**
 * Parses a response head from `bytes[start, end)`. Returns null when the head
 * is incomplete; throws {@link Http1ParseError} when it is malformed or longer
 * than `maxHeaderSize` bytes. `searched` is how many bytes after `start` an
 * earlier call already searched for the end of the head (0 the first time).
 *
 * @example
 * ```ts
 * import { parseResponseHead } from "./http1_parser.ts";
 * const bytes = new TextEncoder().encode("HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nhi");
 * const parsed = parseResponseHead(bytes, 0, bytes.length, 65536, 0);
 * console.assert(parsed?.head.contentLength === 2 && parsed.bodyStart === bytes.length - 2);
 * ```
 */
export function parseResponseHead(
  bytes: Uint8Array,
  start: number,
  end: number,
  maxHeaderSize: number,
  searched: number,
): ParsedHead | null {
  const limit = Math.min(end, start + maxHeaderSize);
  const headEnd = findHeadEnd(bytes, start, start + Math.max(0, searched - 3), limit);
  if (headEnd === -1) {
    if (end - start >= maxHeaderSize) {
      throw new Http1ParseError(`response head exceeds ${maxHeaderSize} bytes`);
    }
    return null;
  }
  const text = latin1(bytes.subarray(start, headEnd));
  return { head: parseHeadText(text), bodyStart: headEnd };
}

/** Decodes bytes as ISO-8859-1, one code unit per byte, exactly. */
function latin1(bytes: Uint8Array): string {
  return String.fromCharCode.apply(null, bytes as unknown as number[]);
}

function parseHeadText(text: string): ResponseHead {
  let lineEnd = text.indexOf("\n");
  const match = STATUS_LINE.exec(stripCr(text.slice(0, lineEnd)));
  if (match === null) throw new Http1ParseError("malformed status line");
  const http10 = match[1] === "0";
  const status = Number(match[2]);
  const headers = new Headers();
  let contentLength = -1;
  let transferEncoding = "";
  let connection = "";
  // Each iteration consumes one line of a string bounded by maxHeaderSize.
  for (let lineStart = lineEnd + 1; lineStart < text.length; lineStart = lineEnd + 1) {
    lineEnd = text.indexOf("\n", lineStart);
    const line = stripCr(text.slice(lineStart, lineEnd));
    if (line.length === 0) break;
    const colon = line.indexOf(":");
    if (colon <= 0 || line.charCodeAt(0) === 32 || line.charCodeAt(0) === 9) {
      throw new Http1ParseError("malformed header line");
    }
    const name = line.slice(0, colon);
    const value = trimOws(line, colon + 1);
    try {
      headers.append(name, value);
    } catch {
      throw new Http1ParseError(`invalid header ${JSON.stringify(name)}`);
    }
    if (name.length === 14 && name.toLowerCase() === "content-length") {
      contentLength = mergeContentLength(contentLength, value);
    } else if (name.length === 17 && name.toLowerCase() === "transfer-encoding") {
      transferEncoding = transferEncoding ? `${transferEncoding}, ${value}` : value;
    } else if (name.length === 10 && name.toLowerCase() === "connection") {
      connection = connection ? `${connection}, ${value}` : value.toLowerCase();
    }
  }
  const hasTransferEncoding = transferEncoding.length > 0;
  // RFC 9112 6.3: Transfer-Encoding overrides Content-Length, which must not be forwarded.
  if (hasTransferEncoding && contentLength !== -1) headers.delete("content-length");
  const chunked = hasTransferEncoding && lastToken(transferEncoding) === "chunked";
  const closeRequested = hasToken(connection, "close");
  const keepAlive = !closeRequested && (!http10 || hasToken(connection, "keep-alive")) &&
    !(hasTransferEncoding && contentLength !== -1);
  return {
    status,
    statusText: match[3] ?? "",
    headers,
    contentLength: hasTransferEncoding ? -1 : contentLength,
    chunked,
    hasTransferEncoding,
    keepAlive,
  };
}

/**
 * How the body after `head` is delimited (RFC 9112 section 6.3).
 *
 * @example
 * ```ts
 * import { bodyFraming, parseResponseHead } from "./http1_parser.ts";
 * const bytes = new TextEncoder().encode("HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n");
 * const parsed = parseResponseHead(bytes, 0, bytes.length, 65536, 0)!;
 * console.assert(bodyFraming(parsed.head, "HEAD") === "none");
 * ```
 */
export function bodyFraming(head: ResponseHead, requestMethod: string): BodyFraming {
  if (requestMethod === "HEAD" || head.status === 204 || head.status === 304) return "none";
  if (head.status < 200) return "none";
  if (head.chunked) return "chunked";
  if (head.hasTransferEncoding) return "until-close";
  if (head.contentLength !== -1) return "content-length";
  return "until-close";
}

function stripCr(line: string): string {
  return line.charCodeAt(line.length - 1) === 13 ? line.slice(0, -1) : line;
}

/** Trims spaces and tabs (not other whitespace) from `line.slice(from)`. */
function trimOws(line: string, from: number): string {
  let first = from;
  let last = line.length;
  while (first < last && isOws(line.charCodeAt(first))) first++;
  while (last > first && isOws(line.charCodeAt(last - 1))) last--;
  return line.slice(first, last);
}

function isOws(code: number): boolean {
  return code === 32 || code === 9;
}

function mergeContentLength(previous: number, value: string): number {
  let result = previous;
  for (const part of value.split(",")) {
    const digits = part.trim();
    if (!DIGITS.test(digits)) throw new Http1ParseError("invalid content-length");
    const length = Number(digits);
    if (result !== -1 && result !== length) throw new Http1ParseError("conflicting content-length");
    result = length;
  }
  return result;
}

function lastToken(list: string): string {
  return list.slice(list.lastIndexOf(",") + 1).trim().toLowerCase();
}

function hasToken(list: string, token: string): boolean {
  if (list.length === 0) return false;
  return list.split(",").some((part) => part.trim() === token);
}

/** States of {@link ChunkedDecoder}: where the next byte belongs. */
const ChunkState = { Size: 0, Data: 1, DataEnd: 2, Trailers: 3, Done: 4 } as const;

const MAX_CHUNK_SIZE_LINE = 4096;
const MAX_CHUNK_SIZE_DIGITS = 13;

/**
 * Incremental decoder for the chunked transfer coding. Feed it byte ranges as
 * they arrive; it reports the payload as views into the given buffer (copy them
 * before the buffer is reused) and skips chunk extensions and trailers.
 *
 * @example
 * ```ts
 * import { ChunkedDecoder } from "./http1_parser.ts";
 * const bytes = new TextEncoder().encode("3\r\nabc\r\n0\r\n\r\n");
 * const parts: Uint8Array[] = [];
 * const decoder = new ChunkedDecoder(65536);
 * decoder.decode(bytes, 0, bytes.length, (part) => parts.push(part));
 * console.assert(decoder.done && parts.length === 1);
 * ```
 */
export class ChunkedDecoder {
  #state: number = ChunkState.Size;
  #remaining = 0;
  #trailerBytes = 0;

  constructor(private readonly maxTrailerSize: number) {}

  /** True once the last chunk and the trailer section have been read. */
  get done(): boolean {
    return this.#state === ChunkState.Done;
  }

  /**
   * Decodes from `bytes[start, end)`, calling `onData` with each payload view.
   * Returns the index of the first byte not consumed (bytes after the end of
   * the body, or an incomplete line to be completed by the next read).
   */
  decode(
    bytes: Uint8Array,
    start: number,
    end: number,
    onData: (data: Uint8Array) => void,
  ): number {
    let at = start;
    // Every iteration consumes bytes or returns; at most one per byte in range.
    while (at < end && this.#state !== ChunkState.Done) {
      if (this.#state === ChunkState.Data) {
        const take = Math.min(this.#remaining, end - at);
        onData(bytes.subarray(at, at + take));
        at += take;
        this.#remaining -= take;
        if (this.#remaining === 0) this.#state = ChunkState.DataEnd;
        continue;
      }
      const lineEnd = bytes.indexOf(LF, at);
      if (lineEnd === -1 || lineEnd >= end) {
        this.#checkPartialLine(end - at);
        return at;
      }
      this.#consumeLine(bytes, at, lineEnd);
      at = lineEnd + 1;
    }
    return at;
  }

  #checkPartialLine(length: number): void {
    const limit = this.#state === ChunkState.Trailers
      ? this.maxTrailerSize - this.#trailerBytes
      : MAX_CHUNK_SIZE_LINE;
    if (length > limit) throw new Http1ParseError("chunked line too long");
  }

  #consumeLine(bytes: Uint8Array, from: number, lineEnd: number): void {
    const contentEnd = lineEnd > from && bytes[lineEnd - 1] === CR ? lineEnd - 1 : lineEnd;
    if (this.#state === ChunkState.DataEnd) {
      if (contentEnd !== from) throw new Http1ParseError("missing CRLF after chunk data");
      this.#state = ChunkState.Size;
    } else if (this.#state === ChunkState.Size) {
      if (lineEnd - from > MAX_CHUNK_SIZE_LINE) throw new Http1ParseError("chunk size too long");
      this.#remaining = parseChunkSize(bytes, from, contentEnd);
      this.#state = this.#remaining === 0 ? ChunkState.Trailers : ChunkState.Data;
    } else {
      this.#trailerBytes += lineEnd + 1 - from;
      if (this.#trailerBytes > this.maxTrailerSize) throw new Http1ParseError("trailers too long");
      if (contentEnd === from) this.#state = ChunkState.Done;
    }
  }
}

/** Parses the hexadecimal size at the start of a chunk-size line (extensions ignored). */
function parseChunkSize(bytes: Uint8Array, from: number, to: number): number {
  let size = 0;
  let at = from;
  for (; at < to && at - from <= MAX_CHUNK_SIZE_DIGITS; at++) {
    const digit = hexValue(bytes[at]);
    if (digit === -1) break;
    size = size * 16 + digit;
  }
  const digits = at - from;
  if (digits === 0 || digits > MAX_CHUNK_SIZE_DIGITS) {
    throw new Http1ParseError("invalid chunk size");
  }
  if (at < to && bytes[at] !== 59 && !isOws(bytes[at])) {
    throw new Http1ParseError("invalid chunk size");
  }
  return size;
}

function hexValue(byte: number): number {
  if (byte >= 48 && byte <= 57) return byte - 48;
  const lower = byte | 32;
  if (lower >= 97 && lower <= 102) return lower - 87;
  return -1;
}
