import { assert } from "../helpers/assert.ts";
import { timingSafeEqual } from "../../src/util/timing_safe_equal.ts";

Deno.test("timingSafeEqual is true for the same bytes or text", () => {
  assert(timingSafeEqual("token-0123", "token-0123"));
  assert(timingSafeEqual(new Uint8Array([1, 2, 3]), new Uint8Array([1, 2, 3])));
  assert(timingSafeEqual("", ""));
  assert(timingSafeEqual("é", new Uint8Array([0xc3, 0xa9])), "strings compare as UTF-8");
});

Deno.test("timingSafeEqual is false for any difference, prefix or length", () => {
  assert(!timingSafeEqual("token-0123", "token-0124"));
  assert(!timingSafeEqual("token", "token-0123"), "a prefix of the secret");
  assert(!timingSafeEqual("token-0123-more", "token-0123"), "the secret plus more");
  assert(!timingSafeEqual("", "secret"));
  assert(!timingSafeEqual(new Uint8Array([0]), new Uint8Array()));
});
