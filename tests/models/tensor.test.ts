/**
 * Tensor input checks that must answer 400 (a {@link TensorError}), never
 * a 500: dims too large to allocate, and a symbolic dimension given two
 * different values by two inputs.
 */

import { parseInputs, parseTensor, TensorError } from "../../src/models/tensor.ts";
import { assertEquals, assertStringIncludes } from "../helpers/assert.ts";

function refusal(run: () => unknown): Error {
  try {
    run();
  } catch (error) {
    return error as Error;
  }
  throw new Error("expected the tensor to be refused");
}

Deno.test("huge dims with base64 data are a 400 on the byte count, not a RangeError", () => {
  const error = refusal(() =>
    parseTensor({ type: "float32", dims: [1e9, 1e9], data: "AAAAAA==" }, "inputs.x")
  );
  assert400(error);
  assertStringIncludes(
    error.message,
    "inputs.x.data: 4 bytes, but float32 dims [1000000000,1000000000] need 4000000000000000000",
  );
  const array = refusal(() =>
    parseTensor({ type: "float32", dims: [1e9, 1e9], data: [1] }, "inputs.x")
  );
  assert400(array);
  assertStringIncludes(
    array.message,
    "inputs.x.data: 1 values, but dims [1000000000,1000000000] need",
  );
});

Deno.test("a symbolic dim takes its first value; another input giving another is a 400", () => {
  const signature = [
    { name: "a", type: "float32", dims: ["N", 2] },
    { name: "b", type: "float32", dims: ["N", 2] },
  ];
  const same = parseInputs({
    a: { type: "float32", dims: [2, 2], data: [1, 2, 3, 4] },
    b: { type: "float32", dims: [2, 2], data: [5, 6, 7, 8] },
  }, signature);
  assertEquals(same.b.dims, [2, 2]);
  const error = refusal(() =>
    parseInputs({
      a: { type: "float32", dims: [1, 2], data: [1, 2] },
      b: { type: "float32", dims: [2, 2], data: [5, 6, 7, 8] },
    }, signature)
  );
  assert400(error);
  assertStringIncludes(
    error.message,
    "inputs.b.dims[0]: N is 2, but inputs.a.dims[0] made it 1; the model takes a: float32[N,2], b: float32[N,2]",
  );
});

function assert400(error: Error): void {
  assertEquals(error instanceof TensorError, true, `${error.name}: ${error.message}`);
  assertEquals((error as TensorError).status, 400);
}
