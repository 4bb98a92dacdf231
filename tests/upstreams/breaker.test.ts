import { deepStrictEqual as assertEquals } from "node:assert/strict";
import { CircuitBreaker } from "../../src/upstreams/breaker.ts";
import { TargetStatePool } from "../../src/upstreams/target_state.ts";

function breakerWithClock(halfOpenRequests = 1) {
  const clock = { now: 0 };
  const breaker = new CircuitBreaker(
    new TargetStatePool().acquire("http://127.0.0.1:9"),
    { failures: 3, openFor: 1000, halfOpenRequests },
    { upstream: "api", target: "http://127.0.0.1:9" },
    () => clock.now,
  );
  return { breaker, clock };
}

/** One request through the breaker with the given outcome. */
function request(breaker: CircuitBreaker, outcome: "success" | "failure"): void {
  breaker.begin();
  if (outcome === "success") breaker.succeed();
  else breaker.fail();
  breaker.end();
}

Deno.test("breaker opens after the configured consecutive failures", () => {
  const { breaker } = breakerWithClock();
  request(breaker, "failure");
  request(breaker, "failure");
  request(breaker, "success");
  request(breaker, "failure");
  request(breaker, "failure");
  assertEquals([breaker.state, breaker.allowsRequest()], ["closed", true]);
  request(breaker, "failure");
  assertEquals([breaker.state, breaker.allowsRequest()], ["open", false]);
});

Deno.test("open breaker turns half-open after openFor and closes on a successful trial", () => {
  const { breaker, clock } = breakerWithClock();
  for (let i = 0; i < 3; i++) request(breaker, "failure");
  clock.now = 999;
  assertEquals(breaker.state, "open");
  clock.now = 1000;
  assertEquals([breaker.state, breaker.allowsRequest()], ["half-open", true]);
  breaker.begin();
  assertEquals(breaker.allowsRequest(), false);
  breaker.succeed();
  breaker.end();
  assertEquals([breaker.state, breaker.allowsRequest()], ["closed", true]);
});

Deno.test("a failed trial opens the breaker again for openFor", () => {
  const { breaker, clock } = breakerWithClock();
  for (let i = 0; i < 3; i++) request(breaker, "failure");
  clock.now = 1000;
  request(breaker, "failure");
  assertEquals(breaker.state, "open");
  clock.now = 1999;
  assertEquals(breaker.allowsRequest(), false);
  clock.now = 2000;
  assertEquals(breaker.state, "half-open");
});

Deno.test("half-open allows halfOpenRequests trials at a time; an abandoned trial frees its slot", () => {
  const { breaker, clock } = breakerWithClock(2);
  for (let i = 0; i < 3; i++) request(breaker, "failure");
  clock.now = 1000;
  breaker.begin();
  breaker.begin();
  assertEquals(breaker.allowsRequest(), false);
  breaker.end();
  assertEquals([breaker.state, breaker.allowsRequest()], ["half-open", true]);
});

Deno.test("after closing again, failures are counted from zero", () => {
  const { breaker, clock } = breakerWithClock();
  for (let i = 0; i < 3; i++) request(breaker, "failure");
  clock.now = 1000;
  request(breaker, "success");
  request(breaker, "failure");
  request(breaker, "failure");
  assertEquals(breaker.state, "closed");
  request(breaker, "failure");
  assertEquals(breaker.state, "open");
});
