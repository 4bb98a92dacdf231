/**
 * The inference pool's supervision with real Workers: a run stuck past its
 * deadline ends its Worker, which is replaced (with the models it had
 * loaded) so the next run is served; a crashed Worker is replaced too; a
 * full queue answers `overloaded`.
 */

import { FunctionCallError } from "../../src/functions/call.ts";
import { InferencePool } from "../../src/models/pool.ts";
import type { Tensor } from "../../src/models/tensor.ts";
import { assert, assertEquals, rejectionOf } from "../helpers/assert.ts";

const fixture = (name: string) => new URL(`./fixtures/${name}`, import.meta.url).pathname;
const ADD = fixture("add.onnx");
const SPIN = fixture("spin.onnx");

/** Feeds of spin.onnx: `n` loop iterations adding 1 to `x`. */
const spin = (n: bigint): Record<string, Tensor> => ({
  n: { type: "int64", dims: [], data: new BigInt64Array([n]) },
  x: { type: "float32", dims: [1], data: new Float32Array([0]) },
});
const add = (): Record<string, Tensor> => ({
  a: { type: "float32", dims: [1, 3], data: new Float32Array([1, 2, 3]) },
  b: { type: "float32", dims: [1, 3], data: new Float32Array([10, 20, 30]) },
});

const failure = (promise: Promise<unknown>) => rejectionOf(promise, FunctionCallError);

Deno.test("a run stuck past its deadline ends its Worker; the replacement serves the next run", async () => {
  const pool = new InferencePool({ workers: 1, timeout: 5000 });
  try {
    await pool.load(1, "spin", SPIN);
    await pool.load(1, "add", ADD);
    assertEquals([...(await pool.run(1, "spin", spin(3n))).y.data], [3]);
    // Far more iterations than fit in the deadline: the Worker is stuck in this run.
    const stuck = await failure(pool.run(1, "spin", spin(10n ** 15n)));
    assertEquals([stuck.type, stuck.status], ["timeout", 504]);
    assertEquals(pool.busy(1), 0);
    // The replacement loaded both models again before it took this run.
    assertEquals([...(await pool.run(1, "add", add())).sum.data], [11, 22, 33]);
    assertEquals([...(await pool.run(1, "spin", spin(2n))).y.data], [2]);
    const [worker] = pool.status();
    assertEquals([worker.state, worker.restarts], ["running", 1]);
    assert(worker.reason === null);
  } finally {
    pool.stop();
  }
});

Deno.test("a run that waits for a Worker busy loading a model is served when the load ends", async () => {
  const pool = new InferencePool({ workers: 1, timeout: 30_000 });
  try {
    await pool.load(1, "add", ADD);
    const loading = pool.load(1, "spin", SPIN);
    const sum = pool.run(1, "add", add());
    assertEquals(pool.busy(1), 2);
    await loading;
    assertEquals([...(await sum).sum.data], [11, 22, 33]);
  } finally {
    pool.stop();
  }
});

Deno.test("a crashed inference Worker fails its run as worker_exited and is replaced", async () => {
  const script = new URL("./fixtures/crashing_worker.ts", import.meta.url);
  const pool = new InferencePool({ workers: 1, timeout: 10_000 }, script);
  try {
    await pool.load(1, "add", ADD);
    const crashed = await failure(pool.run(1, "crash", add()));
    assertEquals(crashed.type, "worker_exited");
    assertEquals([...(await pool.run(1, "add", add())).sum.data], [11, 22, 33]);
    assertEquals(pool.status()[0].restarts, 1);
  } finally {
    pool.stop();
  }
});

Deno.test("runs beyond the queue answer overloaded; stop fails the rest as unavailable", async () => {
  const pool = new InferencePool({ workers: 1, timeout: 60_000 });
  try {
    await pool.load(1, "spin", SPIN);
    const running = pool.run(1, "spin", spin(10n ** 15n));
    const queued = Array.from({ length: 1024 }, () => pool.run(1, "spin", spin(1n)));
    const refused = await failure(pool.run(1, "spin", spin(1n)));
    assertEquals([refused.type, refused.status], ["overloaded", 503]);
    assertEquals(pool.busy(1), 1025);
    pool.stop();
    for (const call of [running, ...queued]) {
      assertEquals((await failure(call)).type, "unavailable");
    }
  } finally {
    pool.stop();
  }
});
