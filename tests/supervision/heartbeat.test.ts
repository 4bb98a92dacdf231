/**
 * Heartbeats: pings while the part talks, hung after several silent
 * intervals, and silence during a call is not a missed heartbeat.
 */

import { Heartbeat } from "../../src/supervision/heartbeat.ts";
import { assertEquals } from "../helpers/assert.ts";

/** A part whose answers and calls the test sets; beats are driven by hand, not by a clock. */
function part() {
  const seen = { pings: 0, hung: [] as number[], busy: false };
  const heartbeat = new Heartbeat(1, 3, {
    ping: () => seen.pings++,
    busy: () => seen.busy,
    hung: (silent) => seen.hung.push(silent),
  });
  return { seen, heartbeat };
}

const pause = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

Deno.test("a part that answers is pinged and never hung", () => {
  const { seen, heartbeat } = part();
  for (let i = 0; i < 5; i++) {
    heartbeat.seen();
    heartbeat.beat();
  }
  assertEquals([seen.pings, seen.hung.length], [5, 0]);
});

Deno.test("an idle part silent for more than the missed intervals is hung", async () => {
  const { seen, heartbeat } = part();
  heartbeat.seen();
  await pause(10);
  heartbeat.beat();
  assertEquals([seen.pings, seen.hung.length], [0, 1]);
});

Deno.test("silence while a call is in flight is not a missed heartbeat", async () => {
  const { seen, heartbeat } = part();
  seen.busy = true;
  heartbeat.seen();
  await pause(10);
  heartbeat.beat();
  assertEquals([seen.pings, seen.hung.length], [1, 0]);
  seen.busy = false;
  heartbeat.beat();
  assertEquals(seen.hung.length, 1);
});

Deno.test("start pings on its interval until stop", async () => {
  const { seen, heartbeat } = part();
  seen.busy = true;
  heartbeat.start();
  while (seen.pings < 2) await pause(1);
  heartbeat.stop();
  const pings = seen.pings;
  await pause(10);
  assertEquals(seen.pings, pings);
});
