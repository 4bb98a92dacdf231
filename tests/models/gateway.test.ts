/**
 * Models and OCR through the real gateway process: `POST /models/:name/infer`
 * and `POST /ocr` routes, `GET /models` on the admin API, and the event loop
 * staying responsive while pages are read.
 */

import { startGateway } from "../helpers/gateway.ts";
import { assert, assertEquals, assertStringIncludes } from "../helpers/assert.ts";

const FIXTURES = new URL("./fixtures/", import.meta.url);
const fixture = (name: string) => Deno.readFile(new URL(name, FIXTURES));

function gatewayConfig(port: number, ocr: Record<string, unknown> = {}) {
  return {
    listeners: { web: { type: "http", port } },
    log: { access: false },
    models: [
      { name: "add", path: new URL("add.onnx", FIXTURES).pathname, description: "a + b" },
      { name: "broken", path: "missing.onnx" },
    ],
    ocr: {
      threads: 1,
      templates: { invoice: { number: { label: "Invoice No", pattern: "(INV-[0-9-]+)" } } },
      ...ocr,
    },
    routes: [
      { match: { path: "/models/:name/infer", methods: ["POST"] }, target: { model: {} } },
      { match: { path: "/ocr", methods: ["POST"] }, target: { ocr: {} } },
      { match: { path: "/ping" }, target: { respond: { body: "pong" } } },
    ],
  };
}

Deno.test("the gateway serves generic inference, OCR and GET /models", async () => {
  await using gw = await startGateway(gatewayConfig(0));
  const base = `http://127.0.0.1:${await gw.port("web")}`;
  const infer = await fetch(`${base}/models/add/infer`, {
    method: "POST",
    body: JSON.stringify({
      inputs: {
        a: { type: "float32", dims: [1, 3], data: [1, 2, 3] },
        b: { type: "float32", dims: [1, 3], data: [0.5, 0.5, 0.5] },
      },
    }),
  });
  assertEquals(await infer.json(), {
    outputs: { sum: { type: "float32", dims: [1, 3], data: [1.5, 2.5, 3.5] } },
  });
  const wrong = await fetch(`${base}/models/add/infer`, {
    method: "POST",
    body: JSON.stringify({ inputs: { a: { type: "float32", dims: [3], data: [1, 2, 3] } } }),
  });
  assertEquals(wrong.status, 400);
  assertStringIncludes((await wrong.json()).error.message, "expected [N,3]");
  const unknown = await fetch(`${base}/models/nope/infer`, { method: "POST", body: "{}" });
  assertEquals(unknown.status, 404);
  await unknown.body?.cancel();
  const broken = await fetch(`${base}/models/broken/infer`, { method: "POST", body: "{}" });
  assertEquals(broken.status, 503);
  const brokenError = (await broken.json()).error;
  assertEquals(brokenError.code, "model_unavailable");
  assert(!brokenError.message.includes(gw.dir), "the client sees no file path");

  const ocr = await fetch(`${base}/ocr?template=invoice`, {
    method: "POST",
    headers: { "content-type": "image/png" },
    body: await fixture("english.png"),
  });
  assertEquals(ocr.status, 200);
  const page = await ocr.json();
  assertEquals(page.lines.length, 3);
  assertEquals(page.fields, { number: "INV-2024-0042" });
  assertStringIncludes(page.text.replace(/\s+/g, ""), "Date:2024-03-15");
  const notImage = await fetch(`${base}/ocr`, { method: "POST", body: "plain text" });
  assertEquals(notImage.status, 400);
  assertEquals((await notImage.json()).error.code, "unsupported_image");

  const listing = await (await gw.admin("/models")).json();
  const add = listing.models.find((m: { name: string }) => m.name === "add");
  assertEquals(add.inputs, [
    { name: "a", type: "float32", dims: ["N", 3] },
    { name: "b", type: "float32", dims: ["N", 3] },
  ]);
  assertEquals([add.calls, add.errors, add.restarts], [1, 0, 0]);
  assertEquals(add.description, "a + b");
  assert(typeof add.p99 === "number" && typeof add.loadMs === "number");
  const broke = listing.models.find((m: { name: string }) => m.name === "broken");
  assertEquals(broke.state, "failed");
  assertStringIncludes(broke.error, `${gw.dir}/missing.onnx`);
  await gw.waitForLine(/model \W{0,2}broken\W{0,2} failed to load/);
});

Deno.test("HTTP requests are answered while OCR reads a page (inference is off the I/O loop)", async () => {
  await using gw = await startGateway(gatewayConfig(0));
  const base = `http://127.0.0.1:${await gw.port("web")}`;
  const page = await fixture("english.png");
  const read = async () => {
    const res = await fetch(`${base}/ocr`, { method: "POST", body: page });
    assertEquals(res.status, 200);
    await res.body?.cancel();
    return "ocr";
  };
  const ping = async () => {
    const res = await fetch(`${base}/ping`);
    assertEquals(res.status, 200);
    await res.body?.cancel();
    return "ping";
  };
  await read(); // sessions created
  // The latency figures are in `deno task bench models`; here only the order is asserted:
  // a ping sent while a page is being read is answered before the page, every time.
  for (let i = 0; i < 5; i++) {
    const reading = read();
    const first = await Promise.race([reading, ping()]);
    assertEquals(first, "ping", `round ${i}: the ping waited for the OCR page`);
    await reading;
  }
});
