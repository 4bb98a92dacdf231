import { assert, assertEquals } from "../helpers/assert.ts";
import { BodyTooLargeError, createLimitsStage } from "../../src/pipeline/limits.ts";
import { chain, type Target } from "../../src/pipeline/stage.ts";
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
