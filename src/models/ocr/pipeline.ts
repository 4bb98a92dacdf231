/**
 * The OCR pipeline, run inside an inference worker: decode the image,
 * detect text boxes, cut and rectify each line, optionally turn upside-down
 * lines, recognise each line, and return the lines in reading order.
 *
 * @module
 */

import type { Tensor } from "../tensor.ts";
import { decodeImage } from "./image.ts";
import { boxesFromMap, detectionInput } from "./detect.ts";
import { cropLine, rotateHalf } from "./crop.ts";
import { classifierInput, isUpsideDown } from "./classify.ts";
import { ctcDecode, recognitionInput } from "./recognize.ts";
import { readingOrder } from "./reading_order.ts";
import type { OcrLine, OcrOptions, OcrResult, OcrSettings } from "./types.ts";

/** Lines recognised with less confidence than this are dropped. */
const MIN_CONFIDENCE = 0.5;

type Run = (feeds: Record<string, Tensor>) => Promise<Record<string, Tensor>>;

/** The three models and the key list, as the worker provides them. */
export interface OcrModels {
  detect: Run;
  recognize: Run;
  classify: Run;
  keys: readonly string[];
}

function only(outputs: Record<string, Tensor>): Tensor {
  return Object.values(outputs)[0];
}

/**
 * Reads one page. Throws `OcrError` (400/413) for images it refuses.
 *
 * @example
 * ```ts
 * import { readPage } from "./pipeline.ts";
 * // const result = await readPage(pngBytes, settings, { classify: false }, models);
 * // result.text; // "Invoice No: INV-42\n..."
 * ```
 */
export async function readPage(
  bytes: Uint8Array,
  settings: OcrSettings,
  options: OcrOptions,
  models: OcrModels,
): Promise<OcrResult> {
  const started = performance.now();
  const image = decodeImage(bytes, settings);
  const decoded = performance.now();
  const input = detectionInput(image, settings.detectionSide);
  const map = only(await models.detect({ x: input.tensor }));
  const boxes = boxesFromMap(map, {
    boxThreshold: settings.boxThreshold,
    unclip: settings.unclip,
    imageWidth: image.width,
    imageHeight: image.height,
  });
  const detected = performance.now();
  const lines: OcrLine[] = [];
  for (const { box } of boxes) {
    let line = cropLine(image, box);
    if (
      options.classify && isUpsideDown(only(await models.classify({ x: classifierInput(line) })))
    ) {
      line = rotateHalf(line);
    }
    const probs = only(await models.recognize({ x: recognitionInput(line) }));
    const { text, confidence } = ctcDecode(probs, models.keys);
    if (text.trim() && confidence >= MIN_CONFIDENCE) {
      lines.push({ box, text, confidence: Math.round(confidence * 10_000) / 10_000 });
    }
  }
  const ordered = readingOrder(lines);
  const done = performance.now();
  const ms = (value: number) => Math.round(value * 10) / 10;
  return {
    width: image.width,
    height: image.height,
    lines: ordered,
    text: ordered.map((line) => line.text).join("\n"),
    timings: {
      decode: ms(decoded - started),
      detect: ms(detected - decoded),
      recognize: ms(done - detected),
      total: ms(done - started),
    },
  };
}
