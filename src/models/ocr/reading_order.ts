/**
 * Puts detected lines in reading order: top to bottom, and left to right
 * among lines whose tops are within half a line height of each other.
 *
 * @module
 */

import type { Point } from "./types.ts";

/**
 * The items sorted in reading order by their boxes (corners from the top-left, clockwise).
 *
 * @example
 * ```ts
 * import { readingOrder } from "./reading_order.ts";
 * import type { Point } from "./types.ts";
 * const box = (x: number, y: number): Point[] => [[x, y], [x + 50, y], [x + 50, y + 20], [x, y + 20]];
 * readingOrder([{ box: box(100, 2) }, { box: box(0, 0) }]); // the one at x 0 first
 * ```
 */
export function readingOrder<T extends { box: readonly Point[] }>(items: readonly T[]): T[] {
  const top = (item: T) => Math.min(item.box[0][1], item.box[1][1]);
  const lineHeight = (item: T) =>
    Math.hypot(item.box[3][0] - item.box[0][0], item.box[3][1] - item.box[0][1]);
  const sorted = items.toSorted((a, b) => top(a) - top(b) || a.box[0][0] - b.box[0][0]);
  // One pass of neighbour swaps puts lines of the same row left to right.
  for (let i = 0; i < sorted.length - 1; i++) {
    for (let j = i; j >= 0; j--) {
      const [a, b] = [sorted[j], sorted[j + 1]];
      const sameRow = Math.abs(top(b) - top(a)) < Math.min(lineHeight(a), lineHeight(b)) / 2;
      if (sameRow && b.box[0][0] < a.box[0][0]) [sorted[j], sorted[j + 1]] = [b, a];
      else break;
    }
  }
  return sorted;
}
