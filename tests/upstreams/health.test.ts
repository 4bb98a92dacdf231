import { deepStrictEqual as assertEquals } from "node:assert/strict";
import { createHttp1Client } from "../../src/upstreams/http1_client.ts";
import { HealthChecker, TargetHealth } from "../../src/upstreams/health.ts";
import { TargetStatePool } from "../../src/upstreams/target_state.ts";

const labels = { upstream: "api", target: "http://127.0.0.1:9" };
const passive = { failures: 3, ejectFor: 1000 };
const activeCheck = {
  path: "/",
  interval: 60_000,
  timeout: 2000,
  healthyThreshold: 1,
  unhealthyThreshold: 1,
  expectStatus: [200, 399] as [number, number],
};

/** The health of a fresh target, checked actively. */
function targetHealth(now?: () => number): TargetHealth {
  const state = new TargetStatePool().acquire(labels.target);
  return new TargetHealth(state, { passive, healthCheck: activeCheck }, labels, now);
}

function healthWithClock() {
  const clock = { now: 0 };
  const health = targetHealth(() => clock.now);
  return { health, clock };
}

Deno.test("consecutive request failures eject a target until ejectFor has passed", () => {
  const { health, clock } = healthWithClock();
  health.requestFailed("connect");
  health.requestFailed("connect");
  health.requestSucceeded();
  health.requestFailed("connect");
  health.requestFailed("connect");
  assertEquals([health.isAvailable(), health.ejectedUntil], [true, undefined]);
  clock.now = 10;
  health.requestFailed("connect");
  assertEquals([health.isAvailable(), health.ejectedUntil], [false, 1010]);
  clock.now = 1010;
  assertEquals([health.isAvailable(), health.ejectedUntil], [true, undefined]);
  health.requestFailed("connect");
  health.requestFailed("connect");
  assertEquals(health.isAvailable(), true);
});

Deno.test("active checks mark a target unhealthy and healthy at their thresholds", () => {
  const { health } = healthWithClock();
  health.checkFailed(2, "status 503");
  assertEquals(health.isAvailable(), true);
  health.checkFailed(2, "status 503");
  assertEquals(health.isAvailable(), false);
  health.checkPassed(3);
  health.checkPassed(3);
  health.checkFailed(2, "status 503");
  health.checkPassed(3);
  health.checkPassed(3);
  assertEquals(health.isAvailable(), false);
  health.checkPassed(3);
  assertEquals(health.isAvailable(), true);
});

Deno.test("passing active checks end a passive ejection early", () => {
  const { health } = healthWithClock();
  health.checkPassed(2);
  health.checkPassed(2);
  for (let i = 0; i < 3; i++) health.requestFailed("response-timeout");
  assertEquals(health.isAvailable(), false);
  health.checkPassed(2);
  assertEquals(health.isAvailable(), false);
  health.checkPassed(2);
  assertEquals([health.isAvailable(), health.ejectedUntil], [true, undefined]);
});

Deno.test("the health checker judges targets by status range and connection errors", async () => {
  let status = 200;
  const paths: string[] = [];
  await using server = Deno.serve({ port: 0, hostname: "127.0.0.1", onListen() {} }, (request) => {
    paths.push(new URL(request.url).pathname);
    return new Response("ok", { status });
  });
  const closed = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const closedUrl = `http://127.0.0.1:${closed.addr.port}`;
  closed.close();
  const client = createHttp1Client();
  const live = targetHealth();
  const dead = targetHealth();
  const checker = new HealthChecker(
    [{ url: `http://127.0.0.1:${server.addr.port}`, health: live }, {
      url: closedUrl,
      health: dead,
    }],
    {
      path: "/healthz",
      interval: 60_000,
      timeout: 2000,
      healthyThreshold: 1,
      unhealthyThreshold: 1,
      expectStatus: [200, 202],
    },
    client,
  );
  await checker.checkAll();
  assertEquals([live.isAvailable(), dead.isAvailable()], [true, false]);
  status = 203;
  await checker.checkAll();
  assertEquals(live.isAvailable(), false);
  status = 202;
  await checker.checkAll();
  assertEquals(live.isAvailable(), true);
  assertEquals(paths, ["/healthz", "/healthz", "/healthz"]);
  await checker.stop();
  client.close();
});

Deno.test("the health checker checks at once on start and keeps checking until stopped", async () => {
  const checked = Promise.withResolvers<void>();
  let checks = 0;
  await using server = Deno.serve({ port: 0, hostname: "127.0.0.1", onListen() {} }, () => {
    if (++checks === 3) checked.resolve();
    return new Response(null, { status: 500 });
  });
  const client = createHttp1Client();
  const health = targetHealth();
  const checker = new HealthChecker([{ url: `http://127.0.0.1:${server.addr.port}`, health }], {
    path: "/",
    interval: 10,
    timeout: 2000,
    healthyThreshold: 1,
    unhealthyThreshold: 2,
    expectStatus: [200, 399],
  }, client);
  checker.start();
  await checked.promise;
  await checker.stop();
  await checker.stop();
  const afterStop = checks;
  assertEquals(health.isAvailable(), false);
  await new Promise((resolve) => setTimeout(resolve, 50));
  assertEquals(checks, afterStop);
  client.close();
});

Deno.test("without active checks, an earlier unhealthy verdict does not keep the target out", () => {
  const state = new TargetStatePool().acquire(labels.target);
  const checked = new TargetHealth(state, { passive, healthCheck: activeCheck }, labels);
  checked.checkFailed(1, "status 503");
  const unchecked = new TargetHealth(state, { passive }, labels);
  assertEquals([checked.isAvailable(), unchecked.isAvailable()], [false, true]);
});
