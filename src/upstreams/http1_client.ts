/**
 * A pooled keep-alive HTTP/1.1 client over `Deno.connect` (and TLS on top of
 * it for https targets), implementing {@link UpstreamClient}. It exists
 * because `fetch()` costs several times more CPU per proxied request; see
 * `docs/upstream-client.md` for the measurements.
 *
 * @module
 */

import {
  type UpstreamClient,
  UpstreamError,
  type UpstreamErrorKind,
  type UpstreamRequest,
} from "./client.ts";
import {
  type BodyFraming,
  bodyFraming,
  ChunkedDecoder,
  Http1ParseError,
  parseResponseHead,
  type ResponseHead,
} from "./http1_parser.ts";
import { concat } from "../util/concat.ts";
import { IoFence } from "./io_fence.ts";

/** Tuning of {@link createHttp1Client}; every field has a default. */
export interface Http1ClientOptions {
  /** Idle connections kept per origin (scheme, host, port). Default 128. */
  maxIdlePerOrigin?: number;
  /** Milliseconds an idle connection is kept before it is closed. Default 4000. */
  idleTimeout?: number;
  /** Largest accepted response head (status line and headers) in bytes. Default 65536. */
  maxHeaderSize?: number;
  /** Extra PEM root certificates trusted for https targets. */
  caCerts?: string[];
}

/**
 * Creates a pooled keep-alive HTTP/1.1 {@link UpstreamClient}.
 *
 * @example
 * ```ts
 * import { createHttp1Client } from "./http1_client.ts";
 * const server = Deno.serve({ hostname: "127.0.0.1", port: 0, onListen() {} }, () => new Response("hi"));
 * const client = createHttp1Client();
 * const response = await client.request({
 *   url: new URL(`http://127.0.0.1:${server.addr.port}/`),
 *   method: "GET",
 *   headers: new Headers(),
 *   body: null,
 *   connectTimeout: 1000,
 *   responseTimeout: 5000,
 * });
 * console.assert(await response.text() === "hi");
 * client.close();
 * await server.shutdown();
 * ```
 */
export function createHttp1Client(options: Http1ClientOptions = {}): UpstreamClient {
  return new Http1Client(options);
}

const IDEMPOTENT_METHODS = new Set(["GET", "HEAD", "OPTIONS", "TRACE", "PUT", "DELETE"]);
const METHODS_WITH_BODY = new Set(["POST", "PUT", "PATCH"]);
const METHOD_TOKEN = /^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$/;
const NON_ASCII = /[\u0080-\uffff]/;
const MAX_BUFFERED_BODY = 64 * 1024;
const INITIAL_BUFFER_SIZE = 32 * 1024;
const MAX_INTERIM_RESPONSES = 16;
const DEADLINE_TICK = 50;
const DIRECT_READ_SIZE = 64 * 1024;
const LAST_CHUNK = new TextEncoder().encode("0\r\n\r\n");
const encoder = new TextEncoder();

/** The request line, headers and framing bytes, and a small body sent with them. */
interface PreparedRequest {
  method: string;
  message: Uint8Array;
  /** A body streamed after the head; null when the body is in `message` or absent. */
  stream: ReadableStream<Uint8Array> | null;
  /** Declared length of `stream`, or -1 for chunked. */
  streamLength: number;
  /** The caller asked for `connection: close`. */
  closeAfter: boolean;
}

class Http1Client implements UpstreamClient {
  readonly #pool: ConnectionPool;
  readonly #deadlines = new ResponseDeadlines();
  readonly #maxHeaderSize: number;
  readonly #caCerts: string[] | undefined;

  constructor(options: Http1ClientOptions) {
    this.#pool = new ConnectionPool(options.maxIdlePerOrigin ?? 128, options.idleTimeout ?? 4000);
    this.#maxHeaderSize = options.maxHeaderSize ?? 64 * 1024;
    this.#caCerts = options.caCerts;
  }

  async request(request: UpstreamRequest): Promise<Response> {
    const { url, method, signal } = request;
    if (!METHOD_TOKEN.test(method)) throw new TypeError(`invalid method ${JSON.stringify(method)}`);
    if (url.protocol !== "http:" && url.protocol !== "https:") {
      throw new UpstreamError("connect", `unsupported protocol ${url.protocol}`, false);
    }
    if (signal?.aborted) throw new UpstreamError("aborted", "request aborted", false);
    const prepared = await prepareRequest(request);
    const retriable = prepared.stream === null && IDEMPOTENT_METHODS.has(method);
    try {
      return await this.#exchange(request, prepared, true);
    } catch (error) {
      if (!(error instanceof StaleConnectionError)) throw error;
      if (!retriable) throw error.upstreamError;
      return await this.#exchange(request, prepared, false);
    }
  }

  close(): void {
    this.#pool.close();
  }

  /** One attempt: a connection (pooled if allowed), the request out, the response head in. */
  async #exchange(
    request: UpstreamRequest,
    prepared: PreparedRequest,
    usePool: boolean,
  ): Promise<Response> {
    const origin = `${request.url.protocol}//${request.url.host}`;
    const connection = (usePool ? await this.#pool.acquire(origin) : undefined) ??
      await this.#connect(request, origin);
    const exchange = new Exchange(connection, this.#pool, this.#deadlines, request, prepared);
    return await exchange.run(this.#maxHeaderSize);
  }

  async #connect(request: UpstreamRequest, origin: string): Promise<Http1Connection> {
    const { url, signal } = request;
    const hostname = url.hostname.startsWith("[") ? url.hostname.slice(1, -1) : url.hostname;
    const https = url.protocol === "https:";
    const port = url.port ? Number(url.port) : https ? 443 : 80;
    const abort = new AbortController();
    let timedOut = false;
    const timer = setTimeout(() => {
      timedOut = true;
      abort.abort();
    }, request.connectTimeout);
    const onAbort = () => abort.abort();
    signal?.addEventListener("abort", onAbort, { once: true });
    let conn: Deno.Conn | undefined;
    try {
      const tcp = await Deno.connect({ hostname, port, signal: abort.signal });
      tcp.setNoDelay(true);
      conn = tcp;
      if (https) conn = await handshakeTls(tcp, hostname, this.#caCerts, abort.signal);
    } catch (error) {
      if (conn !== undefined) closeQuietly(conn);
      if (signal?.aborted) throw new UpstreamError("aborted", "request aborted", false);
      if (timedOut) {
        throw new UpstreamError("connect-timeout", `connecting to ${origin} timed out`, false);
      }
      throw new UpstreamError(
        "connect",
        `cannot connect to ${origin}: ${messageOf(error)}`,
        false,
        {
          cause: error,
        },
      );
    } finally {
      clearTimeout(timer);
      signal?.removeEventListener("abort", onAbort);
    }
    return new Http1Connection(conn, origin);
  }
}

/** Starts TLS on a TCP connection and completes the handshake, unless `signal` aborts first. */
async function handshakeTls(
  tcp: Deno.TcpConn,
  hostname: string,
  caCerts: string[] | undefined,
  signal: AbortSignal,
): Promise<Deno.TlsConn> {
  const tls = await Deno.startTls(tcp, { hostname, caCerts });
  const onAbort = () => tls.close();
  signal.addEventListener("abort", onAbort, { once: true });
  try {
    await tls.handshake();
    return tls;
  } catch (error) {
    if (!signal.aborted) tls.close();
    throw error;
  } finally {
    signal.removeEventListener("abort", onAbort);
  }
}

/**
 * Serialises the head and decides how the body travels: absent, buffered into
 * the same write as the head (small bodies of known length, which also makes
 * the request replayable), or streamed after it.
 */
async function prepareRequest(request: UpstreamRequest): Promise<PreparedRequest> {
  const { method, headers, body } = request;
  const closeAfter = hasCloseToken(headers.get("connection"));
  const declared = declaredLength(headers.get("content-length"));
  if (body === null) {
    const framing = METHODS_WITH_BODY.has(method) ? "content-length: 0\r\n" : "";
    const message = serializeHead(request, framing);
    return { method, message, stream: null, streamLength: -1, closeAfter };
  }
  if (declared !== -1 && declared <= MAX_BUFFERED_BODY) {
    const bytes = await readWholeBody(body, declared);
    const head = serializeHead(request, `content-length: ${declared}\r\n`);
    const message = new Uint8Array(head.length + bytes.length);
    message.set(head);
    message.set(bytes, head.length);
    return { method, message, stream: null, streamLength: -1, closeAfter };
  }
  const framing = declared === -1
    ? "transfer-encoding: chunked\r\n"
    : `content-length: ${declared}\r\n`;
  const message = serializeHead(request, framing);
  return { method, message, stream: body, streamLength: declared, closeAfter };
}

function declaredLength(value: string | null): number {
  if (value === null || !/^\d{1,15}$/.test(value)) return -1;
  return Number(value);
}

function hasCloseToken(value: string | null): boolean {
  return value !== null && value.toLowerCase().split(",").some((token) => token.trim() === "close");
}

/** Reads a whole small body whose length is declared, checking that it matches. */
async function readWholeBody(
  body: ReadableStream<Uint8Array>,
  length: number,
): Promise<Uint8Array> {
  const bytes = new Uint8Array(length);
  let filled = 0;
  const reader = body.getReader();
  try {
    // Each read adds at least one byte or ends the loop; bounded by `length`.
    for (;;) {
      const { done, value } = await reader.read();
      if (done) break;
      if (filled + value.length > length) throw new Error("longer than its content-length");
      bytes.set(value, filled);
      filled += value.length;
    }
  } catch (error) {
    await reader.cancel().catch(() => {});
    throw new UpstreamError("aborted", `request body failed: ${messageOf(error)}`, false, {
      cause: error,
    });
  }
  if (filled !== length) {
    throw new UpstreamError("aborted", "request body shorter than its content-length", false);
  }
  return bytes;
}

/** The request line and headers; `framing` holds content-length or transfer-encoding lines. */
function serializeHead(request: UpstreamRequest, framing: string): Uint8Array {
  const { url, headers } = request;
  let head = `${request.method} ${url.pathname}${url.search} HTTP/1.1\r\n`;
  if (!headers.has("host")) head += `host: ${url.host}\r\n`;
  for (const [name, value] of headers) {
    if (name === "content-length" || name === "transfer-encoding") continue;
    head += `${name}: ${value}\r\n`;
  }
  head += `${framing}\r\n`;
  return NON_ASCII.test(head) ? encodeLatin1(head) : encoder.encode(head);
}

/** Header values are byte strings: one byte per code unit, not UTF-8. */
function encodeLatin1(text: string): Uint8Array {
  const bytes = new Uint8Array(text.length);
  for (let i = 0; i < text.length; i++) bytes[i] = text.charCodeAt(i);
  return bytes;
}

/** A pooled connection failed before any response byte: the keep-alive race. */
class StaleConnectionError extends Error {
  constructor(readonly upstreamError: UpstreamError) {
    super(upstreamError.message);
  }
}

/** One request/response on one connection, from the first write to the last body byte. */
class Exchange {
  /** When the response head must have arrived (performance.now() time), once armed. */
  deadline = 0;
  #bodySent: boolean;
  #responseStarted = false;
  #finished = false;
  readonly #onAbort = () => this.connection.close("aborted");

  constructor(
    readonly connection: Http1Connection,
    readonly pool: ConnectionPool,
    readonly deadlines: ResponseDeadlines,
    readonly request: UpstreamRequest,
    readonly prepared: PreparedRequest,
  ) {
    this.#bodySent = prepared.stream === null;
  }

  async run(maxHeaderSize: number): Promise<Response> {
    this.request.signal?.addEventListener("abort", this.#onAbort, { once: true });
    try {
      await this.#send();
      const head = await this.#readHead(maxHeaderSize);
      return this.#respond(head, maxHeaderSize);
    } catch (error) {
      this.finish(false);
      if (error instanceof UpstreamError || error instanceof StaleConnectionError) throw error;
      throw asProtocolError(error);
    }
  }

  async #send(): Promise<void> {
    const { connection, prepared } = this;
    try {
      await connection.write(prepared.message);
    } catch (error) {
      const reason = connection.closeReason;
      if (reason !== null) throw new UpstreamError(reason, `request ${reason}`, false);
      const failure = new UpstreamError("connect", `sending failed: ${messageOf(error)}`, false, {
        cause: error,
      });
      if (connection.responses > 0) throw new StaleConnectionError(failure);
      throw failure;
    }
    if (prepared.stream === null) this.#armResponseTimer();
    else void this.#pumpBody(prepared.stream, prepared.streamLength);
  }

  #armResponseTimer(): void {
    const timeout = this.request.responseTimeout;
    if (this.#finished || this.#responseStarted || !(timeout > 0 && timeout < 2 ** 31)) return;
    this.deadline = performance.now() + timeout;
    this.deadlines.arm(this);
  }

  async #pumpBody(stream: ReadableStream<Uint8Array>, length: number): Promise<void> {
    const reader = stream.getReader();
    let sent = 0;
    // Ends with the stream, a failed write, or a close of the connection.
    for (;;) {
      let chunk: ReadableStreamReadResult<Uint8Array>;
      try {
        chunk = await reader.read();
      } catch {
        this.connection.close("aborted");
        return;
      }
      if (this.connection.closed) break;
      if (chunk.done) {
        if (length === -1 ? await this.#writeBodyPart(LAST_CHUNK) : sent === length) {
          this.#bodySent = true;
          this.#armResponseTimer();
          return;
        }
        this.connection.close("aborted");
        return;
      }
      sent += chunk.value.length;
      if (length !== -1 && sent > length) {
        this.connection.close("aborted");
        break;
      }
      const frame = length === -1 ? chunkFrame(chunk.value) : chunk.value;
      if (frame.length > 0 && !(await this.#writeBodyPart(frame))) break;
    }
    await reader.cancel().catch(() => {});
  }

  /** Writes body bytes; a failure is left to the response side, which sees the connection end. */
  /**
   * Writes part of a streamed request body. Until the response starts, an
   * upstream that does not take the bytes within the response timeout fails
   * the request (`response-timeout`) instead of holding it forever.
   */
  async #writeBodyPart(bytes: Uint8Array): Promise<boolean> {
    const timeout = this.request.responseTimeout;
    const guarded = !this.#responseStarted && timeout > 0 && timeout < 2 ** 31;
    if (guarded) {
      this.deadline = performance.now() + timeout;
      this.deadlines.arm(this);
    }
    const written = await this.#write(bytes);
    if (guarded) this.deadlines.disarm(this);
    return written;
  }

  async #write(bytes: Uint8Array): Promise<boolean> {
    try {
      await this.connection.write(bytes);
      return true;
    } catch {
      return false;
    }
  }

  async #readHead(maxHeaderSize: number): Promise<ResponseHead> {
    const { connection } = this;
    let searched = 0;
    let interim = 0;
    // Each pass reads at least one byte into a head bounded by maxHeaderSize, or parses one.
    for (;;) {
      if (connection.end > connection.start) {
        this.#responseStarted = true;
        const parsed = this.#parse(maxHeaderSize, searched);
        if (parsed !== null) {
          if (parsed.status >= 200) return parsed;
          if (parsed.status === 101 || ++interim > MAX_INTERIM_RESPONSES) {
            throw new UpstreamError("protocol", `unexpected ${parsed.status} response`, true);
          }
          searched = 0;
          continue;
        }
        searched = connection.end - connection.start;
      }
      await this.#fillHead();
    }
  }

  #parse(maxHeaderSize: number, searched: number): ResponseHead | null {
    const { connection } = this;
    try {
      const parsed = parseResponseHead(
        connection.buffer,
        connection.start,
        connection.end,
        maxHeaderSize,
        searched,
      );
      if (parsed === null) return null;
      connection.start = parsed.bodyStart;
      return parsed.head;
    } catch (error) {
      throw asProtocolError(error);
    }
  }

  async #fillHead(): Promise<void> {
    const { connection } = this;
    let cause: unknown = "connection closed";
    try {
      if (await connection.fill()) return;
    } catch (error) {
      cause = error;
    }
    const reason = connection.closeReason;
    if (reason !== null) throw new UpstreamError(reason, `request ${reason}`, true);
    const failure = new UpstreamError(
      "protocol",
      `upstream closed the connection before responding: ${messageOf(cause)}`,
      true,
      { cause },
    );
    if (connection.responses > 0 && !this.#responseStarted) throw new StaleConnectionError(failure);
    throw failure;
  }

  #respond(head: ResponseHead, maxHeaderSize: number): Response {
    this.deadlines.disarm(this);
    const framing = bodyFraming(head, this.prepared.method);
    const keepAlive = head.keepAlive && !this.prepared.closeAfter;
    const init = { status: head.status, statusText: head.statusText, headers: head.headers };
    const buffered = this.#bufferedBody(head, framing, keepAlive, maxHeaderSize);
    const body = buffered === undefined
      ? this.#streamedBody(head, framing, keepAlive, maxHeaderSize)
      : buffered;
    try {
      return new Response(body, init);
    } catch (error) {
      this.finish(false);
      throw asProtocolError(error);
    }
  }

  /** The whole body if it is already buffered (then the connection is released), else undefined. */
  #bufferedBody(
    head: ResponseHead,
    framing: BodyFraming,
    keepAlive: boolean,
    maxHeaderSize: number,
  ): Uint8Array<ArrayBuffer> | null | undefined {
    const { connection } = this;
    if (framing === "none" || (framing === "content-length" && head.contentLength === 0)) {
      this.finish(keepAlive);
      return null;
    }
    if (framing === "content-length") {
      const end = connection.start + head.contentLength;
      if (end > connection.end) return undefined;
      const bytes = connection.buffer.slice(connection.start, end);
      connection.start = end;
      this.finish(keepAlive);
      return bytes;
    }
    if (framing !== "chunked") return undefined;
    const decoder = new ChunkedDecoder(maxHeaderSize);
    const parts: Uint8Array<ArrayBuffer>[] = [];
    const next = decodeChunks(decoder, connection, parts);
    if (!decoder.done) return undefined;
    connection.start = next;
    this.finish(keepAlive);
    return parts.length === 1 ? parts[0] : concat(parts);
  }

  #streamedBody(
    head: ResponseHead,
    framing: BodyFraming,
    keepAlive: boolean,
    maxHeaderSize: number,
  ): ReadableStream<Uint8Array> {
    const reader = new BodyReader(this, framing, head.contentLength, keepAlive, maxHeaderSize);
    return new ReadableStream<Uint8Array>({
      pull: (controller) => reader.pull(controller),
      cancel: () => this.finish(false),
    });
  }

  /**
   * Ends the exchange once: the connection goes back to the pool if the
   * response allowed it and both bodies are complete, else it is closed.
   */
  finish(reusable: boolean): void {
    if (this.#finished) return;
    this.#finished = true;
    this.deadlines.disarm(this);
    this.request.signal?.removeEventListener("abort", this.#onAbort);
    const { connection } = this;
    if (reusable && this.#bodySent && connection.start === connection.end) {
      connection.responses++;
      this.pool.release(connection);
    } else {
      this.pool.discard(connection);
    }
  }

  /** Maps a failure while reading the response body. */
  bodyError(error: unknown): UpstreamError {
    if (error instanceof UpstreamError) return error;
    const reason = this.connection.closeReason;
    if (reason !== null) return new UpstreamError(reason, `request ${reason}`, true);
    if (error instanceof Http1ParseError) return asProtocolError(error);
    return new UpstreamError(
      "protocol",
      `upstream connection lost mid-body: ${messageOf(error)}`,
      true,
      { cause: error },
    );
  }
}

/**
 * Response deadlines of all exchanges of one client, checked by one coarse
 * interval timer (cheaper than a timer per request). A deadline fires up to
 * {@link DEADLINE_TICK} ms late.
 */
class ResponseDeadlines {
  readonly #armed = new Set<Exchange>();
  #timer: ReturnType<typeof setInterval> | undefined;

  arm(exchange: Exchange): void {
    this.#armed.add(exchange);
    if (this.#timer !== undefined) return;
    const timer = setInterval(() => this.#expire(), DEADLINE_TICK);
    Deno.unrefTimer(timer);
    this.#timer = timer;
  }

  disarm(exchange: Exchange): void {
    if (!this.#armed.delete(exchange) || this.#armed.size > 0) return;
    clearInterval(this.#timer);
    this.#timer = undefined;
  }

  #expire(): void {
    const now = performance.now();
    for (const exchange of this.#armed) {
      if (exchange.deadline > now) continue;
      this.disarm(exchange);
      exchange.connection.close("response-timeout");
    }
  }
}

/** Pulls response body bytes from the connection into a ReadableStream. */
class BodyReader {
  #remaining: number;
  #decoder: ChunkedDecoder | null;

  constructor(
    readonly exchange: Exchange,
    readonly framing: BodyFraming,
    contentLength: number,
    readonly keepAlive: boolean,
    maxHeaderSize: number,
  ) {
    this.#remaining = contentLength;
    this.#decoder = framing === "chunked" ? new ChunkedDecoder(maxHeaderSize) : null;
  }

  async pull(controller: ReadableStreamDefaultController<Uint8Array>): Promise<void> {
    const { connection } = this.exchange;
    try {
      // Each pass reads at least one byte; the decoder bounds passes without output.
      for (;;) {
        if (this.#emitBuffered(controller)) return;
        if (this.#decoder === null) {
          if (await this.#readDirect(controller)) return;
          break;
        }
        if (!(await connection.fill())) break;
      }
    } catch (error) {
      this.exchange.finish(false);
      controller.error(this.exchange.bodyError(error));
      return;
    }
    this.exchange.finish(false);
    if (this.framing === "until-close") controller.close();
    else controller.error(this.exchange.bodyError(new Error("connection closed")));
  }

  /**
   * Reads the next unframed part of the body straight into a new chunk (no
   * copy through the connection buffer); false at end of stream.
   */
  async #readDirect(controller: ReadableStreamDefaultController<Uint8Array>): Promise<boolean> {
    const size = this.framing === "content-length"
      ? Math.min(this.#remaining, DIRECT_READ_SIZE)
      : DIRECT_READ_SIZE;
    const chunk = new Uint8Array(size);
    const count = await this.exchange.connection.readInto(chunk);
    if (count === null) return false;
    controller.enqueue(count < size / 4 ? chunk.slice(0, count) : chunk.subarray(0, count));
    this.#remaining -= count;
    if (this.framing === "content-length" && this.#remaining === 0) this.#end(controller);
    return true;
  }

  /** Emits buffered body bytes; true if it enqueued something or ended the body. */
  #emitBuffered(controller: ReadableStreamDefaultController<Uint8Array>): boolean {
    const { connection } = this.exchange;
    if (this.#decoder !== null) {
      const parts: Uint8Array<ArrayBuffer>[] = [];
      connection.start = decodeChunks(this.#decoder, connection, parts);
      if (parts.length > 0) controller.enqueue(parts.length === 1 ? parts[0] : concat(parts));
      if (this.#decoder.done) this.#end(controller);
      return parts.length > 0 || this.#decoder.done;
    }
    const available = connection.end - connection.start;
    if (available === 0) return false;
    const take = this.framing === "content-length"
      ? Math.min(available, this.#remaining)
      : available;
    controller.enqueue(connection.buffer.slice(connection.start, connection.start + take));
    connection.start += take;
    this.#remaining -= take;
    if (this.framing === "content-length" && this.#remaining === 0) this.#end(controller);
    return true;
  }

  #end(controller: ReadableStreamDefaultController<Uint8Array>): void {
    this.exchange.finish(this.keepAlive);
    controller.close();
  }
}

/** Decodes buffered chunked bytes into `parts` (copies); returns the new buffer start. */
function decodeChunks(
  decoder: ChunkedDecoder,
  connection: Http1Connection,
  parts: Uint8Array<ArrayBuffer>[],
): number {
  return decoder.decode(
    connection.buffer,
    connection.start,
    connection.end,
    (data) => parts.push(data.slice() as Uint8Array<ArrayBuffer>),
  );
}

/** One chunk of the chunked coding: size line, data, CRLF, in one buffer for one write. */
function chunkFrame(data: Uint8Array): Uint8Array {
  const sizeLine = encoder.encode(`${data.length.toString(16)}\r\n`);
  const frame = new Uint8Array(sizeLine.length + data.length + 2);
  frame.set(sizeLine);
  frame.set(data, sizeLine.length);
  frame[frame.length - 2] = 13;
  frame[frame.length - 1] = 10;
  return frame;
}

function asProtocolError(error: unknown): UpstreamError {
  return new UpstreamError("protocol", `invalid upstream response: ${messageOf(error)}`, true, {
    cause: error,
  });
}

/** Closes a connection that may already be closed or taken over by TLS. */
function closeQuietly(conn: Deno.Conn): void {
  try {
    conn.close();
  } catch {
    // Already closed.
  }
}

function messageOf(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}

/**
 * A socket with its read buffer. Bytes in `buffer[start, end)` are received
 * and not yet consumed. At most one read is outstanding; while the connection
 * is idle that read watches for the server closing it.
 */
class Http1Connection {
  buffer: Uint8Array<ArrayBuffer> = new Uint8Array(INITIAL_BUFFER_SIZE);
  start = 0;
  end = 0;
  /** Responses completed on this connection; above 0 it came from the pool. */
  responses = 0;
  idle = false;
  idleSince = 0;
  closed = false;
  /** Why this client closed the connection, for reporting the failure it causes. */
  closeReason: UpstreamErrorKind | null = null;
  /** Fence crossings started before it went idle ({@link IoFence.started}). */
  fenceMark = 0;
  #pendingRead: Promise<boolean> | null = null;

  constructor(readonly conn: Deno.Conn, readonly origin: string) {}

  /** Reads more bytes into the buffer; false at end of stream. */
  fill(): Promise<boolean> {
    const pending = this.#pendingRead;
    if (pending === null) return this.#read();
    this.#pendingRead = null;
    return pending;
  }

  /** Starts the read that the next exchange will use, calling `onUnusable` if it ends while idle. */
  watchWhileIdle(onUnusable: () => void): void {
    const read = this.#read();
    this.#pendingRead = read;
    const check = () => {
      if (this.idle) onUnusable();
    };
    read.then(check, check);
  }

  /** Reads into `target`, bypassing the buffer; only when the buffer is empty and no read is pending. */
  readInto(target: Uint8Array): Promise<number | null> {
    return this.conn.read(target);
  }

  async write(bytes: Uint8Array): Promise<void> {
    let written = await this.conn.write(bytes);
    // Each write moves at least one byte; bounded by bytes.length.
    while (written < bytes.length) written += await this.conn.write(bytes.subarray(written));
  }

  close(reason: UpstreamErrorKind | null = null): void {
    if (this.closed) return;
    this.closed = true;
    this.closeReason = reason;
    closeQuietly(this.conn);
  }

  async #read(): Promise<boolean> {
    this.#makeRoom();
    const count = await this.conn.read(this.buffer.subarray(this.end));
    if (count === null) return false;
    this.end += count;
    return true;
  }

  #makeRoom(): void {
    if (this.start === this.end) {
      this.start = 0;
      this.end = 0;
    }
    if (this.end < this.buffer.length) return;
    if (this.start > 0) {
      this.buffer.copyWithin(0, this.start, this.end);
      this.end -= this.start;
      this.start = 0;
      return;
    }
    const larger = new Uint8Array(this.buffer.length * 2);
    larger.set(this.buffer);
    this.buffer = larger;
  }
}

/**
 * Idle connections per origin, most recently used first, closed after
 * `idleTimeout`. An idle connection that receives anything is discarded; so
 * that bytes the runtime has not reported yet count too, a connection is
 * handed out only after an {@link IoFence} crossing that started after it went
 * idle.
 */
class ConnectionPool {
  readonly #idle = new Map<string, Http1Connection[]>();
  readonly #fence = new IoFence();
  #idleCount = 0;
  #sweepTimer: ReturnType<typeof setInterval> | undefined;
  #closed = false;

  constructor(readonly maxIdlePerOrigin: number, readonly idleTimeout: number) {}

  /**
   * The most recently used idle connection to `origin` that the fence
   * crossing covers, still open and not expired; expired ones met on the way
   * are closed. Undefined when there is none, or the fence failed.
   */
  async acquire(origin: string): Promise<Http1Connection | undefined> {
    const stack = this.#idle.get(origin);
    if (stack === undefined || stack.length === 0) return undefined;
    let crossing: number;
    try {
      // The newest idle connection went idle last: a crossing after it covers them all.
      crossing = await this.#fence.pass(stack[stack.length - 1].fenceMark);
    } catch {
      return undefined;
    }
    const now = performance.now();
    // Visits each idle connection at most once, newest first.
    for (let i = stack.length - 1; i >= 0; i--) {
      const connection = stack[i];
      if (connection.fenceMark >= crossing) continue;
      stack.splice(i, 1);
      this.#idleCount--;
      connection.idle = false;
      if (!connection.closed && now - connection.idleSince < this.idleTimeout) return connection;
      connection.close();
    }
    return undefined;
  }

  release(connection: Http1Connection): void {
    const stack = this.#idle.get(connection.origin) ?? [];
    if (this.#closed || connection.closed || stack.length >= this.maxIdlePerOrigin) {
      connection.close();
      return;
    }
    if (stack.length === 0) this.#idle.set(connection.origin, stack);
    connection.idle = true;
    connection.idleSince = performance.now();
    connection.fenceMark = this.#fence.started;
    stack.push(connection);
    this.#idleCount++;
    connection.watchWhileIdle(() => this.discard(connection));
    this.#startSweeping();
  }

  /** Closes a connection, removing it from the idle stack if it is there. */
  discard(connection: Http1Connection): void {
    connection.close();
    if (!connection.idle) return;
    connection.idle = false;
    const stack = this.#idle.get(connection.origin);
    const index = stack?.indexOf(connection) ?? -1;
    if (index === -1) return;
    stack!.splice(index, 1);
    this.#idleCount--;
  }

  close(): void {
    this.#closed = true;
    this.#fence.close();
    for (const stack of this.#idle.values()) {
      for (const connection of stack) {
        connection.idle = false;
        connection.close();
      }
    }
    this.#idle.clear();
    this.#idleCount = 0;
    this.#stopSweeping();
  }

  #startSweeping(): void {
    if (this.#sweepTimer !== undefined) return;
    const interval = Math.max(100, Math.min(this.idleTimeout / 2, 1000));
    const timer = setInterval(() => this.#sweep(), interval);
    Deno.unrefTimer(timer);
    this.#sweepTimer = timer;
  }

  #stopSweeping(): void {
    clearInterval(this.#sweepTimer);
    this.#sweepTimer = undefined;
  }

  /** Closes connections idle for longer than the timeout; they sit at the bottom of each stack. */
  #sweep(): void {
    const oldest = performance.now() - this.idleTimeout;
    for (const stack of this.#idle.values()) {
      let expired = 0;
      while (expired < stack.length && stack[expired].idleSince <= oldest) expired++;
      for (const connection of stack.splice(0, expired)) {
        connection.idle = false;
        connection.close();
      }
      this.#idleCount -= expired;
    }
    if (this.#idleCount === 0) this.#stopSweeping();
  }
}
