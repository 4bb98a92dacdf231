/**
 * The pending-call table: answers, deadlines (`timeout`, with the part's own
 * reaction first), cancel, failing everything, idle, and the counts.
 */

import { FunctionCallError } from "../../src/functions/call.ts";
import { MetricsRegistry } from "../../src/observability/metrics.ts";
import { SupervisionMetrics } from "../../src/supervision/metrics.ts";
import { PendingCalls } from "../../src/supervision/pending.ts";
import { CallStats } from "../../src/supervision/stats.ts";
import { assert, assertEquals, assertStringIncludes } from "../helpers/assert.ts";

async function rejection(promise: Promise<unknown>): Promise<Error> {
  const error = await promise.then(() => undefined, (error) => error);
  assert(error instanceof Error, `expected a rejection, got ${error}`);
  return error;
}

const far = () => Date.now() + 60_000;

Deno.test("a call settles once, with its answer or its error, and keeps its data", async () => {
  const pending = new PendingCalls<string>({ label: "part" });
  const first = pending.open("a", far(), "data of a");
  const second = pending.open("b", far(), "data of b");
  assertEquals([pending.size, pending.data(first.id)], [2, "data of a"]);
  assert(pending.resolve(first.id, 42));
  assert(!pending.resolve(first.id, 43), "a second answer is ignored");
  assert(pending.reject(second.id, new Error("bad")));
  assertEquals(await first.result, 42);
  assertEquals((await rejection(second.result)).message, "bad");
  assertEquals([pending.size, pending.data(first.id)], [0, undefined]);
});

Deno.test("a deadline fails the call as timeout (504) after the part's own reaction", async () => {
  const pending = new PendingCalls({ label: 'worker "w" instance 0' });
  const timedOut: number[] = [];
  const call = pending.open("orders.create", Date.now() + 5, undefined, (id) => timedOut.push(id));
  const error = await rejection(call.result);
  assert(error instanceof FunctionCallError);
  assertEquals([error.type, error.status], ["timeout", 504]);
  assertStringIncludes(error.message, 'worker "w" instance 0: orders.create did not answer within');
  assertEquals(timedOut, [call.id]);
  assert(!pending.resolve(call.id, "late"), "a late answer finds nothing");
});

Deno.test("the part may give its own timeout error", async () => {
  const pending = new PendingCalls({
    label: "plugin",
    timeoutError: (message) => new RangeError(message),
  });
  const error = await rejection(pending.open("onRequest", Date.now(), undefined).result);
  assertEquals(error.name, "RangeError");
});

Deno.test("cancel fails one call as cancelled; failAll fails the rest", async () => {
  const pending = new PendingCalls({ label: "part" });
  const [a, b, c] = ["a", "b", "c"].map((what) => pending.open(what, far(), undefined));
  assert(pending.cancel(a.id, "the client went away"));
  const cancelled = await rejection(a.result) as FunctionCallError;
  assertEquals([cancelled.type, cancelled.message], ["cancelled", "part: the client went away"]);
  pending.failAll(new FunctionCallError({ type: "worker_exited", message: "gone" }));
  for (const call of [b, c]) {
    assertEquals((await rejection(call.result) as FunctionCallError).type, "worker_exited");
  }
  assertEquals(pending.size, 0);
});

Deno.test("idle waits for the open calls, or for its timeout", async () => {
  const pending = new PendingCalls({ label: "part" });
  await pending.idle(60_000);
  const call = pending.open("a", far(), undefined);
  let idle = false;
  const waiting = pending.idle(60_000).then(() => idle = true);
  await Promise.resolve();
  assert(!idle);
  pending.resolve(call.id, 1);
  await waiting;
  assert(idle);
  const stuck = pending.open("b", far(), undefined);
  await pending.idle(5);
  assertEquals(pending.size, 1);
  pending.resolve(stuck.id, 1);
});

Deno.test("every settled call is counted and timed, failures as errors, in flight as a gauge", async () => {
  const registry = new MetricsRegistry();
  const stats = new CallStats(new SupervisionMetrics(registry).of("worker", "orders"));
  const pending = new PendingCalls({ label: "part", stats });
  const ok = pending.open("a", far(), undefined);
  const bad = pending.open("b", far(), undefined);
  assertStringIncludes(
    registry.render(),
    'gateway_supervised_in_flight{kind="worker",name="orders"} 2',
  );
  pending.resolve(ok.id, 1);
  pending.reject(bad.id, new Error("it broke"));
  await ok.result;
  await rejection(bad.result);
  const status = stats.status("running", pending.size, 0);
  assertEquals([status.calls, status.errors, status.inFlight], [2, 1, 0]);
  assertEquals(status.lastError?.message, "it broke");
  assert(status.p50 !== null && status.p99 !== null);
  const text = registry.render();
  assertStringIncludes(text, 'gateway_supervised_calls_total{kind="worker",name="orders"} 2');
  assertStringIncludes(text, 'gateway_supervised_errors_total{kind="worker",name="orders"} 1');
  assertStringIncludes(text, 'gateway_supervised_in_flight{kind="worker",name="orders"} 0');
});
