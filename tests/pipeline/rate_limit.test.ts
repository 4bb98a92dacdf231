import { assert, assertEquals } from "../helpers/assert.ts";
import {
  ClientBuckets,
  createRateLimitStage,
  RateLimitPool,
  type RateLimitScope,
  TokenBucket,
} from "../../src/pipeline/rate_limit.ts";
import type { RateLimitConfig } from "../../src/pipeline/config.ts";
import { chain, type Stage } from "../../src/pipeline/stage.ts";
import { serveTarget } from "../helpers/test_server.ts";

Deno.test("TokenBucket starts full, empties, and refills with time", () => {
  const bucket = new TokenBucket({ rate: 2, per: 1000, burst: 3 }, 0);
  assert(bucket.isFull(0));
  assert(bucket.take(0));
  assert(bucket.take(0));
  assert(bucket.take(0));
  assert(!bucket.take(0));
  assertEquals(bucket.msUntilToken(0), 500);
  assertEquals(bucket.msUntilToken(250), 250);
  assert(!bucket.take(499));
  assert(bucket.take(500));
  assert(!bucket.isFull(1000));
  assert(bucket.isFull(2000));
  assertEquals(bucket.msUntilToken(2000), 0);
});

Deno.test("TokenBucket never holds more than its burst", () => {
  const bucket = new TokenBucket({ rate: 1, per: 1000, burst: 2 }, 0);
  const taken = [1, 2, 3].filter(() => bucket.take(1_000_000)).length;
  assertEquals(taken, 2);
});

Deno.test("TokenBucket burst defaults to rate, and to 1 for a rate below 1", () => {
  const five = new TokenBucket({ rate: 5, per: 1000 }, 0);
  assertEquals([1, 2, 3, 4, 5, 6].filter(() => five.take(0)).length, 5);
  const slow = new TokenBucket({ rate: 0.5, per: 1000 }, 0);
  assert(slow.take(0));
  assert(!slow.take(0));
  assertEquals(slow.msUntilToken(0), 2000);
});

Deno.test("ClientBuckets keeps one bucket per client", () => {
  const clients = new ClientBuckets({ rate: 1, per: 1000 }, 10);
  assert(clients.get("a", 0).take(0));
  assert(!clients.get("a", 0).take(0));
  assert(clients.get("b", 0).take(0));
  assertEquals(clients.size, 2);
});

Deno.test("ClientBuckets at its cap drops the least recently used bucket", () => {
  const clients = new ClientBuckets({ rate: 1, per: 60_000 }, 3);
  for (const ip of ["a", "b", "c"]) clients.get(ip, 0).take(0);
  clients.get("a", 1); // "a" is now the most recently used; "b" the least
  clients.get("d", 2).take(2);
  assertEquals(clients.size, 3);
  assert(!clients.get("a", 3).take(3), "a keeps its empty bucket");
  assert(!clients.get("c", 3).take(3), "c keeps its empty bucket");
  assert(clients.get("b", 3).take(3), "b was dropped and starts full");
});

Deno.test("ClientBuckets drops refilled buckets as time passes", () => {
  const clients = new ClientBuckets({ rate: 1, per: 1000 }, 100);
  for (let i = 0; i < 50; i++) clients.get(`10.0.0.${i}`, 0).take(0);
  assertEquals(clients.size, 50);
  clients.get("10.0.1.1", 60_000);
  assertEquals(clients.size, 1);
});

Deno.test("createRateLimitStage returns null when no limit is set", () => {
  assertEquals(createRateLimitStage({}, () => {}), null);
});

Deno.test("per-client limit answers 429 with Retry-After, per client address", async () => {
  let time = 0;
  const rejections: RateLimitScope[] = [];
  const stage = createRateLimitStage(
    { perClient: { rate: 1, per: 5000, burst: 2 } },
    (scope) => rejections.push(scope),
    { now: () => time },
  );
  assert(stage);
  await using server = serveTarget(chain([stage], () => new Response("ok")));
  const get = (ip: string) => fetch(server.url, { headers: { "x-test-client-ip": ip } });

  for (let i = 0; i < 2; i++) {
    const res = await get("192.0.2.1");
    assertEquals([res.status, await res.text()], [200, "ok"]);
  }
  const limited = await get("192.0.2.1");
  assertEquals(limited.status, 429);
  assertEquals(limited.headers.get("retry-after"), "5");
  assertEquals(limited.headers.get("content-type"), "application/json");
  const body = await limited.json();
  assertEquals(body.error.status, 429);
  assertEquals(body.error.code, "rate_limited");
  assertEquals(body.error.requestId, "test-request");
  assertEquals(rejections, ["client"]);

  const other = await get("192.0.2.2");
  assertEquals([other.status, await other.text()], [200, "ok"]);

  time = 4500;
  const soon = await get("192.0.2.1");
  assertEquals(soon.status, 429);
  assertEquals(soon.headers.get("retry-after"), "1", "rounded up, at least 1");
  await soon.body?.cancel();

  time = 5000;
  const later = await get("192.0.2.1");
  assertEquals([later.status, await later.text()], [200, "ok"]);
});

Deno.test("total limit is shared by all clients of the route", async () => {
  const rejections: RateLimitScope[] = [];
  const stage = createRateLimitStage(
    { total: { rate: 2, per: 60_000 } },
    (scope) => rejections.push(scope),
    { now: () => 0 },
  );
  assert(stage);
  await using server = serveTarget(chain([stage], () => new Response("ok")));
  const statuses = [];
  for (const ip of ["192.0.2.1", "192.0.2.2", "192.0.2.3"]) {
    const res = await fetch(server.url, { headers: { "x-test-client-ip": ip } });
    statuses.push(res.status);
    if (res.status === 429) {
      assertEquals(res.headers.get("retry-after"), "30");
      assert((await res.json()).error.message.includes('route "test-route"'));
    } else {
      await res.body?.cancel();
    }
  }
  assertEquals(statuses, [200, 200, 429]);
  assertEquals(rejections, ["route"]);
});

Deno.test("a client over its own limit does not use up the route's tokens", async () => {
  const stage = createRateLimitStage(
    { perClient: { rate: 1, per: 60_000 }, total: { rate: 3, per: 60_000 } },
    () => {},
    { now: () => 0 },
  );
  assert(stage);
  await using server = serveTarget(chain([stage], () => new Response("ok")));
  const statuses = [];
  for (const ip of ["a", "a", "a", "a", "b", "c", "d"]) {
    const res = await fetch(server.url, { headers: { "x-test-client-ip": ip } });
    statuses.push(res.status);
    await res.body?.cancel();
  }
  assertEquals(statuses, [200, 429, 429, 429, 200, 200, 429]);
});

Deno.test("a reload keeps the buckets of an unchanged limit and starts a changed or new one full", async () => {
  const pool = new RateLimitPool({ now: () => 0 });
  let stage: Stage | null = null;
  /** Builds a route table of one route, as a reload does; only a committed one serves. */
  const reload = (route: string, config: RateLimitConfig, commit = true) => {
    const prepared = pool.prepare();
    const built = createRateLimitStage(config, () => {}, {
      now: () => 0,
      buckets: prepared.buckets(route, config),
    });
    if (commit) {
      prepared.commit();
      stage = built;
    }
  };
  await using server = serveTarget((c) => chain([stage!], () => new Response("ok"))(c));
  const status = async (ip: string) => {
    const res = await fetch(server.url, { headers: { "x-test-client-ip": ip } });
    await res.body?.cancel();
    return res.status;
  };
  const limit = { perClient: { rate: 1, per: 60_000 }, total: { rate: 2, per: 60_000 } };

  reload("api", limit);
  assertEquals([await status("a"), await status("a"), await status("b")], [200, 429, 200]);
  reload("api", structuredClone(limit));
  assertEquals([await status("a"), await status("c")], [429, 429], "still spent");
  reload("api", { ...limit, total: { rate: 3, per: 60_000 } }, false);
  reload("api", limit);
  assertEquals(await status("c"), 429, "a build that was not committed changed nothing");

  reload("api", { ...limit, total: { rate: 3, per: 60_000 } });
  assertEquals([await status("a"), await status("c")], [200, 200], "a changed limit starts full");
  reload("other", limit);
  reload("api", limit);
  assertEquals(await status("a"), 200, "the route went away and took its buckets");
});
