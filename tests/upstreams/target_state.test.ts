import { throws as assertThrows } from "node:assert/strict";
import { assertEquals } from "../helpers/assert.ts";
import { TargetField, TargetStatePool } from "../../src/upstreams/target_state.ts";

const A = "http://127.0.0.1:9001";
const B = "http://127.0.0.1:9002";

Deno.test("a URL keeps its state while any holder is left, and starts fresh after the last lets go", () => {
  const pool = new TargetStatePool();
  const first = pool.acquire(A);
  first.set(TargetField.unhealthy, 1);
  const second = pool.acquire(A);
  assertEquals(second.get(TargetField.unhealthy), 1);
  pool.release(A);
  assertEquals([pool.size, second.get(TargetField.unhealthy)], [1, 1]);
  pool.release(A);
  assertEquals([pool.size, pool.slotOf(A)], [0, undefined]);
  assertEquals(pool.acquire(A).get(TargetField.unhealthy), 0);
  assertThrows(() => {
    pool.release(B);
  }, /target state of http:\/\/127\.0\.0\.1:9002 released more often than acquired/);
});

Deno.test("a released state updates its own copy, not the slot's next owner", () => {
  const pool = new TargetStatePool();
  const old = pool.acquire(A);
  old.add(TargetField.inFlight, 1);
  const slot = pool.slotOf(A);
  pool.release(A);
  const next = pool.acquire(B);
  assertEquals(pool.slotOf(B), slot, "the slot is reused");
  old.add(TargetField.inFlight, -1); // a request still in flight on the released target ends
  assertEquals([next.get(TargetField.inFlight), old.get(TargetField.inFlight)], [0, 0]);
  next.add(TargetField.inFlight, 2);
  assertEquals(old.get(TargetField.inFlight), 0);
});

Deno.test("the pool grows past its first capacity and keeps every URL's numbers", () => {
  const pool = new TargetStatePool(1);
  const states = Array.from({ length: 100 }, (_, i) => {
    const state = pool.acquire(`http://127.0.0.1:${10_000 + i}`);
    state.set(TargetField.requests, i);
    return state;
  });
  assertEquals(states.map((state) => state.get(TargetField.requests)), [...Array(100).keys()]);
  assertEquals(pool.buffer.byteLength >= 100 * 12 * 8, true);
});

Deno.test("another isolate reads and updates a target's state through the shared buffer", async () => {
  const pool = new TargetStatePool();
  const state = pool.acquire(A);
  state.set(TargetField.inFlight, 3);
  const source = `
    import { TargetField, TargetState } from ${
    JSON.stringify(import.meta.resolve("../../src/upstreams/target_state.ts"))
  };
    self.onmessage = ({ data }) => {
      const state = new TargetState(new Float64Array(data.buffer), data.slot);
      const seen = state.get(TargetField.inFlight);
      state.set(TargetField.unhealthy, 1);
      self.postMessage(seen);
    };
  `;
  const worker = new Worker(`data:application/typescript,${encodeURIComponent(source)}`, {
    type: "module",
  });
  try {
    const reply = new Promise<number>((resolve) => worker.onmessage = (e) => resolve(e.data));
    worker.postMessage({ buffer: pool.buffer, slot: pool.slotOf(A) });
    assertEquals(await reply, 3);
    assertEquals(state.get(TargetField.unhealthy), 1);
  } finally {
    worker.terminate();
  }
});
