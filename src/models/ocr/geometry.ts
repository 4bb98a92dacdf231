/**
 * Plane geometry for text boxes: convex hull, minimum-area rectangle
 * (rotating calipers over the hull), corner ordering, and the homography
 * that maps a rectangle onto a quadrilateral.
 *
 * @module
 */

import type { Point } from "./types.ts";

/**
 * The convex hull (Andrew's monotone chain), counter-clockwise in y-down
 * image coordinates.
 *
 * @example
 * ```ts
 * import { convexHull } from "./geometry.ts";
 * convexHull([[0, 0], [2, 0], [1, 1], [2, 2], [0, 2]]).length; // 4
 * ```
 */
export function convexHull(points: readonly Point[]): Point[] {
  const sorted = points.toSorted((a, b) => a[0] - b[0] || a[1] - b[1]);
  if (sorted.length < 3) return sorted;
  const cross = (o: Point, a: Point, b: Point) =>
    (a[0] - o[0]) * (b[1] - o[1]) - (a[1] - o[1]) * (b[0] - o[0]);
  const lower: Point[] = [];
  for (const p of sorted) {
    while (lower.length >= 2 && cross(lower.at(-2)!, lower.at(-1)!, p) <= 0) lower.pop();
    lower.push(p);
  }
  const upper: Point[] = [];
  for (const p of sorted.toReversed()) {
    while (upper.length >= 2 && cross(upper.at(-2)!, upper.at(-1)!, p) <= 0) upper.pop();
    upper.push(p);
  }
  return [...lower.slice(0, -1), ...upper.slice(0, -1)];
}

/** A rotated rectangle: centre, side lengths along its own axes, and the unit axis of `width`. */
export interface RotatedRect {
  center: Point;
  width: number;
  height: number;
  axis: Point;
}

/**
 * The rectangle of least area that holds a convex polygon: one of its sides
 * lies on a hull edge (rotating calipers).
 *
 * @example
 * ```ts
 * import { minAreaRect } from "./geometry.ts";
 * minAreaRect([[0, 0], [4, 0], [4, 2], [0, 2]]); // width 4, height 2 (or 2 × 4)
 * ```
 */
export function minAreaRect(hull: readonly Point[]): RotatedRect {
  if (hull.length === 1) return { center: hull[0], width: 0, height: 0, axis: [1, 0] };
  let best: RotatedRect | undefined;
  let bestArea = Infinity;
  for (let i = 0; i < hull.length; i++) {
    const a = hull[i];
    const b = hull[(i + 1) % hull.length];
    const length = Math.hypot(b[0] - a[0], b[1] - a[1]);
    if (length === 0) continue;
    const ux = (b[0] - a[0]) / length;
    const uy = (b[1] - a[1]) / length;
    let minU = Infinity, maxU = -Infinity, minV = Infinity, maxV = -Infinity;
    for (const p of hull) {
      const u = p[0] * ux + p[1] * uy;
      const v = -p[0] * uy + p[1] * ux;
      minU = Math.min(minU, u);
      maxU = Math.max(maxU, u);
      minV = Math.min(minV, v);
      maxV = Math.max(maxV, v);
    }
    const area = (maxU - minU) * (maxV - minV);
    if (area < bestArea) {
      bestArea = area;
      const cu = (minU + maxU) / 2;
      const cv = (minV + maxV) / 2;
      best = {
        center: [cu * ux - cv * uy, cu * uy + cv * ux],
        width: maxU - minU,
        height: maxV - minV,
        axis: [ux, uy],
      };
    }
  }
  return best ?? { center: hull[0], width: 0, height: 0, axis: [1, 0] };
}

/**
 * The four corners of a rotated rectangle ordered top-left, top-right,
 * bottom-right, bottom-left (the two leftmost points are the left side).
 *
 * @example
 * ```ts
 * import { rectCorners } from "./geometry.ts";
 * rectCorners({ center: [2, 1], width: 4, height: 2, axis: [1, 0] });
 * // [[0, 0], [4, 0], [4, 2], [0, 2]]
 * ```
 */
export function rectCorners(rect: RotatedRect): [Point, Point, Point, Point] {
  const [cx, cy] = rect.center;
  const [ux, uy] = rect.axis;
  const hw = rect.width / 2, hh = rect.height / 2;
  const corners: Point[] = [
    [cx - ux * hw + uy * hh, cy - uy * hw - ux * hh],
    [cx + ux * hw + uy * hh, cy + uy * hw - ux * hh],
    [cx + ux * hw - uy * hh, cy + uy * hw + ux * hh],
    [cx - ux * hw - uy * hh, cy - uy * hw + ux * hh],
  ];
  const byX = corners.toSorted((a, b) => a[0] - b[0]);
  const [tl, bl] = byX[0][1] <= byX[1][1] ? [byX[0], byX[1]] : [byX[1], byX[0]];
  const [tr, br] = byX[2][1] <= byX[3][1] ? [byX[2], byX[3]] : [byX[3], byX[2]];
  return [tl, tr, br, bl];
}

/**
 * The 3×3 homography (row-major, last entry 1) that maps the rectangle
 * `(0,0) (w,0) (w,h) (0,h)` onto the quadrilateral `quad`.
 *
 * @example
 * ```ts
 * import { rectToQuad } from "./geometry.ts";
 * rectToQuad(2, 1, [[0, 0], [2, 0], [2, 1], [0, 1]]); // the identity
 * ```
 */
export function rectToQuad(w: number, h: number, quad: readonly Point[]): number[] {
  const from: Point[] = [[0, 0], [w, 0], [w, h], [0, h]];
  const rows: number[][] = [];
  for (let i = 0; i < 4; i++) {
    const [x, y] = from[i];
    const [u, v] = quad[i];
    rows.push([x, y, 1, 0, 0, 0, -u * x, -u * y, u]);
    rows.push([0, 0, 0, x, y, 1, -v * x, -v * y, v]);
  }
  // Gaussian elimination with partial pivoting on the 8×9 augmented matrix.
  for (let col = 0; col < 8; col++) {
    let pivot = col;
    for (let r = col + 1; r < 8; r++) {
      if (Math.abs(rows[r][col]) > Math.abs(rows[pivot][col])) pivot = r;
    }
    [rows[col], rows[pivot]] = [rows[pivot], rows[col]];
    const p = rows[col][col] || 1e-12;
    for (let c = col; c < 9; c++) rows[col][c] /= p;
    for (let r = 0; r < 8; r++) {
      if (r === col) continue;
      const factor = rows[r][col];
      for (let c = col; c < 9; c++) rows[r][c] -= factor * rows[col][c];
    }
  }
  return [...rows.map((row) => row[8]), 1];
}
