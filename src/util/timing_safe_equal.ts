/**
 * Comparing secrets without leaking, through timing, where they differ.
 *
 * @module
 */

const encoder = new TextEncoder();

/**
 * Whether `a` and `b` hold the same bytes (strings as UTF-8). The time taken
 * depends only on the length of `b` (the expected secret), never on where the
 * first difference is, so pass the secret you hold as `b`.
 *
 * @example
 * ```ts
 * import { timingSafeEqual } from "./timing_safe_equal.ts";
 * timingSafeEqual("given-token", "expected-token"); // false
 * timingSafeEqual(new Uint8Array([1, 2]), new Uint8Array([1, 2])); // true
 * ```
 */
export function timingSafeEqual(a: Uint8Array | string, b: Uint8Array | string): boolean {
  const given = typeof a === "string" ? encoder.encode(a) : a;
  const expected = typeof b === "string" ? encoder.encode(b) : b;
  let difference = given.length ^ expected.length;
  for (let i = 0; i < expected.length; i++) difference |= (given[i] ?? 0) ^ expected[i];
  return difference === 0;
}
