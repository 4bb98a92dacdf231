import { assert, assertEquals } from "../helpers/assert.ts";
import { until } from "../helpers/wait.ts";
import { watchDebounced } from "../../src/util/watch.ts";
import { join } from "node:path";

Deno.test("watchDebounced calls once per burst with the filtered paths", async () => {
  const dir = await Deno.realPath(await Deno.makeTempDir());
  const calls: string[][] = [];
  const stop = watchDebounced([dir], (paths) => calls.push(paths), {
    debounceMs: 100,
    filter: (path) => path.endsWith(".json"),
  });
  try {
    for (let i = 0; i < 5; i++) await Deno.writeTextFile(join(dir, "a.json"), `${i}`);
    await Deno.writeTextFile(join(dir, "ignored.txt"), "x");
    await until("a debounced call", () => calls.length > 0);
    await new Promise((resolve) => setTimeout(resolve, 300));
    assertEquals(calls.length, 1, `calls: ${JSON.stringify(calls)}`);
    assertEquals(calls[0], [join(dir, "a.json")]);
  } finally {
    stop();
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("watchDebounced ignores changes that the filter drops", async () => {
  const dir = await Deno.realPath(await Deno.makeTempDir());
  const calls: string[][] = [];
  const stop = watchDebounced([dir], (paths) => calls.push(paths), {
    debounceMs: 50,
    filter: (path) => path.endsWith(".json"),
  });
  try {
    await Deno.writeTextFile(join(dir, "other.txt"), "x");
    await Deno.writeTextFile(join(dir, "b.json"), "{}");
    await until("the json change", () => calls.length > 0);
    assert(calls.flat().every((path) => path.endsWith(".json")), JSON.stringify(calls));
  } finally {
    stop();
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("watchDebounced reports and skips a directory it cannot watch", async () => {
  const dir = await Deno.realPath(await Deno.makeTempDir());
  const missing = join(dir, "missing");
  const errors: string[] = [];
  const calls: string[][] = [];
  const stop = watchDebounced([missing, dir], (paths) => calls.push(paths), {
    debounceMs: 50,
    onError: (failed) => errors.push(failed),
  });
  try {
    assertEquals(errors, [missing]);
    await Deno.writeTextFile(join(dir, "c.txt"), "x");
    await until("the change in the watchable directory", () => calls.length > 0);
  } finally {
    stop();
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("watchDebounced throws for a directory it cannot watch without onError", () => {
  let thrown: unknown;
  try {
    watchDebounced(["/nonexistent/watch/dir"], () => {});
  } catch (error) {
    thrown = error;
  }
  assert(thrown instanceof Deno.errors.NotFound, String(thrown));
});

Deno.test("watchDebounced stops calling after stop()", async () => {
  const dir = await Deno.realPath(await Deno.makeTempDir());
  let calls = 0;
  const stop = watchDebounced([dir], () => calls++, { debounceMs: 20 });
  await Deno.writeTextFile(join(dir, "d.txt"), "x");
  stop();
  await new Promise((resolve) => setTimeout(resolve, 150));
  assertEquals(calls, 0);
  await Deno.remove(dir, { recursive: true });
});
