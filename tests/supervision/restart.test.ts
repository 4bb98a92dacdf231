/**
 * Restarts with capped exponential backoff, and the `failed` state after
 * repeated quick crashes.
 */

import { backoffDelay, Restarter } from "../../src/supervision/restart.ts";
import { assert, assertEquals, assertMatch } from "../helpers/assert.ts";

Deno.test("the backoff doubles from its base and stops at its cap", () => {
  const options = { baseMs: 100, maxMs: 1000 };
  assertEquals([1, 2, 3, 4, 5, 6, 20].map((n) => backoffDelay(n, options)), [
    100,
    200,
    400,
    800,
    1000,
    1000,
    1000,
  ]);
});

Deno.test("quick crashes back off, each restart later, until the part is failed", async () => {
  const delays: number[] = [];
  const restarter = new Restarter(() => {
    if (restarter.crashed(`crash ${restarter.restarts}`, 0) === "backoff") {
      delays.push(restarter.delay);
    }
  }, { baseMs: 1, maxMs: 4, maxQuickCrashes: 5 });
  assertEquals(restarter.crashed("crash 0", 0), "backoff");
  delays.push(restarter.delay);
  while (restarter.state === "backoff") await new Promise((resolve) => setTimeout(resolve, 1));
  assertEquals([restarter.state, restarter.restarts], ["failed", 4]);
  assertEquals(delays, [1, 2, 4, 4]);
  assertMatch(
    restarter.reason ?? "",
    /^exited 5 times in a row within 10 s of starting; gave up\. Last: crash 4$/,
  );
});

Deno.test("a crash after a long run is not quick: the count starts again", () => {
  const restarter = new Restarter(() => {}, { quickMs: 1000, maxQuickCrashes: 2 });
  assertEquals(restarter.crashed("quick", 10), "backoff");
  assertEquals(restarter.quickCrashes, 1);
  assertEquals(restarter.crashed("after an hour", 3_600_000), "backoff");
  assertEquals(restarter.quickCrashes, 0);
  assertEquals(restarter.crashed("quick again", 10), "backoff");
  assertEquals(restarter.crashed("and again", 10), "failed");
  restarter.stop();
});

Deno.test("started clears the reason; reset forgets the crashes; stop cancels the restart", async () => {
  let restarted = 0;
  const restarter = new Restarter(() => restarted++, { baseMs: 1 });
  restarter.crashed("boom", 0);
  assertEquals([restarter.state, restarter.reason], ["backoff", "boom"]);
  restarter.reset();
  assertEquals([restarter.state, restarter.quickCrashes, restarter.reason], [
    "starting",
    0,
    undefined,
  ]);
  restarter.started();
  assertEquals(restarter.state, "running");
  restarter.crashed("boom again", 0);
  restarter.stop();
  await new Promise((resolve) => setTimeout(resolve, 10));
  assertEquals([restarted, restarter.state], [0, "stopped"]);
  assert(restarter.crashed("after stop", 0) === "stopped");
});

Deno.test("fail gives up at once, with the reason", () => {
  const restarter = new Restarter(() => {});
  restarter.fail("the command cannot be spawned");
  assertEquals([restarter.state, restarter.reason], ["failed", "the command cannot be spawned"]);
});
