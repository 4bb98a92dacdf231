/**
 * One worker's socket, framed: frames in are decoded and handed to the
 * current handler one by one; frames out go through the listeners' write
 * queue ({@link FrameWriter}), which writes them in order and coalesces a
 * burst into one write.
 *
 * @module
 */

import { closeQuietly, FrameWriter } from "../listeners/stream_connection.ts";
import { encodeFrame, FrameDecoder, type FrameMessage } from "./frame.ts";
import type { GatewayMessage } from "./protocol.ts";

/** Bytes read from the socket at a time. */
const READ_SIZE = 64 * 1024;

/** Why a connection closed. */
export interface ConnectionClosed {
  reason: string;
  /** The worker closed its end (rather than the gateway dropping it for an error). */
  byPeer: boolean;
}

/**
 * A framed connection with a worker process. Any failure (a frame that does
 * not decode, a handler that throws, a write or read error, EOF) closes it
 * and settles {@link closed} with the reason; a frame's problem is named with
 * the frame's byte offset in the stream.
 *
 * What is queued for the worker is not capped here: calls are bounded by the
 * instance's concurrency, and event delivery waits on {@link drained} once
 * {@link buffered} grows.
 *
 * @example
 * ```ts
 * import { WorkerConnection } from "./connection.ts";
 * const listener = Deno.listen({ transport: "unix", path: "/tmp/workers-demo.sock" });
 * const connection = new WorkerConnection(await listener.accept(), 16 * 1024 * 1024);
 * connection.handler = (message) => console.log(message.type);
 * connection.send({ type: "ping", id: 1 });
 * console.log((await connection.closed).reason); // "the worker closed the connection"
 * ```
 */
export class WorkerConnection {
  /** Called with each message received, in order; throwing closes the connection. */
  handler: (message: FrameMessage) => void = () => {};
  readonly #conn: Deno.Conn;
  readonly #decoder: FrameDecoder;
  readonly #writer: FrameWriter;
  #closedReason?: string;
  readonly #closed = Promise.withResolvers<ConnectionClosed>();

  /** `maxFrame` bounds the frames either side may send. */
  constructor(conn: Deno.Conn, maxFrame: number) {
    this.#conn = conn;
    this.#decoder = new FrameDecoder(maxFrame);
    this.#writer = new FrameWriter(conn, {
      limit: Infinity,
      fail: (reason) => this.close(reason),
    });
    this.#read();
  }

  /** The largest frame either side may send, in bytes. */
  get maxFrame(): number {
    return this.#decoder.maxFrame;
  }

  set maxFrame(bytes: number) {
    this.#decoder.maxFrame = bytes;
  }

  /** Closes once the frames queued so far are written. */
  end(reason: string): void {
    this.#writer.flushed().then(() => this.close(reason));
  }

  /** Resolves with why the connection closed. */
  get closed(): Promise<ConnectionClosed> {
    return this.#closed.promise;
  }

  /** Whether it is still open. */
  get open(): boolean {
    return this.#closedReason === undefined;
  }

  /** Bytes queued for the worker and not yet written. */
  get buffered(): number {
    return this.#writer.pending;
  }

  /** Resolves once everything queued so far is written (or the connection closed). */
  drained(): Promise<void> {
    return this.#writer.flushed();
  }

  /**
   * Queues `message` for writing. Throws a RangeError when it is larger than
   * the maximum frame; does nothing once closed.
   */
  send(message: GatewayMessage): void {
    if (!this.open) return;
    this.#writer.write(encodeFrame(message, this.maxFrame));
  }

  /** Closes the socket (idempotent); `byPeer` when the worker closed its end. */
  close(reason: string, byPeer = false): void {
    if (!this.open) return;
    this.#closedReason = reason;
    this.#writer.close();
    closeQuietly(this.#conn);
    this.#closed.resolve({ reason, byPeer });
  }

  async #read(): Promise<void> {
    // One buffer for every read: the decoder copies what it keeps of a chunk.
    const buffer = new Uint8Array(READ_SIZE);
    try {
      while (this.open) {
        const n = await this.#conn.read(buffer);
        if (n === null) {
          const partial = this.#decoder.pending > 0 ? " in the middle of a frame" : "";
          this.close(`the worker closed the connection${partial}`, true);
          return;
        }
        for (const { message, offset } of this.#decoder.push(buffer.subarray(0, n))) {
          if (!this.open) return;
          try {
            this.handler(message);
          } catch (error) {
            throw new Error(`frame at byte offset ${offset}: ${(error as Error).message}`);
          }
        }
      }
    } catch (error) {
      this.close(this.open ? (error as Error).message : this.#closedReason!);
    }
  }
}
