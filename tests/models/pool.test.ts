/**
 * The inference pool after a timeout: the run is answered 504 at once, but
 * its Worker is still at work, so the pool keeps counting it busy until the
 * Worker's reply arrives.
 */

import { GatewayConfig } from "../../src/sections.ts";
import { InferencePool } from "../../src/models/pool.ts";
import { resolveModelFile } from "../../src/models/model_path.ts";
import type { OcrSettings } from "../../src/models/ocr/types.ts";
import { assertEquals } from "../helpers/assert.ts";

const { ocr } = GatewayConfig.parse({});
const SETTINGS: OcrSettings = {
  ...ocr,
  detection: resolveModelFile(ocr.detection),
  recognition: resolveModelFile(ocr.recognition),
  classifier: resolveModelFile(ocr.classifier),
  keys: resolveModelFile(ocr.keys),
};

Deno.test("a run past its timeout keeps its Worker counted busy until the Worker answers", async () => {
  const pool = new InferencePool({ workers: 1, timeout: 1 });
  try {
    const page = await Deno.readFile(new URL("./fixtures/english.png", import.meta.url));
    // Starting the Worker and loading the OCR models takes far longer than 1 ms.
    const error = await pool.ocr(1, SETTINGS, page, {}).catch((e) => e);
    assertEquals([error.status, error.type], [504, "timeout"]);
    assertEquals(pool.busy(1), 1);
    while (pool.busy(1) > 0) await new Promise((resolve) => setTimeout(resolve, 20));
  } finally {
    pool.stop();
  }
});
