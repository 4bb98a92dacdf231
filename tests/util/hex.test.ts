import { assertEquals } from "../helpers/assert.ts";
import { encodeHex } from "../../src/util/hex.ts";

Deno.test("encodeHex writes two lower-case digits per byte", () => {
  assertEquals(encodeHex(new Uint8Array([0, 1, 15, 16, 171, 255])), "00010f10abff");
  assertEquals(encodeHex(new Uint8Array()), "");
});

Deno.test("encodeHex takes an ArrayBuffer (a digest) and a view's bytes only", async () => {
  const digest = await crypto.subtle.digest("SHA-256", new TextEncoder().encode("abc"));
  assertEquals(
    encodeHex(digest),
    "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad",
  );
  assertEquals(encodeHex(new Uint8Array([1, 2, 3, 4]).subarray(1, 3)), "0203");
});

Deno.test("encodeHex agrees with Number#toString(16) on every byte value", () => {
  const all = Uint8Array.from({ length: 256 }, (_, i) => i);
  const expected = [...all].map((byte) => (byte < 16 ? "0" : "") + byte.toString(16)).join("");
  assertEquals(encodeHex(all), expected);
});
