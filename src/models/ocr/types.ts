/**
 * The shapes the OCR pipeline takes and returns, shared by the pool (main
 * isolate) and the inference worker that runs the pipeline.
 *
 * @module
 */

import { GatewayError } from "../../errors.ts";

/** A point in image pixels: `[x, y]`. */
export type Point = [number, number];

/** The OCR config the worker needs: absolute model paths and the pipeline's knobs. */
export interface OcrSettings {
  detection: string;
  recognition: string;
  classifier: string;
  keys: string;
  maxImageBytes: number;
  maxPixels: number;
  maxSide: number;
  detectionSide: number;
  boxThreshold: number;
  unclip: number;
}

/** What one request asks of the pipeline. */
export interface OcrOptions {
  /** Run the orientation classifier on each line (reads upside-down text). */
  classify?: boolean;
}

/** One recognised line. */
export interface OcrLine {
  /** Corners clockwise from the top-left of the text, in image pixels. */
  box: [Point, Point, Point, Point];
  text: string;
  /** Mean probability of the recognised characters, 0..1. */
  confidence: number;
}

/** A page read. */
export interface OcrResult {
  width: number;
  height: number;
  /** In reading order: top to bottom, left to right within a row. */
  lines: OcrLine[];
  /** The lines joined with newlines. */
  text: string;
  /** Milliseconds per stage. */
  timings: { decode: number; detect: number; recognize: number; total: number };
}

/**
 * An image the pipeline refuses: 400 (not an image, unsupported, corrupt) or
 * 413 (too large); 503 when OCR is not set up.
 *
 * @example
 * ```ts
 * import { OcrError } from "./types.ts";
 * new OcrError(413, "image_too_large", "12000 × 9000 pixels is more than 40000000").status; // 413
 * ```
 */
export class OcrError extends GatewayError {
  constructor(status: 400 | 413 | 503, code: string, message: string) {
    super(status, code, message);
    this.name = "OcrError";
  }
}
