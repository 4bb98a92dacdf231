/**
 * Joining byte chunks into one buffer.
 *
 * @module
 */

/**
 * The bytes of `chunks`, in order, in one new buffer (a copy even for one
 * chunk, so the result never aliases an input).
 *
 * @example
 * ```ts
 * import { concat } from "./concat.ts";
 * concat([new Uint8Array([1, 2]), new Uint8Array([3])]); // Uint8Array [1, 2, 3]
 * ```
 */
export function concat(chunks: readonly Uint8Array[]): Uint8Array<ArrayBuffer> {
  let length = 0;
  for (const chunk of chunks) length += chunk.byteLength;
  const out = new Uint8Array(length);
  let offset = 0;
  for (const chunk of chunks) {
    out.set(chunk, offset);
    offset += chunk.byteLength;
  }
  return out;
}
