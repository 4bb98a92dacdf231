/**
 * Image decoding for OCR: PNG (fast-png) and JPEG (jpeg-js), both pure
 * JavaScript, into 8-bit RGB. The size is read from the file's header first,
 * so an image over the limits is refused (413) before any pixel is decoded;
 * a PNG's compressed pixels are inflated with a cap at the size its header
 * declares, so a decompression bomb is refused (413) too.
 *
 * @module
 */

import { convertIndexedToRgb, decode as decodePng } from "fast-png";
import jpeg from "jpeg-js";
import { inflateSync } from "node:zlib";
import { OcrError } from "./types.ts";
import { concat } from "../../util/concat.ts";

/** An 8-bit RGB image, row-major, 3 bytes a pixel. */
export interface RgbImage {
  width: number;
  height: number;
  data: Uint8Array;
}

/** Limits an image must keep to. */
export interface ImageLimits {
  maxPixels: number;
  maxSide: number;
}

const PNG_SIGNATURE = [0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a];

/**
 * The format and size an image's header declares. Throws {@link OcrError}
 * 400 when the bytes are not a PNG or JPEG, or the header is cut short.
 *
 * @example
 * ```ts
 * import { imageHeader } from "./image.ts";
 * // imageHeader(await Deno.readFile("page.png")); // { format: "png", width: 800, height: 600 }
 * ```
 */
export function imageHeader(
  bytes: Uint8Array,
): { format: "png" | "jpeg"; width: number; height: number } {
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  if (PNG_SIGNATURE.every((b, i) => bytes[i] === b)) {
    if (bytes.length < 24) throw new OcrError(400, "bad_image", "the PNG ends inside its header");
    return { format: "png", width: view.getUint32(16), height: view.getUint32(20) };
  }
  if (bytes[0] === 0xff && bytes[1] === 0xd8) {
    let offset = 2;
    while (offset + 9 < bytes.length) {
      if (bytes[offset] !== 0xff) {
        throw new OcrError(400, "bad_image", `the JPEG has no marker at byte ${offset}`);
      }
      const marker = bytes[offset + 1];
      const length = view.getUint16(offset + 2);
      const isFrame = marker >= 0xc0 && marker <= 0xcf && ![0xc4, 0xc8, 0xcc].includes(marker);
      if (isFrame) {
        return {
          format: "jpeg",
          height: view.getUint16(offset + 5),
          width: view.getUint16(offset + 7),
        };
      }
      offset += 2 + length;
    }
    throw new OcrError(400, "bad_image", "the JPEG has no frame header (SOF)");
  }
  const head = Array.from(bytes.subarray(0, 8), (b) => b.toString(16).padStart(2, "0")).join(" ");
  throw new OcrError(
    400,
    "unsupported_image",
    `not a PNG or JPEG image (first bytes: ${head || "none"})`,
  );
}

/**
 * Decodes a PNG or JPEG into RGB (transparency laid over white). Throws
 * {@link OcrError}: 413 over the limits, 400 for anything it cannot decode.
 *
 * @example
 * ```ts
 * import { decodeImage } from "./image.ts";
 * // const image = decodeImage(bytes, { maxPixels: 40_000_000, maxSide: 10_000 });
 * ```
 */
export function decodeImage(bytes: Uint8Array, limits: ImageLimits): RgbImage {
  const header = imageHeader(bytes);
  const { width, height } = header;
  if (width === 0 || height === 0) {
    throw new OcrError(400, "bad_image", `the image is ${width} × ${height} pixels`);
  }
  if (width > limits.maxSide || height > limits.maxSide) {
    throw new OcrError(
      413,
      "image_too_large",
      `the image is ${width} × ${height} pixels; ocr.maxSide is ${limits.maxSide}`,
    );
  }
  if (width * height > limits.maxPixels) {
    throw new OcrError(
      413,
      "image_too_large",
      `the image has ${width * height} pixels; ocr.maxPixels is ${limits.maxPixels}`,
    );
  }
  try {
    if (header.format === "jpeg") return fromJpeg(bytes, limits.maxPixels);
    checkPngData(bytes);
    return fromPng(bytes);
  } catch (error) {
    if (error instanceof OcrError) throw error;
    throw new OcrError(
      400,
      "bad_image",
      `cannot decode the ${header.format}: ${(error as Error).message}`,
    );
  }
}

const PNG_CHANNELS: Record<number, number> = { 0: 1, 2: 3, 3: 1, 4: 2, 6: 4 };
/** Adam7 passes: x start, y start, x step, y step. */
const ADAM7 = [
  [0, 0, 8, 8],
  [4, 0, 8, 8],
  [0, 4, 4, 8],
  [2, 0, 4, 4],
  [0, 2, 2, 4],
  [1, 0, 2, 2],
  [0, 1, 1, 2],
];

/**
 * Inflates the PNG's IDAT chunks with a cap at the exact size the header
 * declares (filter byte + packed samples per row, per Adam7 pass when
 * interlaced): 413 when the stream inflates to more.
 */
function checkPngData(bytes: Uint8Array): void {
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const width = view.getUint32(16);
  const height = view.getUint32(20);
  const bitDepth = bytes[24];
  const channels = PNG_CHANNELS[bytes[25]];
  if (channels === undefined || ![1, 2, 4, 8, 16].includes(bitDepth)) {
    throw new OcrError(
      400,
      "bad_image",
      `the PNG header has colour type ${bytes[25]} and bit depth ${bitDepth}`,
    );
  }
  const rowBytes = (w: number) => 1 + Math.ceil(w * channels * bitDepth / 8);
  const passes = bytes[28] === 1 ? ADAM7 : [[0, 0, 1, 1]];
  let expected = 0;
  for (const [x0, y0, dx, dy] of passes) {
    const w = Math.ceil((width - x0) / dx);
    const h = Math.ceil((height - y0) / dy);
    if (w > 0 && h > 0) expected += h * rowBytes(w);
  }
  const idat: Uint8Array[] = [];
  for (let offset = 8; offset + 8 <= bytes.length;) {
    const length = view.getUint32(offset);
    const type = String.fromCharCode(...bytes.subarray(offset + 4, offset + 8));
    if (type === "IDAT") idat.push(bytes.subarray(offset + 8, offset + 8 + length));
    if (type === "IEND") break;
    offset += 12 + length;
  }
  try {
    inflateSync(concat(idat), { maxOutputLength: expected });
  } catch (error) {
    if ((error as { code?: string }).code !== "ERR_BUFFER_TOO_LARGE") throw error;
    throw new OcrError(
      413,
      "image_too_large",
      `the PNG's pixel data inflates to more than the ${expected} bytes its ${width} × ${height} header allows`,
    );
  }
}

function fromPng(bytes: Uint8Array): RgbImage {
  const png = decodePng(bytes);
  const source = png.palette ? convertIndexedToRgb(png) : png.data;
  const channels = source.length / (png.width * png.height);
  const shift = png.depth === 16 && !png.palette ? 8 : 0;
  const max = png.depth === 16 && !png.palette ? 255 : (1 << Math.min(png.depth, 8)) - 1;
  const scale = png.depth < 8 && !png.palette ? 255 / max : 1;
  return toRgb(png.width, png.height, channels, (i) => (source[i] >> shift) * scale);
}

/**
 * What jpeg-js allocates for each pixel at most: coefficient blocks of up to
 * four components (4 bytes each), their sample lines, and the RGBA output.
 */
const JPEG_BYTES_PER_PIXEL = 24;

function fromJpeg(bytes: Uint8Array, maxPixels: number): RgbImage {
  const image = jpeg.decode(bytes, {
    useTArray: true,
    formatAsRGBA: true,
    maxResolutionInMP: Math.ceil(maxPixels / 1e6),
    maxMemoryUsageInMB: Math.ceil((maxPixels * JPEG_BYTES_PER_PIXEL + bytes.length) / 2 ** 20) + 4,
  });
  return toRgb(image.width, image.height, 4, (i) => image.data[i]);
}

/** RGB from 1 (grey), 2 (grey + alpha), 3 (RGB) or 4 (RGBA) channels, alpha over white. */
function toRgb(
  width: number,
  height: number,
  channels: number,
  sample: (index: number) => number,
): RgbImage {
  const data = new Uint8Array(width * height * 3);
  const hasAlpha = channels === 2 || channels === 4;
  for (let p = 0; p < width * height; p++) {
    const at = p * channels;
    const alpha = hasAlpha ? sample(at + channels - 1) / 255 : 1;
    const over = (value: number) => Math.round(value * alpha + 255 * (1 - alpha));
    if (channels <= 2) {
      const grey = over(sample(at));
      data[p * 3] = data[p * 3 + 1] = data[p * 3 + 2] = grey;
    } else {
      data[p * 3] = over(sample(at));
      data[p * 3 + 1] = over(sample(at + 1));
      data[p * 3 + 2] = over(sample(at + 2));
    }
  }
  return { width, height, data };
}
