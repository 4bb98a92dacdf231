/**
 * Cuts a detected line out of the page and rectifies it: the quadrilateral
 * is mapped onto an upright rectangle (perspective transform, bilinear
 * sampling), and a line much taller than wide is turned a quarter so that
 * its text runs left to right.
 *
 * @module
 */

import { rectToQuad } from "./geometry.ts";
import { type RgbImage } from "./image.ts";
import { sample } from "./detect.ts";
import type { Point } from "./types.ts";

/**
 * The upright image of the line inside `box` (corners from its top-left, clockwise).
 *
 * @example
 * ```ts
 * import { cropLine } from "./crop.ts";
 * // const line = cropLine(page, [[10, 10], [200, 12], [199, 40], [9, 38]]);
 * ```
 */
export function cropLine(image: RgbImage, box: readonly Point[]): RgbImage {
  const distance = (a: Point, b: Point) => Math.hypot(a[0] - b[0], a[1] - b[1]);
  const width = Math.max(
    1,
    Math.round(Math.max(distance(box[0], box[1]), distance(box[3], box[2]))),
  );
  const height = Math.max(
    1,
    Math.round(Math.max(distance(box[0], box[3]), distance(box[1], box[2]))),
  );
  const h = rectToQuad(width, height, box);
  const data = new Uint8Array(width * height * 3);
  for (let y = 0; y < height; y++) {
    for (let x = 0; x < width; x++) {
      const px = x + 0.5, py = y + 0.5;
      const w = h[6] * px + h[7] * py + h[8];
      const sx = (h[0] * px + h[1] * py + h[2]) / w - 0.5;
      const sy = (h[3] * px + h[4] * py + h[5]) / w - 0.5;
      for (let c = 0; c < 3; c++) data[(y * width + x) * 3 + c] = sample(image, sx, sy, c);
    }
  }
  const line = { width, height, data };
  return height >= 1.5 * width ? rotateQuarter(line) : line;
}

/**
 * The image turned 90° counter-clockwise.
 *
 * @example
 * ```ts
 * import { rotateQuarter } from "./crop.ts";
 * rotateQuarter({ width: 1, height: 2, data: new Uint8Array(6) }).width; // 2
 * ```
 */
export function rotateQuarter(image: RgbImage): RgbImage {
  const { width, height } = image;
  const data = new Uint8Array(width * height * 3);
  for (let y = 0; y < height; y++) {
    for (let x = 0; x < width; x++) {
      const to = ((width - 1 - x) * height + y) * 3;
      const from = (y * width + x) * 3;
      data[to] = image.data[from];
      data[to + 1] = image.data[from + 1];
      data[to + 2] = image.data[from + 2];
    }
  }
  return { width: height, height: width, data };
}

/**
 * The image turned 180°.
 *
 * @example
 * ```ts
 * import { rotateHalf } from "./crop.ts";
 * rotateHalf({ width: 2, height: 1, data: new Uint8Array([1, 1, 1, 2, 2, 2]) }).data[0]; // 2
 * ```
 */
export function rotateHalf(image: RgbImage): RgbImage {
  const pixels = image.width * image.height;
  const data = new Uint8Array(pixels * 3);
  for (let p = 0; p < pixels; p++) {
    const from = (pixels - 1 - p) * 3;
    data.set(image.data.subarray(from, from + 3), p * 3);
  }
  return { ...image, data };
}
