/**
 * A seeded pseudo-random generator for fuzz tests, so that a failing case can
 * be replayed from its seed.
 *
 * @module
 */

/**
 * mulberry32: floats in [0, 1), the same sequence for the same seed.
 *
 * @example
 * ```ts
 * import { seededRandom } from "./random.ts";
 * const next = seededRandom(42);
 * next() === seededRandom(42)(); // true
 * ```
 */
export function seededRandom(seed: number): () => number {
  return () => {
    seed = (seed + 0x6d2b79f5) | 0;
    let t = Math.imul(seed ^ (seed >>> 15), 1 | seed);
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}
