import { assert, assertEquals, rejectionOf } from "../helpers/assert.ts";
import { BodyBudget, BodyBudgetError } from "../../src/pipeline/body_budget.ts";
import { BodyTooLargeError, BufferedBody } from "../../src/pipeline/buffered_body.ts";
import { GatewayError } from "../../src/errors.ts";

const encoder = new TextEncoder();

function post(body: BodyInit, headers: Record<string, string> = {}): Request {
  return new Request("http://gateway.test/", { method: "POST", body, headers });
}

function chunks(...parts: string[]): ReadableStream<Uint8Array> {
  return ReadableStream.from(parts.map((part) => encoder.encode(part)));
}

Deno.test("a body is read once and the same bytes are given to every reader", async () => {
  const body = new BufferedBody(100);
  const request = post("hello");
  const first = await body.read(request);
  assertEquals(new TextDecoder().decode(first), "hello");
  assert(request.bodyUsed);
  assert(await body.read(request) === first, "the second read is the same buffer");
});

Deno.test("a declared length is refused over the limit and held in the budget before reading", async () => {
  const budget = new BodyBudget(10);
  await rejectionOf(new BufferedBody(4, budget).read(post("hello")), BodyTooLargeError);
  assertEquals(budget.used, 0);
  const body = new BufferedBody(100, budget);
  await body.read(post("hello"));
  assertEquals(budget.used, 5);
  const refused = await rejectionOf(
    new BufferedBody(100, budget).read(post("world!")),
    BodyBudgetError,
  );
  assertEquals([refused.status, new Headers(refused.headers).get("retry-after")], [503, "1"]);
  body.release();
  assertEquals(budget.used, 0);
});

Deno.test("a body without a length is counted as it arrives; one chunk is kept as it is", async () => {
  const budget = new BodyBudget(100);
  const body = new BufferedBody(8, budget);
  assertEquals(new TextDecoder().decode(await body.read(post(chunks("abc", "def")))), "abcdef");
  assertEquals(budget.used, 6);
  body.release();
  await rejectionOf(
    new BufferedBody(8, budget).read(post(chunks("abcde", "fghij"))),
    BodyTooLargeError,
  );
  const chunk = encoder.encode("only");
  const single = await new BufferedBody(8).read(post(ReadableStream.from([chunk])));
  assertEquals(new TextDecoder().decode(single), "only");
});

Deno.test("a body longer than its declared length is refused 400", async () => {
  const request = post(chunks("abc", "def"), { "content-length": "4" });
  const error = await rejectionOf(new BufferedBody(100).read(request), GatewayError);
  assertEquals([error.status, error.code], [400, "bad_body"]);
});

Deno.test("a replaced body is what later readers get", async () => {
  const body = new BufferedBody(100);
  body.replace(encoder.encode("new"));
  assertEquals(new TextDecoder().decode(await body.read(post("old"))), "new");
});

Deno.test("a Content-Length that is no length is read as a body without one", async () => {
  const budget = new BodyBudget(100);
  const body = new BufferedBody(100, budget);
  const bytes = await body.read(post(chunks("abc"), { "content-length": "abc" }));
  assertEquals([new TextDecoder().decode(bytes), budget.used], ["abc", 3]);
});
