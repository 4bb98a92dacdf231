/**
 * The orientation classifier (PP-OCR mobile cls): tells a line that is
 * upside down (180°) from one that is upright, on a `[1, 3, 48, 192]` input.
 *
 * @module
 */

import type { Tensor } from "../tensor.ts";
import type { RgbImage } from "./image.ts";
import { lineInput } from "./recognize.ts";

/** Below this probability a line is left as it is. */
const UPSIDE_DOWN_THRESHOLD = 0.9;

/**
 * The classifier's input for a line.
 *
 * @example
 * ```ts
 * import { classifierInput } from "./classify.ts";
 * // classifierInput(line).dims; // [1, 3, 48, 192]
 * ```
 */
export function classifierInput(line: RgbImage): Tensor {
  return lineInput(line, 192, 192);
}

/**
 * Whether the classifier's `[1, 2]` output (0°, 180°) says the line is upside down.
 *
 * @example
 * ```ts
 * import { isUpsideDown } from "./classify.ts";
 * isUpsideDown({ type: "float32", dims: [1, 2], data: new Float32Array([0.02, 0.98]) }); // true
 * ```
 */
export function isUpsideDown(output: Tensor): boolean {
  const [upright, flipped] = output.data as Float32Array;
  return flipped > upright && flipped > UPSIDE_DOWN_THRESHOLD;
}
