/**
 * Generic inference through the model registry: real onnxruntime-web
 * sessions in inference Workers, on the tiny Add and MatMul models that
 * fixtures/build_models.ts writes.
 */

import { Hono } from "hono";
import { Bus } from "../../src/bus/bus.ts";
import { join } from "node:path";
import { configFor } from "../helpers/config.ts";
import { callFunction, FunctionCallError } from "../../src/functions/call.ts";
import { ModelRegistry } from "../../src/models/registry.ts";
import { MetricsRegistry } from "../../src/observability/metrics.ts";
import { assert, assertEquals, assertStringIncludes } from "../helpers/assert.ts";

const FIXTURES = new URL("./fixtures/", import.meta.url).pathname;

async function startRegistry(models: unknown[]) {
  const { config, context } = configFor({ models });
  for (const model of config.models) model.path = join(FIXTURES, model.path);
  const bus = new Bus();
  const metrics = new MetricsRegistry();
  const registry = new ModelRegistry(bus, metrics);
  const change = await registry.prepare(config, context);
  await change.commit();
  return {
    bus,
    metrics,
    registry,
    async [Symbol.asyncDispose]() {
      await registry.stop();
    },
  };
}

const f32 = (dims: number[], data: number[]) => ({ type: "float32", dims, data });

async function rejection(promise: Promise<unknown>): Promise<Error & { status?: number }> {
  try {
    await promise;
  } catch (error) {
    return error as Error & { status?: number };
  }
  throw new Error("expected a rejection");
}

Deno.test("add and matmul models give their known outputs", async () => {
  await using gw = await startRegistry([
    { name: "add", path: "add.onnx" },
    { name: "matmul", path: "matmul.onnx" },
  ]);
  const sum = await gw.registry.infer("add", {
    a: f32([2, 3], [1, 2, 3, 4, 5, 6]),
    b: f32([2, 3], [10, 20, 30, 40, 50, 60]),
  });
  assertEquals(sum.outputs.sum, f32([2, 3], [11, 22, 33, 44, 55, 66]));
  const product = await gw.registry.infer("matmul", { x: f32([2, 2], [1, 1, 2, 0]) });
  // [1,1]·[[1,2],[3,4]] = [4,6]; [2,0]·W = [2,4]
  assertEquals(product.outputs.y, f32([2, 2], [4, 6, 2, 4]));
});

Deno.test("wrong type, shape, names and data length are 400 with the expected signature", async () => {
  await using gw = await startRegistry([{ name: "add", path: "add.onnx" }]);
  const ok = f32([1, 3], [1, 2, 3]);
  const cases: [unknown, string][] = [
    [
      { a: { type: "int32", dims: [1, 3], data: [1, 2, 3] }, b: ok },
      "inputs.a: type int32, expected float32",
    ],
    [{ a: f32([1, 4], [1, 2, 3, 4]), b: ok }, "inputs.a: shape [1,4], expected [N,3]"],
    [{ a: ok }, "inputs.b: missing"],
    [{ a: ok, b: ok, c: ok }, "inputs.c: the model has no such input"],
    [{ a: f32([1, 3], [1, 2]), b: ok }, "inputs.a.data: 2 values, but dims [1,3] need 3"],
  ];
  for (const [inputs, message] of cases) {
    const error = await rejection(gw.registry.infer("add", inputs));
    assertEquals(error.status, 400);
    assertStringIncludes(error.message, message);
    if (!message.includes(".data")) {
      assertStringIncludes(error.message, "the model takes a: float32[N,3], b: float32[N,3]");
    }
  }
  const unknown = await rejection(gw.registry.infer("nope", {}));
  assertEquals(unknown.status, 404);
});

Deno.test("a file that is not ONNX is reported with its path and does not stop the others", async () => {
  const dir = await Deno.makeTempDir();
  try {
    await Deno.writeTextFile(`${dir}/broken.onnx`, "this is not a model");
    await using gw = await startRegistry([
      { name: "broken", path: `${dir}/broken.onnx` },
      { name: "add", path: "add.onnx" },
    ]);
    const error = await rejection(gw.registry.infer("broken", {}));
    assertEquals(error.status, 503);
    // The path is the error's detail (log, admin API), not its message (what clients see).
    assertStringIncludes(
      String((error as { detail?: { reason?: string } }).detail?.reason),
      `${dir}/broken.onnx`,
    );
    const app = new Hono();
    gw.registry.admin(app);
    const listing = await (await app.request("/models")).json();
    const broken = listing.models.find((m: { name: string }) => m.name === "broken");
    assertEquals(broken.state, "failed");
    assertStringIncludes(broken.error, `${dir}/broken.onnx`);
    const add = listing.models.find((m: { name: string }) => m.name === "add");
    assertEquals(add.state, "loaded");
    assertEquals(add.inputs, [
      { name: "a", type: "float32", dims: ["N", 3] },
      { name: "b", type: "float32", dims: ["N", 3] },
    ]);
    const sum = await gw.registry.infer("add", {
      a: f32([1, 3], [1, 1, 1]),
      b: f32([1, 3], [1, 2, 3]),
    });
    assertEquals(sum.outputs.sum.data, [2, 3, 4]);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("models are functions on the bus: fn/model/<name>", async () => {
  await using gw = await startRegistry([{ name: "matmul", path: "matmul.onnx" }]);
  const source = { listener: "test", protocol: "gateway" } as const;
  const result = await callFunction(
    gw.bus,
    "model.matmul",
    { inputs: { x: f32([1, 2], [0, 1]) } },
    {
      source,
      timeout: 10_000,
    },
  ) as { outputs: { y: { data: number[] } } };
  assertEquals(result.outputs.y.data, [3, 4]);
  const error = await rejection(
    callFunction(gw.bus, "model.matmul", { inputs: { x: f32([1, 3], [0, 1, 2]) } }, {
      source,
      timeout: 10_000,
    }),
  );
  assert(error instanceof FunctionCallError);
  assertEquals(error.type, "bad_arguments");
});

Deno.test("concurrent compatible requests are batched; each gets its own rows", async () => {
  await using gw = await startRegistry([
    { name: "add", path: "add.onnx", maxBatch: 4, batchWindowMs: 200 },
  ]);
  const results = await Promise.all([0, 1, 2, 3].map((i) =>
    gw.registry.infer("add", {
      a: f32([1, 3], [i, i, i]),
      b: f32([1, 3], [1, 2, 3]),
    })
  ));
  results.forEach((result, i) =>
    assertEquals(result.outputs.sum, f32([1, 3], [i + 1, i + 2, i + 3]))
  );
  const metrics = gw.metrics.render();
  assertStringIncludes(metrics, 'gateway_model_batch_size_bucket{model="add",le="2"} 0');
  assertStringIncludes(metrics, 'gateway_model_batch_size_bucket{model="add",le="4"} 1');
});

Deno.test("the result cache answers a repeated input without a run", async () => {
  await using gw = await startRegistry([{ name: "add", path: "add.onnx", cacheSize: 4 }]);
  const inputs = { a: f32([1, 3], [1, 2, 3]), b: f32([1, 3], [3, 2, 1]) };
  const first = await gw.registry.infer("add", inputs);
  const second = await gw.registry.infer("add", inputs);
  assertEquals(second, first);
  const metrics = gw.metrics.render();
  assertStringIncludes(metrics, 'gateway_model_cache_total{model="add",result="miss"} 1');
  assertStringIncludes(metrics, 'gateway_model_cache_total{model="add",result="hit"} 1');
  assertStringIncludes(metrics, 'gateway_model_runs_total{model="add",result="ok"} 1');
});

Deno.test("tensor data may travel as base64 of the little-endian bytes", async () => {
  await using gw = await startRegistry([{ name: "add", path: "add.onnx" }]);
  const bytes = (values: number[]) =>
    btoa(String.fromCharCode(...new Uint8Array(new Float32Array(values).buffer)));
  const inputs = {
    a: { type: "float32", dims: [1, 3], data: bytes([1, 2, 3]) },
    b: { type: "float32", dims: [1, 3], data: bytes([0.25, 0.25, 0.25]) },
  };
  const answer = await gw.registry.infer("add", inputs, true);
  assertEquals(answer.outputs.sum, {
    type: "float32",
    dims: [1, 3],
    data: bytes([1.25, 2.25, 3.25]),
  });
  const short = await rejection(
    gw.registry.infer("add", { ...inputs, a: { ...inputs.a, data: bytes([1, 2]) } }),
  );
  assertEquals(short.status, 400);
  assertStringIncludes(short.message, "inputs.a.data: 8 bytes, but float32 dims [1,3] need 12");
});
