import { assert, assertEquals } from "../helpers/assert.ts";
import { concat } from "../../src/util/concat.ts";

Deno.test("concat joins chunks in order", () => {
  const joined = concat([new Uint8Array([1, 2]), new Uint8Array(), new Uint8Array([3])]);
  assertEquals([...joined], [1, 2, 3]);
});

Deno.test("concat of nothing is empty", () => {
  assertEquals(concat([]).length, 0);
});

Deno.test("concat copies a single chunk and respects views", () => {
  const backing = new Uint8Array([9, 1, 2, 9]);
  const view = backing.subarray(1, 3);
  const joined = concat([view]);
  assertEquals([...joined], [1, 2]);
  backing[1] = 7;
  assert(joined[0] === 1, "the result aliases its input");
});
