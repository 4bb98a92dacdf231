/**
 * Holds back what the broker writes to one client until the publishes it
 * is acknowledging are on disk, so that a PUBACK or PUBREC never leaves
 * before its message is durable, while aedes goes on reading and handling
 * the client's next packets (their writes share the next group commit).
 *
 * A hold taken at some point holds back what is written after it until it
 * settles; what is written before the oldest open hold leaves at once, in
 * order. Held bytes are at most what one client is sent while its commits
 * run. A hold that rejects (the write failed) destroys the stream, held
 * acknowledgements included, so the client sends its messages again.
 *
 * @module
 */

import type { Duplex } from "node:stream";

type WriteArgs = Parameters<Duplex["write"]>;

/**
 * The output gate of one stream.
 *
 * @example
 * ```ts
 * import { PassThrough } from "node:stream";
 * import { AckGate } from "./ack_gate.ts";
 * const stream = new PassThrough();
 * const gate = new AckGate(stream);
 * const durable = Promise.withResolvers<void>();
 * gate.holdUntil(durable.promise);
 * stream.write("puback"); // held
 * durable.resolve(); // now written
 * ```
 */
export class AckGate {
  readonly #stream: Duplex;
  readonly #write: (...args: WriteArgs) => boolean;
  /** Open holds, oldest first, each with the number of writes made before it (since the start). */
  #holds: { after: number; settled: boolean }[] = [];
  /** Writes held back, and the number written before them (since the start). */
  #held: WriteArgs[] = [];
  #released = 0;

  constructor(stream: Duplex) {
    this.#stream = stream;
    const write = stream.write;
    this.#write = (...args) => write.apply(stream, args);
    stream.write = ((...args: WriteArgs) => {
      if (this.#holds.length === 0) return this.#write(...args);
      this.#held.push(args);
      return true;
    }) as Duplex["write"];
  }

  /** Holds back what the stream is written from now until `durable` settles. */
  holdUntil(durable: Promise<void>): void {
    const hold = { after: this.#released + this.#held.length, settled: false };
    this.#holds.push(hold);
    durable.then(() => {
      hold.settled = true;
      this.#release();
    }, (error: Error) => {
      this.#holds = [];
      this.#held = [];
      this.#stream.destroy(error);
    });
  }

  /** Writes what no open hold covers any more: everything before the oldest open hold. */
  #release(): void {
    while (this.#holds[0]?.settled) this.#holds.shift();
    const end = this.#holds[0]?.after ?? Infinity;
    const count = Math.min(end - this.#released, this.#held.length);
    if (count <= 0) return;
    const writes = this.#held.splice(0, count);
    this.#released += count;
    if (this.#stream.destroyed) return;
    for (const args of writes) this.#write(...args);
  }
}
