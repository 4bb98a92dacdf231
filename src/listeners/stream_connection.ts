/**
 * What the TCP and Unix-socket listeners share: {@link StreamServer}, the
 * accept loop that outlives accept errors such as EMFILE ("Too many open
 * files"); {@link admitConnection}, which asks the connection manager to take
 * a new socket; {@link serveFramedConnection}, which serves one socket in
 * bus mode: frames to the bus, replies framed back; and {@link FrameWriter},
 * the bounded, serialised write queue of those replies (and of the frames to
 * language workers).
 *
 * @module
 */

import { getLogger } from "@logtape/logtape";
import type { Bus } from "../bus/bus.ts";
import type { Connection, ConnectionHandle, ConnectionLimits } from "../connections/connection.ts";
import type { ConnectionManager } from "../connections/manager.ts";
import type { TemplateValues } from "../bus/topic_template.ts";
import { type FrameCodec, FrameError } from "./framing.ts";
import { concat } from "../util/concat.ts";
import { eventWarnings } from "../observability/rate_limited_log.ts";

/** What a socket listener needs from the rest of the gateway. */
export interface ListenerServices {
  bus: Pick<Bus, "publish">;
  connections: Pick<ConnectionManager, "admit">;
}

/** How a listener serves its connections in bus mode. */
export interface FramedServing {
  /** Listener name, as in the config. */
  listener: string;
  protocol: "tcp" | "unix";
  codec: FrameCodec;
  /**
   * The compiled topic template: `{listener}`, `{connectionId}`, `{deviceId}`
   * (`-` until one is bound) and `{remoteAddress}` (`local` on Unix sockets).
   */
  topic: (values: TemplateValues) => string;
  /** `device-id`: the first frame is the device id, bound to the connection and not published. */
  handshake: "none" | "device-id";
  limits: ConnectionLimits;
}

/** The remote end of a socket. Unix-socket peers are all `local`. */
export interface Peer {
  address: string;
  port?: number;
  /** `address:port`, for logs. */
  label: string;
}

/** Bytes of replies waiting to be written before a connection is closed as a slow consumer. */
export const SEND_QUEUE_LIMIT = 1024 * 1024;
/**
 * Reads go into slabs, one after the other, while a quarter of the slab is left. Slabs start
 * small, so an idle connection costs little, and double (up to the largest) while reads fill them.
 */
const SMALLEST_READ_SLAB = 1024;
const LARGEST_READ_SLAB = 16 * 1024;
const MAX_ACCEPT_BACKOFF = 1000;
const logger = getLogger(["gateway", "listener"]);

/**
 * Accepts connections on a bound listener and serves each one, until
 * {@link stop}. An accept error does not end the loop: it is logged once,
 * accepting is retried with a backoff of up to a second, and recovery is
 * logged, so running out of file descriptors refuses new connections for a
 * while but keeps the existing ones and the process alive.
 *
 * @example
 * ```ts
 * import { StreamServer } from "./stream_connection.ts";
 * const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
 * const server = new StreamServer('listener "demo"', listener, async (conn) => {
 *   await conn.write(new TextEncoder().encode("hello\n"));
 *   conn.close();
 * });
 * await server.stop();
 * ```
 */
export class StreamServer {
  readonly #listener: Deno.Listener;
  readonly #open = new Map<Deno.Conn, Promise<void>>();
  readonly #accepting: Promise<void>;
  #stopping = false;
  #stopped?: Promise<void>;
  #wake?: () => void;

  constructor(
    readonly label: string,
    listener: Deno.Listener,
    serve: (conn: Deno.Conn) => Promise<void>,
  ) {
    this.#listener = listener;
    this.#accepting = this.#accept(serve);
  }

  /** Stops accepting, closes every open connection and waits for their handlers. Idempotent. */
  stop(): Promise<void> {
    this.#stopped ??= (async () => {
      this.#stopping = true;
      this.#wake?.();
      closeQuietly(this.#listener);
      await this.#accepting;
      for (const conn of this.#open.keys()) closeQuietly(conn);
      await Promise.all(this.#open.values());
    })();
    return this.#stopped;
  }

  async #accept(serve: (conn: Deno.Conn) => Promise<void>): Promise<void> {
    let failures = 0;
    while (!this.#stopping) {
      let conn: Deno.Conn;
      try {
        conn = await this.#listener.accept();
      } catch (error) {
        if (this.#stopping || error instanceof Deno.errors.BadResource) return;
        if (failures === 0) {
          logger.warn("{listener}: cannot accept connections: {error}; retrying", {
            listener: this.label,
            error: (error as Error).message,
          });
        }
        failures++;
        await this.#pause(Math.min(MAX_ACCEPT_BACKOFF, 10 * 2 ** failures));
        continue;
      }
      if (failures > 0) {
        logger.info("{listener}: accepting connections again after {failures} failed attempts", {
          listener: this.label,
          failures,
        });
        failures = 0;
      }
      const served = serve(conn)
        .catch((error) => {
          logger.error("{listener}: connection handler failed: {error}", {
            listener: this.label,
            error,
          });
        })
        .finally(() => this.#open.delete(conn));
      this.#open.set(conn, served);
    }
  }

  /** Waits `ms`, or less when {@link stop} is called. */
  async #pause(ms: number): Promise<void> {
    let timer: ReturnType<typeof setTimeout> | undefined;
    await new Promise<void>((resolve) => {
      this.#wake = resolve;
      timer = setTimeout(resolve, ms);
    });
    clearTimeout(timer);
  }
}

/**
 * The remote end of `conn`.
 *
 * @example
 * ```ts
 * import { peerOf } from "./stream_connection.ts";
 * const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
 * const client = await Deno.connect({ hostname: "127.0.0.1", port: listener.addr.port });
 * const server = await listener.accept();
 * peerOf(server).address; // "127.0.0.1"
 * for (const closable of [client, server, listener]) closable.close();
 * ```
 */
export function peerOf(conn: Deno.Conn): Peer {
  const addr = conn.remoteAddr;
  if (addr.transport === "tcp" || addr.transport === "udp") {
    return { address: addr.hostname, port: addr.port, label: `${addr.hostname}:${addr.port}` };
  }
  return { address: "local", label: "local" };
}

/**
 * Asks the connection manager to take `conn`. When it refuses (a limit is
 * reached), the refusal is logged, `conn` is closed and the result is
 * undefined.
 *
 * @example
 * ```ts
 * import { admitConnection, peerOf } from "./stream_connection.ts";
 * import type { Connection } from "../connections/connection.ts";
 * const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
 * const client = await Deno.connect({ hostname: "127.0.0.1", port: listener.addr.port });
 * const conn = await listener.accept();
 * const connections = { admit: () => ({ refused: "too many connections" }) };
 * const admitted: Connection | undefined = admitConnection(
 *   conn,
 *   peerOf(conn),
 *   { listener: "demo", protocol: "tcp", limits: { maxConnections: 1, maxPerIp: 1, idleTimeout: 0 } },
 *   connections,
 *   { send() {}, close: () => conn.close() },
 * ); // undefined, and conn is closed
 * client.close();
 * listener.close();
 * ```
 */
export function admitConnection(
  conn: Deno.Conn,
  peer: Peer,
  listener: Pick<FramedServing, "listener" | "protocol" | "limits">,
  connections: ListenerServices["connections"],
  handle: ConnectionHandle,
): Connection | undefined {
  const admitted = connections.admit({
    listener: listener.listener,
    protocol: listener.protocol,
    remoteAddress: peer.address,
    remotePort: peer.port,
    limits: listener.limits,
    handle,
  });
  if ("refused" in admitted) {
    eventWarnings.warn(
      logger,
      `refused/${listener.listener}`,
      'listener "{listener}": refused {peer}: {reason}',
      { listener: listener.listener, peer: peer.label, reason: admitted.refused },
    );
    closeQuietly(conn);
    return undefined;
  }
  return admitted;
}

/**
 * Serves one socket in bus mode until it closes: each frame is published on
 * the topic from `serving.topic`, with a `reply` that writes the framed
 * answer back on this socket (a reply after the socket closed is dropped).
 * Writes are queued and written in order, never interleaved; a peer that
 * lets more than {@link SEND_QUEUE_LIMIT} bytes pile up is closed as a slow
 * consumer. A frame that breaks the framing closes this connection only,
 * with a warning naming the listener, the peer and the byte offset. When the
 * peer ends its side, replies already queued are written before closing.
 *
 * Payloads are views of the connection's 16 KiB read slabs, never written
 * again: a subscriber that keeps a payload keeps its slab alive, and a
 * payload's `buffer` holds other bytes of the same connection. Whatever
 * passes payloads on by `postMessage` (which clones the whole buffer) or
 * keeps small ones for long should pass `payload.slice()`.
 *
 * @example
 * ```ts
 * import { Bus } from "../bus/bus.ts";
 * import { compileTopicTemplate } from "../bus/topic_template.ts";
 * import { createFrameCodec } from "./framing.ts";
 * import { serveFramedConnection } from "./stream_connection.ts";
 * import type { Connection } from "../connections/connection.ts";
 *
 * const bus = new Bus();
 * bus.subscribe("tcp/demo/#", (message) => message.reply?.(message.payload), { owner: "echo" });
 * const connection = {
 *   id: "c1",
 *   source: { listener: "demo", protocol: "tcp", connectionId: "c1" },
 *   received: (_bytes: number, frames = 1) => frames,
 *   sent() {},
 *   bindDevice() {},
 *   closed() {},
 * } as unknown as Connection;
 * const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
 * const client = await Deno.connect({ hostname: "127.0.0.1", port: listener.addr.port });
 * const serving = serveFramedConnection(await listener.accept(), {
 *   listener: "demo",
 *   protocol: "tcp",
 *   codec: createFrameCodec({ type: "line", delimiter: "\n", maxLength: 1024 }),
 *   topic: compileTopicTemplate("tcp/{listener}/{connectionId}"),
 *   handshake: "none",
 *   limits: { maxConnections: 10, maxPerIp: 10, idleTimeout: 0 },
 * }, { bus, connections: { admit: () => connection } });
 * await client.write(new TextEncoder().encode("ping\n"));
 * const answer = new Uint8Array(5);
 * await client.read(answer); // "ping\n"
 * client.close();
 * await serving;
 * listener.close();
 * bus.unsubscribeOwner("echo");
 * ```
 */
export async function serveFramedConnection(
  conn: Deno.Conn,
  serving: FramedServing,
  services: ListenerServices,
): Promise<void> {
  const peer = peerOf(conn);
  const { codec } = serving;
  const close = (reason: string) => {
    if (writer.closed) return;
    logger.info('listener "{listener}": closing {peer}: {reason}', {
      listener: serving.listener,
      peer: peer.label,
      reason,
    });
    writer.close();
    closeQuietly(conn);
  };
  const writer = new FrameWriter(conn, {
    written: (bytes, frames) => connection?.sent(bytes, frames),
    fail: close,
  });
  const connection = admitConnection(conn, peer, serving, services.connections, {
    send(payload) {
      if (!writer.write(codec.encode(payload))) {
        throw new Error(`connection ${connection?.id} of listener "${serving.listener}" is closed`);
      }
    },
    close,
  });
  if (connection === undefined) return;

  const reply = (payload: Uint8Array) => {
    writer.write(codec.encode(payload));
  };
  let awaitingDeviceId = serving.handshake === "device-id";
  let topicDeviceId = connection.source.deviceId;
  const renderTopic = () =>
    serving.topic({
      listener: connection.source.listener,
      connectionId: connection.id,
      deviceId: connection.source.deviceId,
      remoteAddress: peer.address,
    });
  let topic = renderTopic();
  /** Publishes `frames` (binding the device first on a handshake); false when the handshake failed. */
  const deliver = (frames: Uint8Array[]): boolean => {
    for (const frame of frames) {
      if (awaitingDeviceId) {
        awaitingDeviceId = false;
        try {
          connection.bindDevice(new TextDecoder("utf-8", { fatal: true }).decode(frame));
        } catch (error) {
          close(`invalid handshake: ${(error as Error).message}`);
          return false;
        }
        continue;
      }
      if (connection.source.deviceId !== topicDeviceId) {
        topicDeviceId = connection.source.deviceId;
        topic = renderTopic();
      }
      services.bus.publish({ topic, payload: frame, source: connection.source, meta: {}, reply });
    }
    return true;
  };

  const decoder = codec.decoder();
  // Frames are views of what was read, so every read goes into space not read into before.
  let nextSlabSize = SMALLEST_READ_SLAB;
  let readSlab = new Uint8Array(nextSlabSize);
  let readSlabUsed = 0;
  try {
    for (;;) {
      if (readSlab.length - readSlabUsed < readSlab.length / 4) {
        readSlab = new Uint8Array(nextSlabSize);
        readSlabUsed = 0;
      }
      const space = readSlab.length - readSlabUsed;
      const n = await conn.read(readSlab.subarray(readSlabUsed));
      if (n === null) break;
      // A read that filled its space means more is waiting: the next slab is larger.
      if (n === space) nextSlabSize = Math.min(LARGEST_READ_SLAB, readSlab.length * 2);
      const chunk = readSlab.subarray(readSlabUsed, readSlabUsed + n);
      readSlabUsed += n;
      let frames: Uint8Array[];
      let broken: FrameError | undefined;
      try {
        frames = decoder.push(chunk);
      } catch (error) {
        if (!(error instanceof FrameError)) throw error;
        frames = error.frames;
        broken = error;
      }
      // Frames over the connection's message rate are dropped (and the manager closes it).
      const within = connection.received(n, frames.length);
      if (!deliver(within < frames.length ? frames.slice(0, within) : frames)) return;
      if (broken) throw broken;
    }
    await writer.flushed();
  } catch (error) {
    logEnd(serving.listener, peer, error);
  } finally {
    writer.close();
    closeQuietly(conn);
    connection.closed();
  }
}

/** Logs why a connection's read loop ended with an error, unless the gateway closed it. */
function logEnd(listener: string, peer: Peer, error: unknown): void {
  const fields = { listener, peer: peer.label, error: (error as Error).message };
  if (error instanceof FrameError) {
    eventWarnings.warn(
      logger,
      `frame/${listener}`,
      'listener "{listener}": closing {peer}: {error} (at byte {offset})',
      { ...fields, offset: error.offset },
    );
  } else if (
    error instanceof Deno.errors.ConnectionReset || error instanceof Deno.errors.BrokenPipe
  ) {
    logger.debug('listener "{listener}": {peer} went away: {error}', fields);
  } else if (
    !(error instanceof Deno.errors.BadResource || error instanceof Deno.errors.Interrupted)
  ) {
    eventWarnings.warn(
      logger,
      `read/${listener}`,
      'listener "{listener}": closing {peer}: {error}',
      fields,
    );
  }
}

/**
 * Writes all of `bytes` (a socket write may take only part).
 *
 * @example
 * ```ts
 * import { writeAll } from "./stream_connection.ts";
 * const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
 * const client = await Deno.connect({ hostname: "127.0.0.1", port: listener.addr.port });
 * await writeAll(client, new TextEncoder().encode("hello\n"));
 * client.close();
 * listener.close();
 * ```
 */
export async function writeAll(conn: Deno.Conn, bytes: Uint8Array): Promise<void> {
  for (let written = 0; written < bytes.length;) {
    written += await conn.write(bytes.subarray(written));
  }
}

/**
 * Closes a socket or listener that may already be closed.
 *
 * @example
 * ```ts
 * import { closeQuietly } from "./stream_connection.ts";
 * const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
 * closeQuietly(listener);
 * closeQuietly(listener); // no error
 * ```
 */
export function closeQuietly(closable: { close(): void }): void {
  try {
    closable.close();
  } catch {
    // already closed
  }
}

/** How a {@link FrameWriter} reports what it wrote and why it gave up. */
export interface FrameWriterOptions {
  /**
   * Bytes that may wait (counting the write in progress) before the
   * connection is closed as a slow consumer; default {@link SEND_QUEUE_LIMIT}.
   */
  limit?: number;
  /** Called after each write with its bytes and the frames they held. */
  written?: (bytes: number, frames: number) => void;
  /** Called once when writing fails or the peer falls behind; it should close the connection. */
  fail: (reason: string) => void;
}

/**
 * The write side of a connection: frames are queued and written in order by
 * one loop (consecutive frames coalesced into one write), so they never
 * interleave. More than `limit` bytes waiting (counting the write in
 * progress) closes the connection through `fail`; a single frame is always
 * accepted when nothing is waiting.
 *
 * @example
 * ```ts
 * import { FrameWriter } from "./stream_connection.ts";
 * const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
 * const client = await Deno.connect({ hostname: "127.0.0.1", port: listener.addr.port });
 * const server = await listener.accept();
 * const writer = new FrameWriter(server, { fail: () => server.close() });
 * writer.write(new TextEncoder().encode("one\n"));
 * writer.write(new TextEncoder().encode("two\n"));
 * writer.pending; // 8 bytes not yet written
 * await writer.flushed();
 * writer.close();
 * for (const closable of [client, server, listener]) closable.close();
 * ```
 */
export class FrameWriter {
  readonly #conn: Deno.Conn;
  readonly #limit: number;
  readonly #written: (bytes: number, frames: number) => void;
  readonly #fail: (reason: string) => void;
  #queue: Uint8Array[] = [];
  /** Bytes queued or being written. */
  #pending = 0;
  #flushing?: Promise<void>;
  #closed = false;

  constructor(conn: Deno.Conn, options: FrameWriterOptions) {
    this.#conn = conn;
    this.#limit = options.limit ?? SEND_QUEUE_LIMIT;
    this.#written = options.written ?? (() => {});
    this.#fail = options.fail;
  }

  /** Whether it was closed (by {@link close}, or because writing failed). */
  get closed(): boolean {
    return this.#closed;
  }

  /** Bytes queued or being written. */
  get pending(): number {
    return this.#pending;
  }

  /** Queues one frame; false when the connection is closed, or was just closed for falling behind. */
  write(frame: Uint8Array): boolean {
    if (this.#closed) return false;
    if (this.#pending > 0 && this.#pending + frame.length > this.#limit) {
      this.#fail(`slow consumer: ${this.#pending} bytes not yet written`);
      return false;
    }
    this.#queue.push(frame);
    this.#pending += frame.length;
    this.#flushing ??= this.#flush();
    return true;
  }

  /** Resolves when everything queued so far is written (or writing failed). */
  flushed(): Promise<void> {
    return this.#flushing ?? Promise.resolve();
  }

  /** Drops what is queued and refuses further frames. */
  close(): void {
    this.#closed = true;
    this.#queue = [];
  }

  async #flush(): Promise<void> {
    try {
      while (this.#queue.length > 0) {
        const frames = this.#queue;
        this.#queue = [];
        const bytes = frames.length === 1 ? frames[0] : concat(frames);
        const size = bytes.length;
        // Most writes take everything at once; writeAll only for the rest.
        const written = await this.#conn.write(bytes);
        if (written < size) await writeAll(this.#conn, bytes.subarray(written));
        this.#pending -= size;
        this.#written(size, frames.length);
      }
    } catch (error) {
      if (!this.#closed) this.#fail(`write failed: ${(error as Error).message}`);
    } finally {
      this.#flushing = undefined;
    }
  }
}
