/**
 * The one error model: what `errorResponse` answers a client with for every
 * kind of thrown value, what it keeps for the log and the admin API, and
 * that one failure has one status whichever route type it comes through.
 */

import {
  ErrorLog,
  errorResponse,
  GatewayError,
  recentErrors,
  redact,
  statusOfCode,
  toGatewayError,
  webSocketClose,
} from "../../src/errors.ts";
import { BusError } from "../../src/bus/bus.ts";
import { FunctionCallError } from "../../src/functions/call.ts";
import { BodyTooLargeError } from "../../src/pipeline/limits.ts";
import { TensorError } from "../../src/models/tensor.ts";
import { ModelUnavailableError } from "../../src/models/served_model.ts";
import { assert, assertEquals } from "../helpers/assert.ts";

async function body(response: Response) {
  return (await response.json()).error;
}

Deno.test("a GatewayError answers with its status, code, message, request id and headers", async () => {
  const response = errorResponse(
    new GatewayError(429, "rate_limited", "slow down", { headers: { "retry-after": "3" } }),
    "req-1",
  );
  assertEquals(response.status, 429);
  assertEquals(response.headers.get("retry-after"), "3");
  assertEquals(response.headers.get("x-request-id"), "req-1");
  assertEquals(await body(response), {
    status: 429,
    code: "rate_limited",
    message: "slow down",
    requestId: "req-1",
  });
});

Deno.test("anything else answers 500 internal_error and is kept with its stack by request id", async () => {
  const thrown = new TypeError("cannot read x of undefined at http://10.1.2.3:8080/");
  const response = errorResponse(thrown, "req-500");
  assertEquals(await body(response), {
    status: 500,
    code: "internal_error",
    message: "the gateway failed to handle this request",
    requestId: "req-500",
  });
  const kept = recentErrors.get("req-500")!;
  assertEquals([kept.status, kept.code], [500, "internal_error"]);
  assertEquals(kept.causes, [`TypeError: ${thrown.message}`]);
  assertEquals(kept.stack, thrown.stack);
  errorResponse("a string", "req-str");
  assertEquals(recentErrors.get("req-str")!.causes, ["a string"]);
});

Deno.test("client messages never carry addresses or source locations; the record keeps them", async () => {
  const message = "GET http://127.0.0.1:9000/x failed at /srv/plugins/tag.ts:12:7, " +
    "peer 10.0.0.7:443 and [::1]:8080 and localhost:3000";
  const response = errorResponse(
    new GatewayError(502, "upstream_unreachable", message, { detail: { target: "x" } }),
    "req-redact",
  );
  const text = JSON.stringify(await body(response));
  for (const secret of ["127.0.0.1:", ".ts:", "10.0.0.7", "[::1]", "localhost:", "/srv/"]) {
    assert(!text.includes(secret), `${secret} in ${text}`);
  }
  assertEquals(
    redact(message),
    "GET <address> failed at <source>, peer <address> and <address> and <address>",
  );
  assertEquals(recentErrors.get("req-redact")!.message, message);
  assertEquals(recentErrors.get("req-redact")!.detail, { target: "x" });
  assertEquals(redact("no route for GET /orders/7"), "no route for GET /orders/7");
});

Deno.test("errors from modules that carry a status and a code or type keep them", () => {
  class InferenceLike extends Error {
    constructor(readonly type: string, message: string, readonly status = 500) {
      super(message);
    }
  }
  const timeout = toGatewayError(new InferenceLike("timeout", "run took too long", 504));
  assertEquals([timeout.status, timeout.code], [504, "timeout"]);
  const noStatus = toGatewayError(Object.assign(new Error("x"), { code: "overloaded" }));
  assertEquals([noStatus.status, noStatus.code], [503, "overloaded"]);
  const plain = toGatewayError(new RangeError("x"));
  assertEquals([plain.status, plain.code], [500, "internal_error"]);
});

Deno.test("the gateway's error classes are GatewayErrors with their status and code", () => {
  const cases: [Error, number, string][] = [
    [new BusError("timeout", "late"), 504, "timeout"],
    [new BusError("no_responder", "nobody"), 503, "no_responder"],
    [new BusError("invalid_topic", "bad"), 400, "invalid_topic"],
    [new FunctionCallError({ type: "timeout", message: "late" }), 504, "timeout"],
    [new FunctionCallError({ type: "ValueError", message: "bad id" }), 500, "ValueError"],
    [new BodyTooLargeError(10), 413, "body_too_large"],
    [new TensorError("inputs.a: missing"), 400, "bad_arguments"],
    [new ModelUnavailableError("m", "/models/m.onnx: no such file"), 503, "model_unavailable"],
  ];
  for (const [error, status, code] of cases) {
    assert(error instanceof GatewayError, error.name);
    assertEquals([error.status, error.code], [status, code], error.name);
  }
  const unavailable = new ModelUnavailableError("m", "/models/m.onnx: no such file");
  assert(!unavailable.message.includes("/models/"), unavailable.message);
  assertEquals(unavailable.detail, { reason: "/models/m.onnx: no such file" });
});

Deno.test("a model timeout answers 504 directly and through a function call", async () => {
  class InferenceLike extends Error {
    constructor(readonly type: string, message: string, readonly status = 500) {
      super(message);
    }
  }
  const direct = errorResponse(new InferenceLike("timeout", "infer took longer than 5 ms", 504));
  // What a function route sees: the same error after crossing the bus as { type, message }.
  const called = errorResponse(
    new FunctionCallError({ type: "timeout", message: "infer took longer than 5 ms" }),
  );
  assertEquals([direct.status, called.status], [504, 504]);
  assertEquals((await body(direct)).code, (await body(called)).code);
});

Deno.test("statusOfCode knows the gateway's codes and gives 500 for a callee's own", () => {
  assertEquals(
    ["timeout", "no_responder", "overloaded", "bad_arguments", "ValueError", "toString"].map(
      statusOfCode,
    ),
    [504, 503, 503, 400, 500, 500],
  );
});

Deno.test("ErrorLog keeps the newest records up to its capacity", () => {
  const log = new ErrorLog(2);
  for (const id of ["a", "b", "c"]) {
    log.add({ requestId: id, time: "", status: 500, code: "x", message: id, causes: [] });
  }
  assertEquals(log.get("a"), undefined);
  assertEquals(log.list().map((record) => record.requestId), ["c", "b"]);
});

Deno.test("webSocketClose gives 1008 for the client's fault, 1013 for 503, 1011 for the rest", () => {
  assertEquals(webSocketClose(new BusError("invalid_topic", "x")), {
    code: 1008,
    reason: "invalid_topic",
  });
  assertEquals(webSocketClose(new BusError("no_responder", "x")), {
    code: 1013,
    reason: "no_responder",
  });
  assertEquals(webSocketClose(new Error("at /srv/a.ts:1:1")), {
    code: 1011,
    reason: "internal_error",
  });
});
