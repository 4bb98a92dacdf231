/**
 * Lower-case hexadecimal text of bytes.
 *
 * @module
 */

const DIGITS = Array.from({ length: 256 }, (_, byte) => byte.toString(16).padStart(2, "0"));

/**
 * The bytes as lower-case hex, two digits per byte.
 *
 * @example
 * ```ts
 * import { encodeHex } from "./hex.ts";
 * encodeHex(new Uint8Array([0, 15, 255])); // "000fff"
 * encodeHex(await crypto.subtle.digest("SHA-256", new Uint8Array())); // "e3b0c442…"
 * ```
 */
export function encodeHex(bytes: Uint8Array | ArrayBuffer): string {
  let text = "";
  for (const byte of bytes instanceof Uint8Array ? bytes : new Uint8Array(bytes)) {
    text += DIGITS[byte];
  }
  return text;
}
