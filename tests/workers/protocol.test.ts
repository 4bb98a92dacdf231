import { parseHello, parseWorkerMessage, ProtocolError } from "../../src/workers/protocol.ts";
import type { FrameMessage } from "../../src/workers/frame.ts";
import { assertEquals, assertMatch } from "../helpers/assert.ts";

const HELLO = {
  type: "hello",
  protocol: 2,
  worker: "orders",
  instance: 0,
  secret: "9f86d081",
  pid: 42,
  functions: ["create", "v2.list"],
  subscriptions: ["orders/#"],
  concurrency: 4,
  codecs: ["json", "msgpack"],
};

function refusal(run: () => unknown): string {
  try {
    run();
  } catch (error) {
    if (error instanceof ProtocolError) return error.message;
    throw error;
  }
  throw new Error("expected a ProtocolError");
}

Deno.test("a valid hello is accepted as it is", () => {
  assertEquals(parseHello(HELLO), HELLO);
  assertEquals(parseHello({ ...HELLO, codecs: undefined } as unknown as FrameMessage).codecs, [
    "json",
  ]);
});

Deno.test("a hello with a wrong field, version or codec names the problem", () => {
  const cases: [Record<string, unknown>, RegExp][] = [
    [{ ...HELLO, type: "call" }, /first message must be "hello", got "call"/],
    [{ ...HELLO, protocol: 1 }, /protocol version 1 is not supported \(this gateway speaks 2\)/],
    [{ ...HELLO, secret: undefined }, /"hello" message: "secret" must be a string/],
    [{ ...HELLO, worker: 5 }, /"hello" message: "worker" must be a string/],
    [{ ...HELLO, instance: -1 }, /"instance" must be an integer ≥ 0/],
    [{ ...HELLO, concurrency: 0 }, /"concurrency" must be an integer ≥ 1/],
    [{ ...HELLO, functions: ["ok", 3] }, /"functions" must be an array of strings/],
    [{ ...HELLO, functions: ["a b"] }, /function name "a b" must match/],
    [{ ...HELLO, codecs: ["msgpack"] }, /"codecs" must include "json"/],
  ];
  for (const [message, expected] of cases) {
    assertMatch(refusal(() => parseHello(message as FrameMessage)), expected);
  }
});

Deno.test("worker messages of every type are validated and normalised", () => {
  const ok: [Record<string, unknown>, unknown][] = [
    [{ type: "call", id: "w1", function: "php.title", args: { a: 1 }, timeout: 100 }, {
      type: "call",
      id: "w1",
      function: "php.title",
      args: { a: 1 },
      timeout: 100,
    }],
    [{ type: "call", id: 2, function: "x.y" }, {
      type: "call",
      id: 2,
      function: "x.y",
      args: null,
    }],
    [{ type: "result", id: 3, ok: true, value: [1] }, {
      type: "result",
      id: 3,
      ok: true,
      value: [1],
    }],
    [
      { type: "result", id: 3, ok: false, error: { type: "E", message: "m", traceback: "t" } },
      { type: "result", id: 3, ok: false, error: { type: "E", message: "m", traceback: "t" } },
    ],
    [{ type: "cancel", id: "w1" }, { type: "cancel", id: "w1" }],
    [{ type: "ping", id: 1 }, { type: "ping", id: 1 }],
    [{ type: "publish", topic: "a/b", payload: "aGk=", encoding: "base64", meta: { k: "v" } }, {
      type: "publish",
      topic: "a/b",
      payload: "aGk=",
      encoding: "base64",
      meta: { k: "v" },
    }],
    [{ type: "publish", topic: "a", payload: "hi" }, {
      type: "publish",
      topic: "a",
      payload: "hi",
      encoding: "utf8",
    }],
    [{ type: "subscribe", filter: "a/#" }, { type: "subscribe", filter: "a/#" }],
    [{ type: "log", message: "hi", fields: { n: 1 } }, {
      type: "log",
      level: "info",
      message: "hi",
      fields: { n: 1 },
    }],
  ];
  for (const [message, expected] of ok) {
    assertEquals(parseWorkerMessage(message as FrameMessage), expected);
  }
});

Deno.test("a wrong worker message says which field is wrong", () => {
  const cases: [Record<string, unknown>, RegExp][] = [
    [{ type: "launch" }, /unknown message type "launch"/],
    [
      { type: "call", id: 1.5, function: "a.b" },
      /"call" message: "id" must be a string or an integer/,
    ],
    [{ type: "call", id: 1 }, /"call" message: "function" must be a string/],
    [{ type: "call", id: 1, function: "a.b", timeout: -1 }, /"timeout" must be ms ≥ 0/],
    [
      { type: "call", id: 1, function: "a.b", meta: { n: 1 } },
      /"meta" must be an object of strings/,
    ],
    [{ type: "result", id: 1 }, /"result" message: "ok" must be true or false/],
    [{ type: "result", id: 1, ok: false, error: "boom" }, /"error" must be \{ type: string/],
    [{ type: "publish", topic: "a", payload: 1 }, /"payload" must be a string/],
    [
      { type: "publish", topic: "a", payload: "x", encoding: "hex" },
      /"encoding" must be utf8\|base64/,
    ],
    [{ type: "log", level: "loud", message: "x" }, /"level" must be debug, info, warning or error/],
  ];
  for (const [message, expected] of cases) {
    assertMatch(refusal(() => parseWorkerMessage(message as FrameMessage)), expected);
  }
});
