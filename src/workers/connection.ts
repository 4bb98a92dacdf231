/**
 * One worker's socket, framed: frames in are decoded and handed to the
 * current handler one by one; frames out are queued and written together, so
 * a burst of calls costs one write.
 *
 * @module
 */

import { encodeFrame, FrameDecoder, type FrameMessage } from "./frame.ts";
import type { GatewayMessage } from "./protocol.ts";

/** Why a connection closed. */
export interface ConnectionClosed {
  reason: string;
  /** The worker closed its end (rather than the gateway dropping it for an error). */
  byPeer: boolean;
}

/**
 * A framed connection with a worker process. Any failure (a frame that does
 * not decode, a handler that throws, a write or read error, EOF) closes it
 * and settles {@link closed} with the reason.
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
  #outgoing: Uint8Array[] = [];
  /** Bytes queued or being written. */
  #buffered = 0;
  #drained?: PromiseWithResolvers<void>;
  #writing = false;
  #closedReason?: string;
  #ending?: string;
  readonly #closed = Promise.withResolvers<ConnectionClosed>();

  /** `maxFrame` bounds the frames either side may send. */
  constructor(conn: Deno.Conn, maxFrame: number) {
    this.#conn = conn;
    this.#decoder = new FrameDecoder(maxFrame);
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
    this.#ending = reason;
    if (!this.#writing) this.close(reason);
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
    return this.#buffered;
  }

  /** Resolves once everything queued so far is written (or the connection closed). */
  drained(): Promise<void> {
    if (!this.#writing || !this.open) return Promise.resolve();
    this.#drained ??= Promise.withResolvers();
    return this.#drained.promise;
  }

  /**
   * Queues `message` for writing. Throws a RangeError when it is larger than
   * the maximum frame; does nothing once closed.
   */
  send(message: GatewayMessage): void {
    if (!this.open) return;
    const frame = encodeFrame(message, this.maxFrame);
    this.#outgoing.push(frame);
    this.#buffered += frame.length;
    if (!this.#writing) {
      this.#writing = true;
      queueMicrotask(() => this.#flush());
    }
  }

  /** Closes the socket (idempotent); `byPeer` when the worker closed its end. */
  close(reason: string, byPeer = false): void {
    if (!this.open) return;
    this.#closedReason = reason;
    try {
      this.#conn.close();
    } catch { /* already closed */ }
    this.#closed.resolve({ reason, byPeer });
  }

  async #flush(): Promise<void> {
    try {
      while (this.#outgoing.length > 0 && this.open) {
        const frames = this.#outgoing;
        this.#outgoing = [];
        const bytes = frames.length === 1 ? frames[0] : concat(frames);
        for (let at = 0; at < bytes.length;) at += await this.#conn.write(bytes.subarray(at));
        this.#buffered -= bytes.length;
      }
    } catch (error) {
      this.close(`writing to the worker failed: ${(error as Error).message}`);
    } finally {
      this.#writing = false;
      this.#drained?.resolve();
      this.#drained = undefined;
      if (this.#ending !== undefined) this.close(this.#ending);
    }
  }

  async #read(): Promise<void> {
    const buffer = new Uint8Array(64 * 1024);
    try {
      while (this.open) {
        const n = await this.#conn.read(buffer);
        if (n === null) {
          const partial = this.#decoder.pending > 0 ? " in the middle of a frame" : "";
          this.close(`the worker closed the connection${partial}`, true);
          return;
        }
        for (const message of this.#decoder.push(buffer.subarray(0, n))) {
          if (!this.open) return;
          this.handler(message);
        }
      }
    } catch (error) {
      this.close(this.open ? (error as Error).message : this.#closedReason!);
    }
  }
}

function concat(parts: Uint8Array[]): Uint8Array {
  let length = 0;
  for (const part of parts) length += part.length;
  const out = new Uint8Array(length);
  let at = 0;
  for (const part of parts) {
    out.set(part, at);
    at += part.length;
  }
  return out;
}
