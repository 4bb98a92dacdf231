/**
 * A fence between "bytes are in the kernel" and "the program has seen them".
 * Deno reads a socket only after its event loop's poller has reported it
 * readable, and under load several turns can pass between a byte's arrival
 * and that report, so a pending read cannot tell an idle socket from one
 * holding unread bytes (and a new read does not look either: it waits for the
 * same report). The fence writes one byte into a loopback connection of its
 * own and reads it back: the poll that reports it also reports every socket
 * that was readable when the byte was written, so the reads pending on those
 * have completed too (within a few microtask turns).
 *
 * @module
 */

/** Microtask turns after the fence's own read, for reads completed in the same poll. */
const SETTLE_TURNS = 8;
const ONE_BYTE = new Uint8Array(1);

/** Callers waiting for one fence byte. */
interface Crossing {
  number: number;
  resolve: ((crossing: number) => void)[];
  reject: ((error: unknown) => void)[];
}

/**
 * Fence crossings over a loopback socket pair. A crossing's number is given
 * when its byte is written; a caller joins the newest crossing written after
 * the moment it names (or the one about to be written), so under load one
 * byte serves every request of an event-loop turn, and a new byte is written
 * only when no crossing under way is late enough.
 *
 * @example
 * ```ts
 * import { IoFence } from "./io_fence.ts";
 * const fence = new IoFence();
 * const mark = fence.started;
 * const first = await fence.pass(mark);
 * console.assert(first > mark);
 * console.assert(await fence.pass(first) > first);
 * fence.close();
 * ```
 */
export class IoFence {
  #pair: Promise<[Deno.TcpConn, Deno.TcpConn]> | null = null;
  /** The crossing whose byte is about to be written (it gets a number then). */
  #next: Crossing | null = null;
  readonly #inFlight: Crossing[] = [];
  #reading = false;
  #closed = false;
  /** Crossings whose byte has been written (or is being written) so far. */
  started = 0;

  /**
   * Resolves with the number of a crossing whose byte was written after the
   * moment `after` (a value {@link IoFence.started} had; by default now):
   * everything readable at that moment has been seen by then. Rejects if the
   * loopback pair cannot be made or used, or after {@link IoFence.close}.
   */
  pass(after: number = this.started): Promise<number> {
    if (this.#closed) return Promise.reject(new Error("fence closed"));
    const newest = this.#inFlight.at(-1);
    let crossing = this.#next;
    if (crossing === null) {
      if (newest !== undefined && newest.number > after) crossing = newest;
      else {
        crossing = this.#next = { number: 0, resolve: [], reject: [] };
        queueMicrotask(() => void this.#write());
      }
    }
    const joined = crossing;
    return new Promise((resolve, reject) => {
      joined.resolve.push(resolve);
      joined.reject.push(reject);
    });
  }

  /** Closes the loopback pair; pending and later calls of {@link IoFence.pass} reject. */
  close(): void {
    this.#closed = true;
    void this.#pair?.then(([writer, reader]) => {
      writer.close();
      reader.close();
    }, () => {});
    this.#pair = null;
  }

  async #write(): Promise<void> {
    const crossing = this.#next!;
    this.#next = null;
    try {
      if (this.#closed) throw new Error("fence closed");
      const [writer] = await (this.#pair ??= openPair());
      crossing.number = ++this.started;
      this.#inFlight.push(crossing);
      await writer.write(ONE_BYTE);
    } catch (error) {
      this.#fail(error);
      for (const reject of crossing.reject) reject(error);
      return;
    }
    if (!this.#reading) void this.#read();
  }

  /** Reads fence bytes back while crossings are in flight; each byte completes the oldest. */
  async #read(): Promise<void> {
    this.#reading = true;
    const sink = new Uint8Array(4096);
    try {
      const [, reader] = await this.#pair!;
      // Each read completes at least one crossing in flight.
      while (this.#inFlight.length > 0) {
        const count = await reader.read(sink);
        if (count === null) throw new Error("fence connection closed");
        const done = this.#inFlight.splice(0, count);
        for (let turn = 0; turn < SETTLE_TURNS; turn++) await null;
        for (const crossing of done) {
          for (const resolve of crossing.resolve) resolve(crossing.number);
        }
      }
    } catch (error) {
      this.#fail(error);
    }
    this.#reading = false;
  }

  /** Rejects every crossing in flight and drops the pair, so the next call makes a new one. */
  #fail(error: unknown): void {
    for (const crossing of this.#inFlight.splice(0)) {
      for (const reject of crossing.reject) reject(error);
    }
    const pair = this.#pair;
    this.#pair = null;
    void pair?.then(([writer, reader]) => {
      writer.close();
      reader.close();
    }, () => {});
  }
}

/** A connected loopback TCP pair (the listener is closed once it has accepted). */
async function openPair(): Promise<[Deno.TcpConn, Deno.TcpConn]> {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  try {
    const accepted = listener.accept();
    const writer = await Deno.connect({ hostname: "127.0.0.1", port: listener.addr.port });
    writer.setNoDelay(true);
    return [writer, await accepted];
  } finally {
    listener.close();
  }
}
