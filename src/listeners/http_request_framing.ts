/**
 * Where HTTP/1.1 requests begin and end in a client's byte stream, seen
 * from outside the server: enough of RFC 9112 to tell whether the bytes
 * arriving now belong to a request head, a request body (`Content-Length`
 * or chunked) or nothing yet. The HTTP guard uses it to run the right
 * deadline; the bytes themselves go to `Deno.serve` unchanged, which parses
 * (and rejects) them on its own.
 *
 * @module
 */

/**
 * - `between`: no request is being received (the next byte starts a head);
 * - `head`: a request line and header fields are arriving;
 * - `body`: the head declared a body that has not all arrived;
 * - `opaque`: no longer HTTP/1.1 as far as this framer can tell (an HTTP/2
 *   preface, or framing it does not follow, which the server refuses).
 */
export type RequestPhase = "between" | "head" | "body" | "opaque";

/** Most bytes of one request head (request line and header fields). */
export const MAX_HEAD_BYTES = 64 * 1024;
/** Most bytes of one chunk-size or trailer line. */
const MAX_LINE_BYTES = 4096;
const LF = 10;
const CR = 13;
const latin1 = new TextDecoder("latin1");

/** A request head longer than {@link MAX_HEAD_BYTES}. */
export class HeadTooLargeError extends Error {}

/**
 * Follows the requests of one connection, fed its bytes in order.
 *
 * @example
 * ```ts
 * import { Http1RequestFramer } from "./http_request_framing.ts";
 * const framer = new Http1RequestFramer();
 * const bytes = (text: string) => new TextEncoder().encode(text);
 * framer.feed(bytes("POST /upload HTTP/1.1\r\nHost: a\r\n"));
 * framer.phase; // "head"
 * framer.feed(bytes("Content-Length: 5\r\n\r\nhel"));
 * framer.phase; // "body"
 * framer.feed(bytes("lo"));
 * framer.phase; // "between"
 * ```
 */
export class Http1RequestFramer {
  #phase: RequestPhase = "between";
  #heads = 0;
  #head = new Uint8Array(1024);
  #headLength = 0;
  /** Bytes of the current head line so far, and whether they are just a CR. */
  #lineLength = 0;
  #lineIsCr = false;
  /** Non-empty lines of the current head. */
  #headLines = 0;
  /** Body bytes left: of a `Content-Length` body, or of the current chunk. */
  #remaining = 0;
  /** Where a chunked body is; undefined for a `Content-Length` body. */
  #chunked?: "size" | "data" | "data-end" | "trailer";
  #line = "";

  /** What the bytes fed so far leave the connection in. */
  get phase(): RequestPhase {
    return this.#phase;
  }

  /** How many request heads have begun. */
  get heads(): number {
    return this.#heads;
  }

  /** Stops following: every later byte is opaque (HTTP/2 negotiated by ALPN, an upgrade). */
  toOpaque(): void {
    this.#phase = "opaque";
  }

  /** Follows `chunk`. Throws {@link HeadTooLargeError} for a head over {@link MAX_HEAD_BYTES}. */
  feed(chunk: Uint8Array): void {
    let at = 0;
    while (at < chunk.length) {
      switch (this.#phase) {
        case "opaque":
          return;
        case "between":
          this.#phase = "head";
          this.#heads++;
          this.#headLength = this.#headLines = this.#lineLength = 0;
          break;
        case "head":
          at = this.#feedHead(chunk, at);
          break;
        case "body":
          at = this.#chunked === undefined
            ? this.#feedLength(chunk, at)
            : this.#feedChunked(chunk, at);
          break;
      }
    }
  }

  #feedHead(chunk: Uint8Array, from: number): number {
    const lf = chunk.indexOf(LF, from);
    const end = lf < 0 ? chunk.length : lf;
    this.#keep(chunk.subarray(from, lf < 0 ? end : lf + 1));
    if (end > from) {
      this.#lineIsCr = this.#lineLength === 0 && end - from === 1 && chunk[from] === CR;
      this.#lineLength += end - from;
    }
    if (lf < 0) return chunk.length;
    const empty = this.#lineLength === 0 || (this.#lineLength === 1 && this.#lineIsCr);
    this.#lineLength = 0;
    if (!empty) this.#headLines++;
    // Empty lines before the request line are allowed (RFC 9112 §2.2); one after the fields ends the head.
    else if (this.#headLines > 0) this.#endHead();
    return lf + 1;
  }

  #keep(bytes: Uint8Array): void {
    const needed = this.#headLength + bytes.length;
    if (needed > MAX_HEAD_BYTES) {
      throw new HeadTooLargeError(`request head over ${MAX_HEAD_BYTES} bytes`);
    }
    if (needed > this.#head.length) {
      const grown = new Uint8Array(
        Math.min(MAX_HEAD_BYTES, Math.max(needed, this.#head.length * 2)),
      );
      grown.set(this.#head.subarray(0, this.#headLength));
      this.#head = grown;
    }
    this.#head.set(bytes, this.#headLength);
    this.#headLength = needed;
  }

  /** Reads the framing the head declares: RFC 9112 §6.3, transfer coding first. */
  #endHead(): void {
    const lines = latin1.decode(this.#head.subarray(0, this.#headLength)).split("\n");
    const requestLine = lines.find((line) => line.trim() !== "") ?? "";
    if (requestLine.startsWith("PRI * HTTP/2.0")) return this.toOpaque();
    let lengths: string[] = [];
    let codings: string[] = [];
    for (const line of lines) {
      const colon = line.indexOf(":");
      if (colon <= 0) continue;
      const name = line.slice(0, colon).trim().toLowerCase();
      const value = line.slice(colon + 1).trim();
      if (name === "content-length") lengths = lengths.concat(value.split(","));
      else if (name === "transfer-encoding") codings = codings.concat(value.split(","));
    }
    if (codings.length > 0) {
      if (codings.at(-1)!.trim().toLowerCase() !== "chunked") return this.toOpaque();
      this.#chunked = "size";
      this.#line = "";
      this.#phase = "body";
      return;
    }
    this.#chunked = undefined;
    if (lengths.length === 0) {
      this.#phase = "between";
      return;
    }
    const distinct = new Set(lengths.map((length) => length.trim()));
    const [length] = distinct;
    if (distinct.size !== 1 || !/^\d{1,15}$/.test(length)) return this.toOpaque();
    this.#remaining = Number(length);
    this.#phase = this.#remaining > 0 ? "body" : "between";
  }

  #feedLength(chunk: Uint8Array, from: number): number {
    const taken = Math.min(this.#remaining, chunk.length - from);
    this.#remaining -= taken;
    if (this.#remaining === 0) this.#phase = "between";
    return from + taken;
  }

  #feedChunked(chunk: Uint8Array, from: number): number {
    if (this.#chunked === "data") {
      const taken = Math.min(this.#remaining, chunk.length - from);
      this.#remaining -= taken;
      if (this.#remaining === 0) this.#chunked = "data-end";
      return from + taken;
    }
    const lf = chunk.indexOf(LF, from);
    this.#line += latin1.decode(chunk.subarray(from, lf < 0 ? chunk.length : lf));
    if (this.#line.length > MAX_LINE_BYTES) {
      this.toOpaque();
      return chunk.length;
    }
    if (lf < 0) return chunk.length;
    const line = this.#line.replace(/\r$/, "");
    this.#line = "";
    if (this.#chunked === "data-end") {
      this.#chunked = "size";
    } else if (this.#chunked === "size") {
      const size = line.split(";")[0].trim();
      if (!/^[0-9a-fA-F]{1,12}$/.test(size)) this.toOpaque();
      else if ((this.#remaining = parseInt(size, 16)) === 0) this.#chunked = "trailer";
      else this.#chunked = "data";
    } else if (line === "") {
      this.#phase = "between";
    }
    return lf + 1;
  }
}
