/**
 * Calls handed to a supervised part and not answered yet, each with its
 * deadline: one table for plugin Workers, worker instances and inference
 * Workers. A call settles once — answered, failed, timed out at its
 * deadline, cancelled, or failed with the rest when the part is lost.
 *
 * @module
 */

import { FunctionCallError } from "../functions/call.ts";
import type { CallStats } from "./stats.ts";

/** What a deadline that passes does besides failing the call (send `cancel`, end a hung Worker). */
export type OnTimeout = (id: number) => void;

/** How a table fails the calls that pass their deadline. */
export interface PendingOptions {
  /** Names the part in errors: `worker "orders" instance 0`. */
  label: string;
  /** Counts and times every settled call, and the calls in flight. */
  stats?: CallStats;
  /** The error a late call fails with; a {@link FunctionCallError} `timeout` by default. */
  timeoutError?: (message: string) => Error;
}

interface Entry<D> {
  resolve(value: unknown): void;
  reject(error: Error): void;
  timer: ReturnType<typeof setTimeout>;
  started: number;
  data: D;
}

/**
 * The pending calls of one part; `D` is what the part keeps with each call.
 *
 * @example
 * ```ts
 * import { PendingCalls } from "./pending.ts";
 * const pending = new PendingCalls<string>({ label: "plugin \"stamp\"" });
 * const { id, result } = pending.open("onRequest", Date.now() + 1000, "request 1");
 * pending.resolve(id, { ok: true });
 * await result; // { ok: true }
 * ```
 */
export class PendingCalls<D = undefined> {
  readonly #calls = new Map<number, Entry<D>>();
  readonly #options: PendingOptions;
  #nextId = 1;
  #idle?: PromiseWithResolvers<void>;

  constructor(options: PendingOptions) {
    this.#options = options;
  }

  /** Calls open now. */
  get size(): number {
    return this.#calls.size;
  }

  /** What was kept with call `id`, while it is open. */
  data(id: number): D | undefined {
    return this.#calls.get(id)?.data;
  }

  /**
   * Opens a call named `what` that fails at `deadline` (epoch ms, finite):
   * `onTimeout` runs first, then the call rejects with a timeout.
   */
  open<T = unknown>(
    what: string,
    deadline: number,
    data: D,
    onTimeout?: OnTimeout,
  ): { id: number; result: Promise<T> } {
    const id = this.#nextId++;
    const { promise, resolve, reject } = Promise.withResolvers<unknown>();
    const ms = Math.max(0, Math.round(deadline - Date.now()));
    const timer = setTimeout(() => {
      if (!this.#calls.has(id)) return;
      onTimeout?.(id);
      const message = `${this.#options.label}: ${what} did not answer within ${ms} ms`;
      this.reject(
        id,
        this.#options.timeoutError?.(message) ??
          new FunctionCallError({ type: "timeout", message }),
      );
    }, ms);
    this.#calls.set(id, { resolve, reject, timer, started: performance.now(), data });
    this.#options.stats?.metrics.inFlight.inc();
    return { id, result: promise as Promise<T> };
  }

  /** Answers call `id`; false when it was no longer open. */
  resolve(id: number, value: unknown): boolean {
    const entry = this.#close(id);
    entry?.resolve(value);
    return entry !== undefined;
  }

  /** Fails call `id` with `error`; false when it was no longer open. */
  reject(id: number, error: Error): boolean {
    const entry = this.#close(id, error);
    entry?.reject(error);
    return entry !== undefined;
  }

  /** Fails call `id` as `cancelled` (the caller gave up); false when it was no longer open. */
  cancel(id: number, why = "cancelled by the caller"): boolean {
    return this.reject(
      id,
      new FunctionCallError({ type: "cancelled", message: `${this.#options.label}: ${why}` }),
    );
  }

  /** Fails every open call with `error` (the part was lost or stopped). */
  failAll(error: Error): void {
    for (const id of [...this.#calls.keys()]) this.reject(id, error);
  }

  /** Resolves once no call is open, or after `timeout` ms. */
  async idle(timeout: number): Promise<void> {
    if (this.#calls.size === 0) return;
    this.#idle ??= Promise.withResolvers();
    let timer: ReturnType<typeof setTimeout> | undefined;
    await Promise.race([
      this.#idle.promise,
      new Promise((resolve) => timer = setTimeout(resolve, timeout)),
    ]);
    clearTimeout(timer);
  }

  #close(id: number, error?: Error): Entry<D> | undefined {
    const entry = this.#calls.get(id);
    if (!entry) return undefined;
    this.#calls.delete(id);
    clearTimeout(entry.timer);
    const stats = this.#options.stats;
    if (stats) {
      stats.metrics.inFlight.dec();
      stats.record(performance.now() - entry.started, error);
    }
    if (this.#calls.size === 0) {
      this.#idle?.resolve();
      this.#idle = undefined;
    }
    return entry;
  }
}
