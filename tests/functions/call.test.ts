/**
 * Function calls on the in-process bus carry values: what the caller passes
 * is what the function gets, what it returns is what the caller gets, with
 * no JSON in between; only a party that reads bytes makes them. Values must
 * be JSON-compatible in process too, so a call means the same on both sides
 * of a process boundary.
 */

import { Bus } from "../../src/bus/bus.ts";
import { encodeValue, jsonValueError } from "../../src/bus/message.ts";
import {
  callFunction,
  errorBody,
  FunctionCallError,
  serveFunction,
} from "../../src/functions/call.ts";
import { GatewayError } from "../../src/errors.ts";
import { assert, assertEquals } from "../helpers/assert.ts";

const SOURCE = { listener: "test", protocol: "gateway" } as const;
const OPTIONS = { source: SOURCE, timeout: 5000 };

async function callError(call: () => Promise<unknown>): Promise<FunctionCallError> {
  try {
    await call();
  } catch (error) {
    assert(error instanceof FunctionCallError, `${error}`);
    return error;
  }
  throw new Error("the call did not fail");
}

Deno.test("in process, the arguments and the result are the very values passed", async () => {
  const bus = new Bus();
  const args = { order: { id: 7, lines: [{ sku: "a", qty: 2 }] } };
  const result = { total: 3, tags: ["x"] };
  let received: unknown;
  serveFunction(bus, "shop", "total", (value) => {
    received = value;
    return result;
  });
  const answer = await callFunction(bus, "shop.total", args, OPTIONS);
  assert(received === args, "the function got a copy of the arguments");
  assert(answer === result, "the caller got a copy of the result");
});

Deno.test("a subscriber that reads bytes gets the value's JSON, encoded once", async () => {
  const bus = new Bus();
  const payloads: Uint8Array[] = [];
  bus.subscribe("fn/bytes/echo", (message) => {
    payloads.push(message.payload, message.payload);
    message.reply!(message.payload);
  }, { owner: "bytes" });
  const answer = await callFunction(bus, "bytes.echo", { a: [1, "two", null] }, OPTIONS);
  assertEquals(answer, { a: [1, "two", null] });
  assert(payloads[0] === payloads[1], "the payload was encoded twice");
  assertEquals(new TextDecoder().decode(payloads[0]), '{"a":[1,"two",null]}');
});

Deno.test("a caller that sends bytes gets the result's JSON", async () => {
  const bus = new Bus();
  serveFunction(bus, "math", "add", ({ a, b }: { a: number; b: number }) => ({ sum: a + b }));
  const reply = await bus.request("fn/math/add", encodeValue({ a: 1, b: 2 }), OPTIONS);
  assertEquals(new TextDecoder().decode(reply.payload), '{"sum":3}');
  const broken = await bus.request("fn/math/add", new TextEncoder().encode("{"), OPTIONS);
  assertEquals(broken.meta.error, "bad_arguments");
});

Deno.test("values that JSON cannot carry fail the call in process too, naming where", async () => {
  const bus = new Bus();
  serveFunction(bus, "clock", "now", (kind: string) => {
    if (kind === "date") return { at: new Date(0) };
    if (kind === "nan") return { values: [1, NaN] };
    return { ok: true };
  });
  const badArgs = await callError(() =>
    callFunction(bus, "clock.now", { when: new Map() }, OPTIONS)
  );
  assertEquals([badArgs.type, badArgs.status], ["bad_arguments", 400]);
  assertEquals(
    badArgs.message,
    "arguments.when: a Map is not JSON; pass plain objects, arrays, strings, numbers",
  );
  const date = await callError(() => callFunction(bus, "clock.now", "date", OPTIONS));
  assertEquals([date.type, date.status], ["bad_result", 502]);
  assertEquals(
    date.message,
    "result.at: a Date is not JSON; pass plain objects, arrays, strings, numbers",
  );
  const nan = await callError(() => callFunction(bus, "clock.now", "nan", OPTIONS));
  assertEquals(nan.message, "result.values[1]: NaN is not a JSON number");
  assertEquals(await callFunction(bus, "clock.now", "ok", OPTIONS), { ok: true });
});

Deno.test("jsonValueError accepts JSON values and refuses the rest", () => {
  const cycle: Record<string, unknown> = {};
  cycle.self = cycle;
  const shared = { x: 1 };
  assertEquals(
    jsonValueError({ a: shared, b: shared, c: undefined, d: Object.create(null) }),
    undefined,
  );
  assertEquals(jsonValueError(cycle), "value.self: a cycle is not JSON");
  assertEquals(
    jsonValueError([new Uint8Array(1)]),
    "value[0]: a Uint8Array is not JSON; pass plain objects, arrays, strings, numbers",
  );
  assertEquals(jsonValueError({ f: () => 1 }), "value.f: a function is not JSON");
  assertEquals(jsonValueError([undefined]), "value[0]: undefined is not JSON");
  assertEquals(jsonValueError(Infinity), "value: Infinity is not a JSON number");
  let deep: unknown = 1;
  for (let i = 0; i < 600; i++) deep = [deep];
  assert(jsonValueError(deep)!.endsWith("nested deeper than 512 levels"));
});

Deno.test("a handler's error keeps its type, and a GatewayError its code, across the call", async () => {
  const bus = new Bus();
  serveFunction(bus, "fail", "+", (_args, call) => {
    if (call.name === "coded") throw new GatewayError(504, "timeout", "model run took too long");
    throw new RangeError("out of range");
  });
  const coded = await callError(() => callFunction(bus, "fail.coded", null, OPTIONS));
  assertEquals([coded.type, coded.status, coded.message], [
    "timeout",
    504,
    "model run took too long",
  ]);
  const plain = await callError(() => callFunction(bus, "fail.plain", null, OPTIONS));
  assertEquals([plain.type, plain.status], ["RangeError", 500]);
  assert(plain.traceback?.includes("RangeError: out of range"), plain.traceback);
  assertEquals(errorBody("nope"), { type: "Error", message: "nope" });
});

Deno.test("nothing serving and no time left fail with their types", async () => {
  const bus = new Bus();
  const none = await callError(() => callFunction(bus, "nobody.here", null, OPTIONS));
  assertEquals([none.type, none.status], ["no_responder", 503]);
  const late = await callError(() =>
    callFunction(bus, "nobody.here", null, { ...OPTIONS, deadline: Date.now() - 1 })
  );
  assertEquals([late.type, late.status], ["timeout", 504]);
});
