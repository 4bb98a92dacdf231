/**
 * An LRU cache of model results keyed by a hash of the inputs (names, types,
 * shapes and bytes), so that repeated identical requests skip inference.
 *
 * @module
 */

import type { Tensor } from "./tensor.ts";
import { concat } from "../util/concat.ts";
import { encodeHex } from "../util/hex.ts";

/**
 * The SHA-256 (hex) of a set of named tensors, independent of key order.
 *
 * @example
 * ```ts
 * import { hashInputs } from "./cache.ts";
 * await hashInputs({ x: { type: "float32", dims: [1], data: new Float32Array([1]) } }); // "5f…"
 * ```
 */
export async function hashInputs(feeds: Record<string, Tensor>): Promise<string> {
  const encoder = new TextEncoder();
  const parts: Uint8Array[] = [];
  for (const name of Object.keys(feeds).sort()) {
    const { type, dims, data } = feeds[name];
    parts.push(encoder.encode(`${name}\0${type}\0${dims.join(",")}\0`));
    parts.push(new Uint8Array(data.buffer, data.byteOffset, data.byteLength));
  }
  return encodeHex(await crypto.subtle.digest("SHA-256", concat(parts)));
}

/**
 * A least-recently-used map with a fixed capacity.
 *
 * @example
 * ```ts
 * import { LruCache } from "./cache.ts";
 * const cache = new LruCache<string>(2);
 * cache.set("a", "1");
 * cache.set("b", "2");
 * cache.get("a"); // "1" (now the most recent)
 * cache.set("c", "3"); // evicts "b"
 * ```
 */
export class LruCache<V> {
  readonly #entries = new Map<string, V>();

  constructor(readonly capacity: number) {}

  /** The value, marked most recently used; undefined when absent. */
  get(key: string): V | undefined {
    const value = this.#entries.get(key);
    if (value === undefined) return undefined;
    this.#entries.delete(key);
    this.#entries.set(key, value);
    return value;
  }

  /** Stores the value, evicting the least recently used entry when full. */
  set(key: string, value: V): void {
    this.#entries.delete(key);
    this.#entries.set(key, value);
    if (this.#entries.size > this.capacity) {
      this.#entries.delete(this.#entries.keys().next().value!);
    }
  }

  /** The number of entries. */
  get size(): number {
    return this.#entries.size;
  }
}
