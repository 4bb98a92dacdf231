/**
 * The call pool: least-busy routing within each member's concurrency, a
 * bounded FIFO queue (overflow answers `overloaded`), deadlines in the queue.
 */

import { FunctionCallError } from "../../src/functions/call.ts";
import { CallPool } from "../../src/supervision/pool.ts";
import { assert, assertEquals } from "../helpers/assert.ts";

/** An instance stand-in whose calls finish when the test says so. */
class Member {
  inFlight = 0;
  readonly started: string[] = [];
  readonly #finish: (() => void)[] = [];
  constructor(readonly name: string, public concurrency: number, public healthy = true) {}

  /** A task for the pool: takes a slot synchronously, frees it when finished. */
  task = (label: string) => (member: Member) => {
    member.inFlight++;
    member.started.push(label);
    const { promise, resolve } = Promise.withResolvers<string>();
    member.#finish.push(() => {
      member.inFlight--;
      resolve(`${label}@${member.name}`);
    });
    return promise;
  };

  finishOne(): void {
    this.#finish.shift()?.();
  }
}

const far = () => Date.now() + 60_000;

async function rejection(promise: Promise<unknown>): Promise<FunctionCallError> {
  try {
    await promise;
  } catch (error) {
    if (error instanceof FunctionCallError) return error;
    throw error;
  }
  throw new Error("expected a rejection");
}

Deno.test("calls go to the least-busy healthy instance within its concurrency", () => {
  const a = new Member("a", 2);
  const b = new Member("b", 2);
  const sick = new Member("sick", 10, false);
  const pool = new CallPool<Member>("w", 10);
  for (const member of [a, b, sick]) pool.add(member);
  for (const label of ["1", "2", "3", "4"]) void pool.run(far(), a.task(label));
  assertEquals([a.inFlight, b.inFlight, sick.inFlight], [2, 2, 0]);
  assertEquals(pool.queued, 0);
  void pool.run(far(), a.task("5"));
  assertEquals(pool.queued, 1);
});

Deno.test("queued calls start in order as slots free", async () => {
  const a = new Member("a", 1);
  const pool = new CallPool<Member>("w", 10);
  pool.add(a);
  const results = ["1", "2", "3"].map((label) => pool.run(far(), a.task(label)));
  assertEquals(a.started, ["1"]);
  for (const [i, label] of ["1", "2", "3"].entries()) {
    assertEquals(a.started, ["1", "2", "3"].slice(0, i + 1));
    a.finishOne();
    assertEquals(await results[i], `${label}@a`);
  }
  assertEquals(pool.queued, 0);
});

Deno.test("an instance that becomes healthy takes the queue", async () => {
  const late = new Member("late", 2, false);
  const pool = new CallPool<Member>("w", 10);
  pool.add(late);
  const result = pool.run(far(), late.task("1"));
  assertEquals(pool.queued, 1);
  late.healthy = true;
  pool.wake();
  late.finishOne();
  assertEquals(await result, "1@late");
});

Deno.test("a full queue refuses with overloaded (503); the deadline bounds the wait", async () => {
  const a = new Member("a", 1);
  const pool = new CallPool<Member>("orders", 1);
  pool.add(a);
  void pool.run(far(), a.task("running"));
  const queued = pool.run(Date.now() + 20, a.task("queued"));
  const overloaded = await rejection(pool.run(far(), a.task("refused")));
  assertEquals([overloaded.type, overloaded.status], ["overloaded", 503]);
  const timeout = await rejection(queued);
  assertEquals([timeout.type, timeout.status], ["timeout", 504]);
  assertEquals(pool.queued, 0);
  assert(!a.started.includes("queued"));
});

Deno.test("close rejects every waiting call", async () => {
  const pool = new CallPool<Member>("w", 5);
  const waiting = pool.run(far(), new Member("x", 1).task("1"));
  pool.close(new FunctionCallError({ type: "no_responder", message: "stopped" }));
  assertEquals((await rejection(waiting)).type, "no_responder");
});
