import { assert, assertEquals } from "../helpers/assert.ts";
import { BodyTooLargeError, createLimitsStage } from "../../src/pipeline/limits.ts";
import { chain, type Target } from "../../src/pipeline/stage.ts";
import { BodyBudget } from "../../src/pipeline/body_budget.ts";
import { bufferedBody } from "../../src/pipeline/buffered_body.ts";
import { serveTarget } from "../helpers/test_server.ts";

const encoder = new TextEncoder();

/** A request body sent chunked (no Content-Length): `count` chunks of `size` bytes. */
function chunkedBody(count: number, size: number): ReadableStream<Uint8Array> {
  return ReadableStream.from(Array.from({ length: count }, () => encoder.encode("x".repeat(size))));
}

const echoBody: Target = async (c) => new Response(await c.req.text());

Deno.test("createLimitsStage returns null when no limit is set", () => {
  assertEquals(createLimitsStage({}), null);
});

Deno.test("more headers than maxHeaderCount answer 431", async () => {
  const stage = createLimitsStage({ maxHeaderCount: 8 });
  assert(stage);
  await using server = serveTarget(chain([stage], () => new Response("ok")));
  // fetch adds a few of its own (host, accept, accept-encoding, user-agent, ...).
  const few = await fetch(server.url, { headers: { "x-a": "1" } });
  assertEquals([few.status, await few.text()], [200, "ok"]);
  const headers = Object.fromEntries(Array.from({ length: 10 }, (_, i) => [`x-h${i}`, "1"]));
  const many = await fetch(server.url, { headers });
  assertEquals(many.status, 431);
  const body = await many.json();
  assertEquals([body.error.code, body.error.requestId], ["headers_too_large", "test-request"]);
});

Deno.test("more header bytes than maxHeaderSize answer 431", async () => {
  const stage = createLimitsStage({ maxHeaderSize: 512 });
  assert(stage);
  await using server = serveTarget(chain([stage], () => new Response("ok")));
  const small = await fetch(server.url, { headers: { "x-small": "y".repeat(100) } });
  assertEquals([small.status, await small.text()], [200, "ok"]);
  const large = await fetch(server.url, { headers: { "x-large": "y".repeat(600) } });
  assertEquals(large.status, 431);
  assertEquals((await large.json()).error.code, "headers_too_large");
});

Deno.test("Content-Length over maxBodySize answers 413 without calling the target", async () => {
  let targetCalls = 0;
  const stage = createLimitsStage({ maxBodySize: 100 });
  assert(stage);
  await using server = serveTarget(chain([stage], (c) => {
    targetCalls += 1;
    return echoBody(c);
  }));
  const fits = await fetch(server.url, { method: "POST", body: "x".repeat(100) });
  assertEquals([fits.status, (await fits.text()).length], [200, 100]);
  const tooLarge = await fetch(server.url, { method: "POST", body: "x".repeat(101) });
  assertEquals(tooLarge.status, 413);
  const body = await tooLarge.json();
  assertEquals([body.error.code, body.error.status], ["body_too_large", 413]);
  assertEquals(targetCalls, 1);
});

Deno.test("a chunked body within maxBodySize reaches the target whole", async () => {
  const stage = createLimitsStage({ maxBodySize: 300 });
  assert(stage);
  await using server = serveTarget(chain([stage], echoBody));
  const res = await fetch(server.url, { method: "POST", body: chunkedBody(3, 100) });
  assertEquals([res.status, await res.text()], [200, "x".repeat(300)]);
});

Deno.test("a chunked body over maxBodySize answers 413 when the target's read fails", async () => {
  const stage = createLimitsStage({ maxBodySize: 250 });
  assert(stage);
  let readError: unknown;
  await using server = serveTarget(chain([stage], async (c) => {
    try {
      return new Response(await c.req.text());
    } catch (error) {
      readError = error;
      throw error;
    }
  }));
  const res = await fetch(server.url, { method: "POST", body: chunkedBody(3, 100) });
  assertEquals(res.status, 413);
  assertEquals((await res.json()).error.code, "body_too_large");
  assert(readError instanceof BodyTooLargeError, `target saw ${readError}`);
});

Deno.test("a chunked body over maxBodySize turns the target's own 502 into 413", async () => {
  const stage = createLimitsStage({ maxBodySize: 250 });
  assert(stage);
  await using server = serveTarget(chain([stage], async (c) => {
    // Like a proxy: stream the body on, and map a failure to a gateway error.
    const reader = c.req.raw.body!.getReader();
    try {
      while (!(await reader.read()).done);
      return new Response("all read");
    } catch {
      return Response.json({ error: "upstream failed" }, { status: 502 });
    }
  }));
  const res = await fetch(server.url, { method: "POST", body: chunkedBody(5, 100) });
  assertEquals(res.status, 413);
  await res.body?.cancel();
});

Deno.test("the body of a request without one is left alone", async () => {
  const stage = createLimitsStage({ maxBodySize: 10 });
  assert(stage);
  await using server = serveTarget(chain([stage], (c) => new Response(String(c.req.raw.body))));
  const res = await fetch(server.url);
  assertEquals([res.status, await res.text()], [200, "null"]);
});

/** A target that reads the body whole, as the function and topic targets do, and says its size. */
const bufferedSize: Target = async (c) =>
  new Response(String((await bufferedBody(c).read(c.req.raw)).length));

Deno.test("a buffered route holds a declared body to 10MB by default, before the target runs", async () => {
  let targetCalls = 0;
  const budget = new BodyBudget(64 * 1024 * 1024);
  const stage = createLimitsStage({}, { target: "buffered", plugins: false, budget });
  assert(stage);
  await using server = serveTarget(chain([stage], (c) => {
    targetCalls += 1;
    return bufferedSize(c);
  }));
  const fits = await fetch(server.url, { method: "POST", body: new Uint8Array(10 * 1024 * 1024) });
  assertEquals([fits.status, await fits.text()], [200, String(10 * 1024 * 1024)]);
  const over = await fetch(server.url, {
    method: "POST",
    body: new Uint8Array(10 * 1024 * 1024 + 1),
  });
  assertEquals([over.status, (await over.json()).error.code], [413, "body_too_large"]);
  assertEquals(targetCalls, 1);
  assertEquals(budget.used, 0);
});

Deno.test("a streamed route without limits or plugins gets no stage", () => {
  const budget = new BodyBudget(1024);
  assertEquals(createLimitsStage({}, { target: "streamed", plugins: false, budget }), null);
  assert(createLimitsStage({}, { target: "streamed", plugins: true, budget }));
});

Deno.test("a body the budget cannot hold answers 503 with Retry-After; answered bodies give it back", async () => {
  const budget = new BodyBudget(150);
  const stage = createLimitsStage({}, { target: "buffered", plugins: false, budget });
  assert(stage);
  let release!: () => void;
  const held = new Promise<void>((resolve) => release = resolve);
  await using server = serveTarget(chain([stage], async (c) => {
    const bytes = await bufferedBody(c).read(c.req.raw);
    if (bytes.length === 100) await held;
    return new Response(String(bytes.length));
  }));
  const first = fetch(server.url, { method: "POST", body: "x".repeat(100) });
  while (budget.used === 0) await new Promise((resolve) => setTimeout(resolve, 5));
  const refused = await fetch(server.url, { method: "POST", body: "x".repeat(60) });
  assertEquals(refused.status, 503);
  assertEquals(refused.headers.get("retry-after"), "1");
  assertEquals((await refused.json()).error.code, "body_budget");
  release();
  assertEquals(await (await first).text(), "100");
  assertEquals(budget.used, 0);
  const later = await fetch(server.url, { method: "POST", body: "x".repeat(60) });
  assertEquals(await later.text(), "60");
});

Deno.test("a chunked body read whole counts against the budget chunk by chunk", async () => {
  const budget = new BodyBudget(250);
  const stage = createLimitsStage({}, { target: "buffered", plugins: false, budget });
  assert(stage);
  await using server = serveTarget(chain([stage], bufferedSize));
  const fits = await fetch(server.url, { method: "POST", body: chunkedBody(2, 100) });
  assertEquals(await fits.text(), "200");
  const over = await fetch(server.url, { method: "POST", body: chunkedBody(3, 100) });
  assertEquals([over.status, (await over.json()).error.code], [503, "body_budget"]);
  assertEquals(budget.used, 0);
});
