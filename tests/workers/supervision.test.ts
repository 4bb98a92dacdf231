/**
 * Supervision with real processes: crashes under load, crash loops, rolling
 * restarts, graceful stop, protocol violations, hangs, and config reloads.
 */

import { join } from "node:path";
import { Hono } from "hono";
import { configFor } from "../helpers/config.ts";
import { FunctionCallError } from "../../src/functions/call.ts";
import { assert, assertEquals, assertMatch, assertStringIncludes } from "../helpers/assert.ts";
import { EXAMPLES, ROOT, startWorkers, steadyLoad, waitFor } from "./harness.ts";

const RAW = (mode: string) => ["python3", join(ROOT, "tests/workers/fixtures/raw_worker.py"), mode];

Deno.test("kill -9 under steady load fails only the calls in flight on that instance; it comes back", async () => {
  await using workers = await startWorkers([
    { name: "py", command: EXAMPLES.python, instances: 2, concurrency: 4 },
  ]);
  const load = steadyLoad(() => workers.call("py.sleep", { seconds: 0.01 }), 12);
  await waitFor("calls to flow", () => load.ok > 50);
  const victim = workers.status("py").instances[0];
  Deno.kill(victim.pid, "SIGKILL");
  const killedAt = Date.now();
  const back = await waitFor("the instance to be back", () => {
    const instance = workers.status("py").instances[0];
    return instance.state === "running" && instance.pid !== victim.pid && instance;
  });
  console.log(`instance back after ${Date.now() - killedAt} ms (pid ${victim.pid} -> ${back.pid})`);
  const before = load.ok;
  await waitFor("calls after the restart", () => load.ok > before + 50);
  const { ok, failures } = await load.stop();
  console.log(`${ok} calls ok, ${failures.length} failed`);
  // At most the victim's concurrency (4) calls were in flight on it; queued calls were not lost.
  assert(failures.length <= 4, `${failures.length} calls failed: ${failures.map(String)}`);
  for (const failure of failures) {
    assert(
      failure instanceof FunctionCallError && failure.type === "worker_exited",
      String(failure),
    );
  }
  assertEquals(back.restarts, 1);
  assertMatch(JSON.stringify(workers.status("py").instances[0].lastExit), /SIGKILL/);
});

Deno.test("a crash loop backs off, then the worker is failed with the reason in its status", async () => {
  await using workers = await startWorkers([{ name: "crashy", command: RAW("crash-after-hello") }]);
  const status = await waitFor("the worker to fail", () => {
    const status = workers.status("crashy");
    return status.instances[0].state === "failed" && status;
  });
  const [slot] = status.instances;
  assertEquals([status.state, status.restarts, slot.restarts], ["failed", 4, 4]);
  assertMatch(
    slot.reason ?? "",
    /exited 5 times in a row within 10 s of starting; gave up\. Last: exited with code 3/,
  );
  let refusal: unknown;
  try {
    await workers.call("crashy.echo", 1);
  } catch (error) {
    refusal = error;
  }
  assert(refusal instanceof FunctionCallError && refusal.type === "unavailable", String(refusal));
  assertEquals(refusal.status, 503);
  assertStringIncludes(refusal.message, 'worker "crashy" is failed: exited 5 times');
});

Deno.test("a watched file change restarts instance by instance with zero failed calls", async () => {
  const dir = await Deno.makeTempDir({ prefix: "workers-watch-" });
  await Deno.writeTextFile(join(dir, "code.py"), "# v1\n");
  await using workers = await startWorkers([
    { name: "py", command: EXAMPLES.python, instances: 2, watch: [join(dir, "*.py")] },
  ]);
  const pids = workers.status("py").instances.map((instance) => instance.pid);
  const load = steadyLoad(() => workers.call("py.sleep", { seconds: 0.005 }), 8);
  await waitFor("calls to flow", () => load.ok > 30);
  await Deno.writeTextFile(join(dir, "code.py"), "# v2\n");
  await waitFor(
    "both instances replaced",
    () =>
      workers.status("py").instances.every((instance, i) =>
        instance.pid !== pids[i] && instance.state === "running"
      ),
  );
  const before = load.ok;
  await waitFor("calls after the restart", () => load.ok > before + 30);
  const { ok, failures } = await load.stop();
  console.log(`${ok} calls ok during the rolling restart`);
  assertEquals(failures.map(String), []);
  await Deno.remove(dir, { recursive: true });
});

Deno.test("POST /workers/:name/restart rolls under load with zero failures; GET /workers shows it", async () => {
  await using workers = await startWorkers([
    { name: "php", command: EXAMPLES.php, instances: 2 },
  ]);
  const app = new Hono();
  workers.supervisor.admin(app);
  const before = (await (await app.request("/workers")).json()).workers[0];
  assertEquals(before.name, "php");
  assertEquals(before.instances.length, 2);
  const load = steadyLoad(() => workers.call("php.echo", "x"), 4);
  await waitFor("calls to flow", () => load.ok > 30);
  const response = await app.request("/workers/php/restart", { method: "POST" });
  assertEquals(response.status, 200);
  const after = (await response.json()).worker;
  const count = load.ok;
  await waitFor("calls after the restart", () => load.ok > count + 30);
  const { failures } = await load.stop();
  assertEquals(failures.map(String), []);
  for (const [i, instance] of after.instances.entries()) {
    assert(instance.pid !== before.instances[i].pid, "a new process");
    assertEquals(instance.state, "running");
  }
  assertEquals((await app.request("/workers/nope/restart", { method: "POST" })).status, 404);
});

Deno.test("graceful stop: 'stop' lets calls in flight finish, then SIGTERM, then SIGKILL", async () => {
  const workers = await startWorkers([
    { name: "polite", command: EXAMPLES.python },
    { name: "deaf", command: RAW("ignore-stop"), stopTimeout: 300 },
    { name: "stubborn", command: RAW("ignore-all"), stopTimeout: 300 },
  ]);
  const handles = ["polite", "deaf", "stubborn"].map((name) => workers.supervisor.worker(name)!);
  const slow = workers.call("polite.sleep", { seconds: 0.5 });
  await waitFor("the call to start", () => workers.status("polite").instances[0].inFlight === 1);
  await workers[Symbol.asyncDispose]();
  assertEquals(await slow, { slept: 0.5, cancelled: false });
  const exits = handles.map((worker) =>
    worker.status().instances[0].lastExit as Record<string, unknown>
  );
  assertEquals(exits.map((exit) => [exit.stoppedBy, exit.code, exit.signal, exit.requested]), [
    ["stop", 0, null, true],
    ["SIGTERM", 143, "SIGTERM", true],
    ["SIGKILL", 137, "SIGKILL", true],
  ]);
});

Deno.test("a malformed or oversize frame drops only that instance, which is restarted", async () => {
  await using workers = await startWorkers([
    { name: "garbage", command: RAW("garbage") },
    { name: "oversize", command: RAW("oversize"), maxFrame: "1MB" },
    { name: "py", command: EXAMPLES.python },
  ]);
  for (
    const [name, reason] of [
      ["garbage", /connection dropped: frame at byte offset \d+: invalid JSON/],
      [
        "oversize",
        /frame at byte offset \d+: length field announces a frame of 1073741824 bytes, over the maximum of 1048576/,
      ],
    ] as const
  ) {
    const instance = await waitFor(`${name} to be restarted`, () => {
      const [instance] = workers.status(name).instances;
      return instance.restarts >= 1 && instance;
    });
    assertMatch(instance.lastExit?.signal ?? "", /SIGKILL/);
    assertMatch(JSON.stringify(instance.lastExit), reason);
  }
  assertEquals(await workers.call("py.add", { a: 1, b: 2 }), 3);
});

Deno.test("an instance that stops answering heartbeats is killed and restarted", async () => {
  await using workers = await startWorkers([{
    name: "mute",
    command: RAW("silent"),
    heartbeat: 100,
  }]);
  const instance = await waitFor("a restart", () => {
    const [instance] = workers.status("mute").instances;
    return instance.restarts >= 1 && instance;
  });
  assertMatch(JSON.stringify(instance.lastExit), /missed heartbeats: silent for \d+ ms/);
});

Deno.test("on a reload, a worker that cannot start refuses the config, naming the entry", async () => {
  for (
    const [worker, expected] of [
      [
        { name: "ghost", command: ["no-such-interpreter-here", "x.py"] },
        /^workers\[0\]\.command: cannot start \["no-such-interpreter-here","x.py"\]: "no-such-interpreter-here" was not found/,
      ],
      [
        {
          name: "early",
          command: [
            "python3",
            "-c",
            "import sys; print('bad config', file=sys.stderr); sys.exit(2)",
          ],
        },
        /^workers\[0\] \("early"\): worker "early" instance 0 exited with code 2 before saying hello; stderr: bad config$/,
      ],
      [
        { name: "future", command: RAW("version-3") },
        /^workers\[0\] \("future"\): .* exited with code 1 before saying hello; stderr: error: protocol version 3 is not supported \(this gateway speaks 2\)$/,
      ],
      [
        {
          name: "shy",
          command: ["python3", "-c", "import time; time.sleep(30)"],
          startTimeout: 200,
        },
        /^workers\[0\] \("shy"\): worker "shy" instance 0 did not say hello within 200 ms/,
      ],
    ] as const
  ) {
    let message = "";
    try {
      await startWorkers([worker], { starting: false });
    } catch (error) {
      message = (error as Error).message;
    }
    assertMatch(message, expected);
  }
});

Deno.test("at the first start a worker that exits serves degraded; the others serve; reloads pass", async () => {
  const early = {
    name: "early",
    command: ["python3", "-c", "import sys; print('no database', file=sys.stderr); sys.exit(2)"],
  };
  await using workers = await startWorkers([early, { name: "py", command: EXAMPLES.python }]);
  assertEquals(await workers.call("py.add", { a: 1, b: 2 }), 3);
  const down = await waitFor("the worker to show failed", () => {
    const status = workers.status("early");
    return status.state === "failed" && status;
  });
  assertMatch(down.lastError?.message ?? "", /exited with code 2.*stderr: no database/);
  let refusal: unknown;
  try {
    await workers.call("early.anything", 1);
  } catch (error) {
    refusal = error;
  }
  assert(refusal instanceof FunctionCallError && refusal.type === "unavailable", String(refusal));
  assertEquals(refusal.status, 503);
  assertMatch(refusal.message, /worker "early" is (in backoff|failed).*stderr: no database/);
  // It keeps being tried, with backoff, until it gives up.
  const failed = await waitFor("the worker to give up", () => {
    const [slot] = workers.status("early").instances;
    return slot.state === "failed" && slot;
  });
  assertEquals(failed.restarts, 4);
  // The same config again, as a reload: the failing unchanged worker does not block it.
  const { config, context } = configFor({
    storage: { dataDir: workers.dir },
    workers: [early, { name: "py", command: EXAMPLES.python }].map((w) => ({ cwd: ROOT, ...w })),
  }, { starting: false });
  await (await workers.supervisor.prepare(config, context)).commit();
  assertEquals(await workers.call("py.add", { a: 2, b: 2 }), 4);
  // A command that cannot be spawned is a config error even at the first start.
  let message = "";
  try {
    await startWorkers([{ name: "ghost", command: ["no-such-interpreter-here"] }]);
  } catch (error) {
    message = (error as Error).message;
  }
  assertMatch(message, /^workers\[0\]\.command: cannot start/);
});

Deno.test("a reload keeps unchanged workers, restarts changed ones and stops removed ones", async () => {
  await using workers = await startWorkers([
    { name: "keep", command: EXAMPLES.python },
    { name: "change", command: EXAMPLES.php },
    { name: "drop", command: EXAMPLES.php },
  ]);
  const pid = (name: string) => workers.status(name).instances[0].pid;
  const [keep, change, drop] = [pid("keep"), pid("change"), pid("drop")];
  const dropped = workers.supervisor.worker("drop")!;
  const reload = (entries: Record<string, unknown>[]) => {
    const { config, context } = configFor({
      storage: { dataDir: workers.dir },
      workers: entries.map((entry) => ({ cwd: ROOT, ...entry })),
    }, { starting: false });
    return workers.supervisor.prepare(config, context);
  };
  // A refused reload (a worker that cannot start) changes nothing.
  let refused = "";
  try {
    await reload([
      { name: "keep", command: EXAMPLES.python },
      { name: "change", command: ["no-such-php"] },
    ]);
  } catch (error) {
    refused = (error as Error).message;
  }
  assertMatch(refused, /^workers\[1\]\.command: cannot start/);
  assertEquals([pid("keep"), pid("change"), pid("drop")], [keep, change, drop]);

  const change2 = await reload([
    { name: "keep", command: EXAMPLES.python },
    { name: "change", command: EXAMPLES.php, concurrency: 1 },
  ]);
  assertEquals(pid("change"), change, "nothing changes before the commit");
  await change2.commit();
  assertEquals(pid("keep"), keep);
  assert(pid("change") !== change, "the changed worker runs a new process");
  assertEquals(await workers.call("change.add", { a: 1, b: 2 }), 3);
  assertEquals(workers.supervisor.worker("drop"), undefined);
  await waitFor("the removed worker to stop", () => dropped.state === "stopped");
  let gone: unknown;
  try {
    await workers.call("drop.add", { a: 1, b: 2 }, 500);
  } catch (error) {
    gone = error;
  }
  assert(gone instanceof FunctionCallError && gone.type === "no_responder", String(gone));
});

Deno.test("a worker that dropped its connection reconnects as the same instance", async () => {
  const fixture = (file: string) => join(ROOT, "tests/workers/fixtures", file);
  await using workers = await startWorkers([
    { name: "py", command: ["python3", fixture("reconnecting.py")] },
    { name: "php", command: ["php", fixture("reconnecting.php")] },
  ]);
  for (const name of ["py", "php"]) {
    const [before] = workers.status(name).instances;
    let lost: unknown;
    try {
      await workers.call(`${name}.drop`);
    } catch (error) {
      lost = error;
    }
    assert(lost instanceof FunctionCallError && lost.type === "worker_exited", String(lost));
    await waitFor(
      `${name} to be ready again`,
      () => workers.status(name).instances[0].process === "ready",
    );
    assertEquals(await workers.call(`${name}.echo`, "again"), "again");
    const [after] = workers.status(name).instances;
    assertEquals([after.pid, after.restarts], [before.pid, 0], name);
  }
});

Deno.test("a full queue answers overloaded; with restart 'never' a gone worker answers no_responder", async () => {
  await using workers = await startWorkers([
    { name: "php", command: EXAMPLES.php, concurrency: 1, queue: 1 },
    { name: "once", command: EXAMPLES.python, restart: "never" },
  ]);
  const running = workers.call("php.sleep", { seconds: 0.3 });
  const queued = workers.call("php.echo", "queued");
  let overloaded: unknown;
  try {
    await workers.call("php.echo", "refused");
  } catch (error) {
    overloaded = error;
  }
  assert(
    overloaded instanceof FunctionCallError && overloaded.type === "overloaded",
    String(overloaded),
  );
  assertEquals(overloaded.status, 503);
  assertEquals([await running, await queued], [{ slept: 0.3 }, "queued"]);

  Deno.kill(workers.status("once").instances[0].pid, "SIGKILL");
  await waitFor("the worker to stay down", () => workers.status("once").state === "stopped");
  let gone: unknown;
  try {
    await workers.call("once.echo", 1);
  } catch (error) {
    gone = error;
  }
  assert(gone instanceof FunctionCallError && gone.type === "no_responder", String(gone));
  assertMatch(
    gone.message,
    /worker "once" is stopped: was killed by SIGKILL.*restart policy "never"/,
  );
});

Deno.test("events for a worker that stops reading are dropped by its bus queue, not buffered", async () => {
  await using workers = await startWorkers([
    { name: "deaf", command: RAW("deaf-subscriber"), heartbeat: "1m", stopTimeout: 200 },
  ]);
  const [instance] = workers.status("deaf").instances;
  const source = { listener: "test", protocol: "gateway" } as const;
  const payload = new Uint8Array(16 * 1024).fill(65);
  for (let i = 0; i < 3000; i++) {
    workers.bus.publish({ topic: `flood/${i}`, payload, source, meta: {} });
    if (i % 100 === 0) await new Promise((resolve) => setTimeout(resolve, 1));
  }
  const owner = `worker/deaf/0/${instance.pid}`;
  const dropped = await waitFor("dropped events", () => {
    const line = workers.metrics.render().split("\n")
      .find((l) => l.startsWith(`gateway_bus_dropped_total{owner="${owner}"}`));
    return line && Number(line.split(" ").at(-1));
  });
  // At most the bus queue (1024) and about 4 MiB of frames (256 events) are held for it.
  assert(dropped > 3000 - 1024 - 256 - 100, `only ${dropped} of 3000 events dropped`);
});
