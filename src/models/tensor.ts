/**
 * Tensors as they travel over HTTP and the bus (`{ type, dims, data }` with a
 * plain number array, or `data` as base64 of the little-endian element
 * bytes, the compact binary form) and as the inference worker takes them (typed arrays),
 * with the checks against a model's signature that turn a wrong input into a
 * 400 naming what the model expects.
 *
 * @module
 */

import { TENSOR_TYPES, type TensorType } from "./config.ts";
import { GatewayError } from "../errors.ts";

/** A tensor with its data in a typed array (transferable to a Worker). */
export interface Tensor {
  type: TensorType;
  dims: number[];
  data: TypedData;
}

/** The typed arrays a {@link Tensor} holds. */
export type TypedData =
  | Float32Array
  | Float64Array
  | Int8Array
  | Uint8Array
  | Int16Array
  | Uint16Array
  | Int32Array
  | BigInt64Array;

/** A tensor in JSON: `data` as numbers, or base64 of the raw little-endian bytes. */
export interface JsonTensor {
  type: TensorType;
  dims: number[];
  data: (number | boolean)[] | string;
}

/** One input or output of a model, as read from the model file. */
export interface TensorSignature {
  name: string;
  /** Element type (`float32`, `int64`, ...). */
  type: string;
  /** Dimensions; a string is a symbolic (free) dimension such as `N`. */
  dims: (number | string)[];
}

/**
 * A request whose tensors do not fit the model: answered 400.
 *
 * @example
 * ```ts
 * import { TensorError } from "./tensor.ts";
 * new TensorError("inputs.a: expected float32").status; // 400
 * ```
 */
export class TensorError extends GatewayError {
  constructor(message: string) {
    super(400, "bad_arguments", message);
    this.name = "TensorError";
  }
}

const ARRAYS: Record<
  TensorType,
  { new (length: number): TypedData; readonly BYTES_PER_ELEMENT: number }
> = {
  float32: Float32Array,
  float64: Float64Array,
  int8: Int8Array,
  uint8: Uint8Array,
  int16: Int16Array,
  uint16: Uint16Array,
  int32: Int32Array,
  int64: BigInt64Array,
  bool: Uint8Array,
};

/**
 * `a: float32[N,3], b: float32[N,3]`: how error messages show a signature.
 *
 * @example
 * ```ts
 * import { formatSignature } from "./tensor.ts";
 * formatSignature([{ name: "x", type: "float32", dims: ["N", 2] }]); // "x: float32[N,2]"
 * ```
 */
export function formatSignature(signature: readonly TensorSignature[]): string {
  return signature.map((s) => `${s.name}: ${s.type}[${s.dims.join(",")}]`).join(", ");
}

/** The number of elements of a shape. */
function elementCount(dims: readonly number[]): number {
  return dims.reduce((product, dim) => product * dim, 1);
}

/**
 * Parses the `inputs` of a request (`{ name: { type, dims, data } }`) and
 * checks them against the model's inputs: every input present, no unknown
 * one, the type and rank the model takes, fixed dimensions equal, a symbolic
 * dimension (`N`) the same in every input that has it, data length
 * the product of the dims. Throws a {@link TensorError} whose message names
 * the input and the model's signature.
 *
 * @example
 * ```ts
 * import { parseInputs } from "./tensor.ts";
 * const signature = [{ name: "x", type: "float32", dims: ["N", 2] }];
 * const feeds = parseInputs({ x: { type: "float32", dims: [1, 2], data: [1, 2] } }, signature);
 * feeds.x.data; // Float32Array [1, 2]
 * ```
 */
export function parseInputs(
  inputs: unknown,
  signature: readonly TensorSignature[],
): Record<string, Tensor> {
  const expected = `the model takes ${formatSignature(signature)}`;
  if (!inputs || typeof inputs !== "object" || Array.isArray(inputs)) {
    throw new TensorError(`inputs: expected an object of named tensors; ${expected}`);
  }
  const given = inputs as Record<string, unknown>;
  for (const name of Object.keys(given)) {
    if (!signature.some((s) => s.name === name)) {
      throw new TensorError(`inputs.${name}: the model has no such input; ${expected}`);
    }
  }
  const feeds: Record<string, Tensor> = {};
  const bound = new Map<string, { value: number; where: string }>();
  for (const input of signature) {
    if (!Object.hasOwn(given, input.name)) {
      throw new TensorError(`inputs.${input.name}: missing; ${expected}`);
    }
    const tensor = parseTensor(given[input.name], `inputs.${input.name}`);
    const where = `inputs.${input.name}`;
    if (tensor.type !== input.type) {
      throw new TensorError(`${where}: type ${tensor.type}, expected ${input.type}; ${expected}`);
    }
    const fits = tensor.dims.length === input.dims.length &&
      input.dims.every((dim, i) => typeof dim !== "number" || dim < 0 || dim === tensor.dims[i]);
    if (!fits) {
      throw new TensorError(
        `${where}: shape [${tensor.dims.join(",")}], expected [${
          input.dims.join(",")
        }]; ${expected}`,
      );
    }
    input.dims.forEach((dim, i) => {
      if (typeof dim !== "string") return;
      const first = bound.get(dim);
      if (!first) bound.set(dim, { value: tensor.dims[i], where: `${where}.dims[${i}]` });
      else if (first.value !== tensor.dims[i]) {
        throw new TensorError(
          `${where}.dims[${i}]: ${dim} is ${
            tensor.dims[i]
          }, but ${first.where} made it ${first.value}; ${expected}`,
        );
      }
    });
    feeds[input.name] = tensor;
  }
  return feeds;
}

/**
 * Parses one JSON tensor into a typed-array {@link Tensor}; `where` names it in errors.
 *
 * @example
 * ```ts
 * import { parseTensor } from "./tensor.ts";
 * parseTensor({ type: "int64", dims: [2], data: [1, 2] }, "inputs.ids").data; // BigInt64Array [1n, 2n]
 * ```
 */
export function parseTensor(value: unknown, where: string): Tensor {
  if (!value || typeof value !== "object") {
    throw new TensorError(`${where}: expected { type, dims, data }`);
  }
  const { type, dims, data } = value as Record<string, unknown>;
  if (typeof type !== "string" || !(TENSOR_TYPES as readonly string[]).includes(type)) {
    throw new TensorError(`${where}.type: expected one of ${TENSOR_TYPES.join(", ")}`);
  }
  if (!Array.isArray(dims) || !dims.every((d) => Number.isInteger(d) && d >= 0)) {
    throw new TensorError(`${where}.dims: expected an array of non-negative integers`);
  }
  const count = elementCount(dims);
  if (typeof data === "string") return fromBase64(type as TensorType, dims, data, count, where);
  if (!Array.isArray(data)) {
    throw new TensorError(`${where}.data: expected an array of numbers or a base64 string`);
  }
  if (data.length !== count) {
    throw new TensorError(
      `${where}.data: ${data.length} values, but dims [${dims.join(",")}] need ${count}`,
    );
  }
  const array = new ARRAYS[type as TensorType](count);
  for (let i = 0; i < count; i++) {
    const item = data[i];
    const number = typeof item === "boolean" ? Number(item) : item;
    if (typeof number !== "number" || !Number.isFinite(number) && !type.startsWith("float")) {
      throw new TensorError(`${where}.data[${i}]: expected a number`);
    }
    if (array instanceof BigInt64Array) array[i] = BigInt(Math.trunc(number));
    else array[i] = number;
  }
  return { type: type as TensorType, dims: dims as number[], data: array };
}

function fromBase64(
  type: TensorType,
  dims: number[],
  data: string,
  count: number,
  where: string,
): Tensor {
  let bytes: Uint8Array;
  try {
    bytes = Uint8Array.from(atob(data), (char) => char.charCodeAt(0));
  } catch {
    throw new TensorError(`${where}.data: not valid base64`);
  }
  const byteLength = count * ARRAYS[type].BYTES_PER_ELEMENT;
  if (bytes.length !== byteLength) {
    throw new TensorError(
      `${where}.data: ${bytes.length} bytes, but ${type} dims [${
        dims.join(",")
      }] need ${byteLength}`,
    );
  }
  const array = new ARRAYS[type](count);
  new Uint8Array(array.buffer).set(bytes);
  return { type, dims, data: array };
}

/**
 * The JSON form of a tensor (int64 values become numbers, bool true/false).
 * With `base64`, `data` is the base64 of the raw little-endian bytes instead.
 *
 * @example
 * ```ts
 * import { tensorToJson } from "./tensor.ts";
 * tensorToJson({ type: "float32", dims: [2], data: new Float32Array([1, 2]) });
 * // { type: "float32", dims: [2], data: [1, 2] }
 * ```
 */
export function tensorToJson(tensor: Tensor, base64 = false): JsonTensor {
  if (base64) {
    const { buffer, byteOffset, byteLength } = tensor.data;
    const bytes = new Uint8Array(buffer, byteOffset, byteLength);
    let binary = "";
    for (let i = 0; i < bytes.length; i += 0x8000) {
      binary += String.fromCharCode(...bytes.subarray(i, i + 0x8000));
    }
    return { type: tensor.type, dims: tensor.dims, data: btoa(binary) };
  }
  const values = Array.from(tensor.data as ArrayLike<number | bigint>, Number);
  return {
    type: tensor.type,
    dims: tensor.dims,
    data: tensor.type === "bool" ? values.map(Boolean) : values,
  };
}
