/**
 * Routing calls to the members of one part (worker instances, inference
 * Workers): the least-busy healthy member with a free slot takes the call;
 * when every slot is taken the call waits in a bounded FIFO queue until a
 * slot frees or its deadline passes, and a full queue refuses it as
 * `overloaded` (HTTP 503).
 *
 * @module
 */

import { FunctionCallError } from "../functions/call.ts";
import type { GaugeValue } from "../observability/metrics.ts";

/** What the pool needs to know about a member. */
export interface PoolMember {
  /** Takes new calls (started, not draining or stopping). */
  readonly healthy: boolean;
  /** Calls it is running now. */
  readonly inFlight: number;
  /** Calls it may run at once. */
  readonly concurrency: number;
}

interface Waiter<M> {
  run(member: M): void;
  fail(error: Error): void;
  timer: ReturnType<typeof setTimeout>;
}

/**
 * The members of one part and the calls waiting for them.
 *
 * @example
 * ```ts
 * import { CallPool } from "./pool.ts";
 * const member = { healthy: true, inFlight: 0, concurrency: 1 };
 * const pool = new CallPool<typeof member>('worker "orders"', 16);
 * pool.add(member);
 * await pool.run(Date.now() + 1000, async (m) => {
 *   m.inFlight++;
 *   try { return "done"; } finally { m.inFlight--; }
 * });
 * ```
 */
export class CallPool<M extends PoolMember> {
  readonly #members = new Set<M>();
  readonly #waiting: Waiter<M>[] = [];

  /**
   * `label` names the part in errors; `queueLimit` calls may wait at most;
   * `queued`, when given, follows the queue's length.
   */
  constructor(
    readonly label: string,
    readonly queueLimit: number,
    readonly queuedGauge?: GaugeValue,
  ) {}

  /** Calls waiting for a free slot. */
  get queued(): number {
    return this.#waiting.length;
  }

  /** Adds a member and hands it waiting calls. */
  add(member: M): void {
    this.#members.add(member);
    this.wake();
  }

  /** Removes a member; calls it runs are not affected. */
  delete(member: M): void {
    this.#members.delete(member);
  }

  /** The least-busy healthy member with a free slot, if any. */
  pick(): M | undefined {
    let best: M | undefined;
    for (const member of this.#members) {
      if (!member.healthy || member.inFlight >= member.concurrency) continue;
      if (!best || member.inFlight < best.inFlight) best = member;
    }
    return best;
  }

  /**
   * Runs `task` on a member with a free slot, now or once one frees.
   * `task` must take the slot synchronously (count itself in `inFlight`
   * before returning its promise). Rejects with a `FunctionCallError`
   * `overloaded` when the queue is full, `timeout` when `deadline` (epoch ms)
   * passes in the queue.
   */
  run<T>(deadline: number, task: (member: M) => Promise<T>): Promise<T> {
    const member = this.#waiting.length === 0 ? this.pick() : undefined;
    if (member) return this.#start(member, task);
    if (this.#waiting.length >= this.queueLimit) {
      return Promise.reject(
        new FunctionCallError({
          type: "overloaded",
          message:
            `${this.label}: every slot is busy and ${this.queueLimit} calls are queued already`,
        }),
      );
    }
    const { promise, resolve, reject } = Promise.withResolvers<T>();
    const waiter: Waiter<M> = {
      run: (member) => this.#start(member, task).then(resolve, reject),
      fail: reject,
      timer: setTimeout(() => {
        const at = this.#waiting.indexOf(waiter);
        if (at >= 0) this.#waiting.splice(at, 1);
        this.queuedGauge?.set(this.#waiting.length);
        reject(
          new FunctionCallError({
            type: "timeout",
            message: `${this.label}: no slot was free before the deadline`,
          }),
        );
      }, Math.max(0, deadline - Date.now())),
    };
    this.#waiting.push(waiter);
    this.queuedGauge?.set(this.#waiting.length);
    return promise;
  }

  /** Hands free slots to waiting calls, oldest first. */
  wake(): void {
    while (this.#waiting.length > 0) {
      const member = this.pick();
      if (!member) break;
      const waiter = this.#waiting.shift()!;
      clearTimeout(waiter.timer);
      waiter.run(member);
    }
    this.queuedGauge?.set(this.#waiting.length);
  }

  /** Rejects every waiting call with `error`. */
  close(error: Error): void {
    for (const waiter of this.#waiting.splice(0)) {
      clearTimeout(waiter.timer);
      waiter.fail(error);
    }
    this.queuedGauge?.set(0);
  }

  #start<T>(member: M, task: (member: M) => Promise<T>): Promise<T> {
    const running = task(member);
    running.finally(() => this.wake()).catch(() => {});
    return running;
  }
}
