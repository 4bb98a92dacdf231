/**
 * Text detection around the PP-OCR DB model: the input tensor (image scaled
 * so its longer side is at most `detectionSide`, both sides multiples of 32,
 * normalised with the ImageNet mean and deviation in the BGR order the
 * model was trained with) and DB post-processing of its probability map
 * (threshold, connected regions, minimum-area rectangles, region score,
 * unclip), giving boxes in the original image's pixels.
 *
 * @module
 */

import type { Tensor } from "../tensor.ts";
import type { RgbImage } from "./image.ts";
import { convexHull, minAreaRect, rectCorners } from "./geometry.ts";
import type { Point } from "./types.ts";

const MEAN = [0.485, 0.456, 0.406];
const STD = [0.229, 0.224, 0.225];
/** Map pixels above this probability are text. */
const BINARY_THRESHOLD = 0.3;
/** Regions whose rectangle is thinner than this (map pixels) are noise. */
const MIN_SIDE = 3;

/**
 * A value of `image` at a fractional position, bilinear, edges repeated.
 *
 * @example
 * ```ts
 * import { sample } from "./detect.ts";
 * sample({ width: 1, height: 1, data: new Uint8Array([10, 20, 30]) }, 0.5, 0.5, 2); // 30
 * ```
 */
export function sample(image: RgbImage, x: number, y: number, channel: number): number {
  const { width, height, data } = image;
  const cx = Math.min(Math.max(x, 0), width - 1);
  const cy = Math.min(Math.max(y, 0), height - 1);
  const x0 = Math.floor(cx), y0 = Math.floor(cy);
  const x1 = Math.min(x0 + 1, width - 1), y1 = Math.min(y0 + 1, height - 1);
  const fx = cx - x0, fy = cy - y0;
  const at = (px: number, py: number) => data[(py * width + px) * 3 + channel];
  const top = at(x0, y0) * (1 - fx) + at(x1, y0) * fx;
  const bottom = at(x0, y1) * (1 - fx) + at(x1, y1) * fx;
  return top * (1 - fy) + bottom * fy;
}

/**
 * The detection input `x` ([1, 3, H, W]) for `image`, and the map size.
 *
 * @example
 * ```ts
 * import { detectionInput } from "./detect.ts";
 * // const { tensor, width, height } = detectionInput(image, 960);
 * ```
 */
export function detectionInput(
  image: RgbImage,
  maxSide: number,
): { tensor: Tensor; width: number; height: number } {
  const ratio = Math.min(1, maxSide / Math.max(image.width, image.height));
  const width = Math.max(32, Math.round(image.width * ratio / 32) * 32);
  const height = Math.max(32, Math.round(image.height * ratio / 32) * 32);
  const plane = width * height;
  const data = new Float32Array(3 * plane);
  const sx = image.width / width, sy = image.height / height;
  for (let y = 0; y < height; y++) {
    const srcY = (y + 0.5) * sy - 0.5;
    for (let x = 0; x < width; x++) {
      const srcX = (x + 0.5) * sx - 0.5;
      for (let c = 0; c < 3; c++) {
        // Channel c of the tensor is BGR channel c: RGB channel 2 - c.
        const value = sample(image, srcX, srcY, 2 - c) / 255;
        data[c * plane + y * width + x] = (value - MEAN[c]) / STD[c];
      }
    }
  }
  return { tensor: { type: "float32", dims: [1, 3, height, width], data }, width, height };
}

/** What DB post-processing needs besides the map. */
export interface BoxOptions {
  /** Minimum mean probability of a region. */
  boxThreshold: number;
  /** How far a rectangle is grown: area × unclip / perimeter on each side. */
  unclip: number;
  /** The original image size, to scale boxes back. */
  imageWidth: number;
  imageHeight: number;
}

/** A detected text box in image pixels, with its region's mean probability. */
export interface DetectedBox {
  box: [Point, Point, Point, Point];
  score: number;
}

/**
 * DB post-processing of a probability map `[1, 1, H, W]`.
 *
 * @example
 * ```ts
 * import { boxesFromMap } from "./detect.ts";
 * // const boxes = boxesFromMap(outputs.sigmoid_0, { boxThreshold: 0.6, unclip: 1.6, imageWidth, imageHeight });
 * ```
 */
export function boxesFromMap(map: Tensor, options: BoxOptions): DetectedBox[] {
  const height = map.dims[2], width = map.dims[3];
  const probability = map.data as Float32Array;
  const seen = new Uint8Array(width * height);
  const boxes: DetectedBox[] = [];
  const stack: number[] = [];
  for (let start = 0; start < width * height; start++) {
    if (seen[start] || probability[start] <= BINARY_THRESHOLD) continue;
    // Flood fill (8-connected), keeping the leftmost and rightmost pixel of each row.
    const rows = new Map<number, [number, number]>();
    let sum = 0, count = 0;
    seen[start] = 1;
    stack.push(start);
    while (stack.length) {
      const index = stack.pop()!;
      const x = index % width, y = (index - x) / width;
      sum += probability[index];
      count++;
      const row = rows.get(y);
      if (!row) rows.set(y, [x, x]);
      else {
        row[0] = Math.min(row[0], x);
        row[1] = Math.max(row[1], x);
      }
      for (let dy = -1; dy <= 1; dy++) {
        const ny = y + dy;
        if (ny < 0 || ny >= height) continue;
        for (let dx = -1; dx <= 1; dx++) {
          const nx = x + dx;
          if (nx < 0 || nx >= width) continue;
          const next = ny * width + nx;
          if (!seen[next] && probability[next] > BINARY_THRESHOLD) {
            seen[next] = 1;
            stack.push(next);
          }
        }
      }
    }
    const score = sum / count;
    if (count < 4 || score < options.boxThreshold) continue;
    const points: Point[] = [];
    for (const [y, [left, right]] of rows) {
      points.push([left, y], [right + 1, y], [left, y + 1], [right + 1, y + 1]);
    }
    const rect = minAreaRect(convexHull(points));
    if (Math.min(rect.width, rect.height) < MIN_SIDE) continue;
    const area = rect.width * rect.height;
    const grow = area * options.unclip / (2 * (rect.width + rect.height));
    const grown = { ...rect, width: rect.width + 2 * grow, height: rect.height + 2 * grow };
    if (Math.min(grown.width, grown.height) < MIN_SIDE + 2) continue;
    const sx = options.imageWidth / width, sy = options.imageHeight / height;
    const corners = rectCorners(grown).map(([x, y]): Point => [
      clamp(Math.round(x * sx), options.imageWidth),
      clamp(Math.round(y * sy), options.imageHeight),
    ]);
    boxes.push({ box: corners as DetectedBox["box"], score });
  }
  return boxes;
}

function clamp(value: number, size: number): number {
  return Math.min(Math.max(value, 0), size);
}
