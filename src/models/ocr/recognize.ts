/**
 * Line recognition around the PP-OCR CRNN/SVTR model: the input (line
 * scaled to height 48 keeping its aspect, normalised to [-1, 1] in BGR
 * order, padded on the right to at least 320) and greedy CTC decoding of its
 * per-step class probabilities over the key file (class 0 is the blank; the
 * last class is a space).
 *
 * @module
 */

import type { Tensor } from "../tensor.ts";
import type { RgbImage } from "./image.ts";
import { sample } from "./detect.ts";

const HEIGHT = 48;

/**
 * A `[1, 3, 48, width]` input for a line: scaled to height 48, at most
 * `maxWidth` wide (the rest is zero padding up to `width`).
 *
 * @example
 * ```ts
 * import { lineInput } from "./recognize.ts";
 * // const x = lineInput(line, 320, 320); // dims [1, 3, 48, 320]
 * ```
 */
export function lineInput(line: RgbImage, width: number, maxWidth: number): Tensor {
  const scaled = Math.max(
    1,
    Math.min(maxWidth, width, Math.ceil(HEIGHT * line.width / line.height)),
  );
  const plane = HEIGHT * width;
  const data = new Float32Array(3 * plane);
  const sx = line.width / scaled, sy = line.height / HEIGHT;
  for (let y = 0; y < HEIGHT; y++) {
    for (let x = 0; x < scaled; x++) {
      for (let c = 0; c < 3; c++) {
        const value = sample(line, (x + 0.5) * sx - 0.5, (y + 0.5) * sy - 0.5, 2 - c) / 255;
        data[c * plane + y * width + x] = (value - 0.5) / 0.5;
      }
    }
  }
  return { type: "float32", dims: [1, 3, HEIGHT, width], data };
}

/**
 * The recognition input for a line: width `max(320, 48 × aspect)`, so a
 * long line is not squeezed.
 *
 * @example
 * ```ts
 * import { recognitionInput } from "./recognize.ts";
 * // recognitionInput(line).dims; // [1, 3, 48, 320]
 * ```
 */
export function recognitionInput(line: RgbImage): Tensor {
  const width = Math.max(320, Math.ceil(HEIGHT * line.width / line.height));
  return lineInput(line, width, width);
}

/**
 * Greedy CTC decoding of `[1, T, C]` probabilities: the best class per step,
 * repeats merged, blanks dropped; confidence is the mean probability of the
 * kept characters.
 *
 * @example
 * ```ts
 * import { ctcDecode } from "./recognize.ts";
 * const probs = new Float32Array([0.1, 0.9, 0, 0.1, 0.9, 0, 1, 0, 0]); // steps: a a blank
 * ctcDecode({ type: "float32", dims: [1, 3, 3], data: probs }, ["a", "b"]); // { text: "a", confidence: 0.9 }
 * ```
 */
export function ctcDecode(
  output: Tensor,
  keys: readonly string[],
): { text: string; confidence: number } {
  const [, steps, classes] = output.dims;
  const probs = output.data as Float32Array;
  let text = "";
  let total = 0, kept = 0, previous = -1;
  for (let t = 0; t < steps; t++) {
    let best = 0, bestProb = -Infinity;
    for (let c = 0; c < classes; c++) {
      const p = probs[t * classes + c];
      if (p > bestProb) {
        bestProb = p;
        best = c;
      }
    }
    if (best !== 0 && best !== previous) {
      text += keys[best - 1] ?? "";
      total += bestProb;
      kept++;
    }
    previous = best;
  }
  return { text, confidence: kept ? total / kept : 0 };
}
