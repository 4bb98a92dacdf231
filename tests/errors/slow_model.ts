/**
 * An ONNX model that loads at once and runs for seconds: the 2×2 input is
 * tiled to 400×400 and multiplied by itself `rounds` times. For tests that
 * need an inference run past its timeout.
 *
 * @module
 */

import onnxProto from "npm:onnx-proto@8.0.1";

const { onnx } = onnxProto;
const FLOAT = onnx.TensorProto.DataType.FLOAT;
const INT64 = onnx.TensorProto.DataType.INT64;

/**
 * The model's bytes.
 *
 * @example
 * ```ts
 * import { slowModel } from "./slow_model.ts";
 * await Deno.writeFile("/tmp/slow.onnx", slowModel(200));
 * ```
 */
export function slowModel(rounds: number): Uint8Array {
  const node = [{ opType: "Tile", input: ["x", "repeats"], output: ["t"] }];
  let last = "t";
  for (let i = 0; i < rounds; i++) {
    node.push({ opType: "MatMul", input: [last, "t"], output: [`m${i}`] });
    last = `m${i}`;
  }
  node.push({ opType: "ReduceSum", input: [last], output: ["y"] });
  const info = (name: string, dims: number[]) => ({
    name,
    type: {
      tensorType: { elemType: FLOAT, shape: { dim: dims.map((dimValue) => ({ dimValue })) } },
    },
  });
  return onnx.ModelProto.encode({
    irVersion: 7,
    producerName: "edge-gateway tests",
    opsetImport: [{ domain: "", version: 13 }],
    graph: {
      name: "slow",
      node,
      initializer: [{ name: "repeats", dataType: INT64, dims: [2], int64Data: [200, 200] }],
      input: [info("x", [2, 2])],
      output: [info("y", [1, 1])],
    },
  }).finish();
}
