/**
 * The latest durations of something (a worker instance, a plugin, a model),
 * for the p50/p99 the admin API shows (the Prometheus histograms have the long
 * view).
 *
 * @module
 */

/**
 * A ring of the last `capacity` durations in milliseconds.
 *
 * @example
 * ```ts
 * import { LatencyWindow } from "./latency.ts";
 * const window = new LatencyWindow(4);
 * for (const ms of [1, 2, 3, 100]) window.add(ms);
 * window.quantile(0.5); // 2
 * ```
 */
export class LatencyWindow {
  readonly #samples: Float64Array;
  #next = 0;
  #count = 0;
  #total = 0;

  constructor(capacity = 1024) {
    this.#samples = new Float64Array(capacity);
  }

  /** Records one duration. */
  add(ms: number): void {
    this.#samples[this.#next] = ms;
    this.#next = (this.#next + 1) % this.#samples.length;
    this.#count = Math.min(this.#count + 1, this.#samples.length);
    this.#total++;
  }

  /** How many durations were ever recorded. */
  get total(): number {
    return this.#total;
  }

  /**
   * The `q` quantile (0..1) of the recorded durations (nearest rank), rounded
   * to µs, or null when empty.
   */
  quantile(q: number): number | null {
    if (this.#count === 0) return null;
    const sorted = this.#samples.slice(0, this.#count).sort();
    const value = sorted[Math.min(this.#count - 1, Math.max(0, Math.ceil(q * this.#count) - 1))];
    return Math.round(value * 1000) / 1000;
  }
}
