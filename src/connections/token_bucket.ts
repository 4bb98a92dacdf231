/**
 * A token bucket of messages: `burst` tokens, refilled at `perSecond`, one
 * taken per message. The connection manager keeps one per connection (and
 * the UDP listener one per source not yet a peer), so one client sending
 * faster than its rate has its excess dropped instead of the event loop
 * spent on it.
 *
 * @module
 */

/** A message rate: the steady rate and the burst above it. */
export interface MessageRate {
  /** Messages a second, on average. */
  perSecond: number;
  /** Messages that may arrive at once (the bucket's size). */
  burst: number;
}

/**
 * One bucket.
 *
 * @example
 * ```ts
 * import { TokenBucket } from "./token_bucket.ts";
 * let now = 0;
 * const bucket = new TokenBucket({ perSecond: 10, burst: 2 }, () => now);
 * bucket.take(3); // 2: the burst
 * now += 100; // a tenth of a second: one more token
 * bucket.take(1); // 1
 * bucket.take(1); // 0
 * ```
 */
export class TokenBucket {
  #tokens: number;
  #filledAt: number;

  constructor(readonly rate: MessageRate, readonly now: () => number = Date.now) {
    this.#tokens = rate.burst;
    this.#filledAt = now();
  }

  /** Takes up to `count` tokens; returns how many it took (the messages within the rate). */
  take(count: number): number {
    const now = this.now();
    const { perSecond, burst } = this.rate;
    if (this.#tokens < burst) {
      this.#tokens = Math.min(burst, this.#tokens + ((now - this.#filledAt) * perSecond) / 1000);
    }
    this.#filledAt = now;
    const taken = Math.min(count, Math.floor(this.#tokens));
    this.#tokens -= taken;
    return taken;
  }
}
