/**
 * Image decoding limits: a PNG whose pixel data inflates past the size its
 * header declares (a decompression bomb) is refused before it is inflated in
 * full, and a real JPEG decodes within the memory its pixel limit allows.
 */

import { crc32, deflateSync } from "node:zlib";
import { decodeImage, imageHeader } from "../../src/models/ocr/image.ts";
import { OcrError } from "../../src/models/ocr/types.ts";
import { assertEquals, assertStringIncludes } from "../helpers/assert.ts";

function chunk(type: string, data: Uint8Array): Uint8Array {
  const body = new Uint8Array([...new TextEncoder().encode(type), ...data]);
  const out = new Uint8Array(body.length + 8);
  const view = new DataView(out.buffer);
  view.setUint32(0, data.length);
  out.set(body, 4);
  view.setUint32(body.length + 4, crc32(body));
  return out;
}

/** A grey 8-bit PNG of `width` × `height` whose IDAT holds `pixels` (filter bytes included). */
function png(width: number, height: number, pixels: Uint8Array, interlace = 0): Uint8Array {
  const ihdr = new Uint8Array(13);
  const view = new DataView(ihdr.buffer);
  view.setUint32(0, width);
  view.setUint32(4, height);
  ihdr.set([8, 0, 0, 0, interlace], 8);
  const parts = [
    new Uint8Array([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]),
    chunk("IHDR", ihdr),
    chunk("IDAT", deflateSync(pixels)),
    chunk("IEND", new Uint8Array()),
  ];
  return new Uint8Array(parts.flatMap((part) => [...part]));
}

const LIMITS = { maxPixels: 1_000_000, maxSide: 10_000 };

function refusal(bytes: Uint8Array): OcrError {
  try {
    decodeImage(bytes, LIMITS);
  } catch (error) {
    return error as OcrError;
  }
  throw new Error("expected the image to be refused");
}

Deno.test("a 1 × 1 PNG whose IDAT inflates to 64 MB is refused 413 naming the limit", () => {
  const bomb = png(1, 1, new Uint8Array(64 << 20));
  const error = refusal(bomb);
  assertEquals([error.status, error.code], [413, "image_too_large"]);
  assertStringIncludes(error.message, "more than the 2 bytes its 1 × 1 header allows");
});

Deno.test("PNGs whose data has the exact declared size decode, interlaced or not", () => {
  // 3 × 2 grey: 2 rows of (filter byte + 3 samples).
  const plain = decodeImage(png(3, 2, new Uint8Array([0, 10, 20, 30, 0, 40, 50, 60])), LIMITS);
  assertEquals(Array.from(plain.data.filter((_, i) => i % 3 === 0)), [10, 20, 30, 40, 50, 60]);
  // Adam7 on 3 × 2: pass 1 has (0,0); pass 4 has (2,0); pass 6 has (1,0); pass 7 row 1 has (0..2,1).
  const adam7 = new Uint8Array([0, 10, 0, 30, 0, 20, 0, 40, 50, 60]);
  const interlaced = decodeImage(png(3, 2, adam7, 1), LIMITS);
  assertEquals(Array.from(interlaced.data.filter((_, i) => i % 3 === 0)), [10, 20, 30, 40, 50, 60]);
  const tooLong = refusal(png(3, 2, new Uint8Array(adam7.length + 1), 1));
  assertEquals(tooLong.status, 413);
  assertStringIncludes(tooLong.message, "more than the 10 bytes its 3 × 2 header allows");
});

Deno.test("a JPEG decodes with ocr.maxPixels set to exactly its size", async () => {
  const bytes = await Deno.readFile(new URL("./fixtures/noisy.jpg", import.meta.url));
  const { width, height } = imageHeader(bytes);
  const image = decodeImage(bytes, { maxPixels: width * height, maxSide: 10_000 });
  assertEquals([image.width, image.height], [width, height]);
});
