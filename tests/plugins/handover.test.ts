/**
 * State hand-over on hot reload through the real gateway process: the old
 * version's `snapshot()` reaches the new version's `restore(state)` across a
 * file save, and a restore that throws, a snapshot over the size bound or
 * past the time bound keeps the old version serving with its state.
 */

import { join } from "node:path";
import { assertEquals, assertStringIncludes } from "../helpers/assert.ts";
import { freePort, type GatewayProcess, startGateway } from "../helpers/gateway.ts";
import { until } from "../helpers/wait.ts";

/**
 * A counter kept in memory. `pad` makes the next snapshot that many bytes
 * larger, `stall` makes it never finish; `restore` throws when `broken`.
 */
function counter(version: string, broken = false): string {
  return `let hits = 0;
let pad = 0;
let stall = false;
export default {
  name: "counter",
  version: "${version}",
  functions: {
    hit: () => ({ hits: ++hits, version: "${version}" }),
    pad: (args) => ({ pad: pad = Number(args.query.bytes) }),
    stall: () => ({ stall: stall = true }),
  },
  snapshot: () => stall ? new Promise(() => {}) : { hits, pad: "x".repeat(pad) },
  restore(state) {
    ${broken ? 'throw new Error("cannot restore on purpose");' : "hits = state.hits;"}
  },
};
`;
}

async function counterStatus(gw: GatewayProcess) {
  const list = await (await gw.admin("/plugins")).json() as {
    name: string;
    version: string;
    state: string;
    lastError: { message: string } | null;
  }[];
  return list.find((plugin) => plugin.name === "counter")!;
}

async function startCounter() {
  const port = freePort();
  const gw = await startGateway({
    listeners: { web: { type: "http", port } },
    plugins: { debounce: "20ms" },
    routes: [
      { match: { path: "/hit" }, target: { function: { name: "counter.hit" } } },
      { match: { path: "/pad" }, target: { function: { name: "counter.pad" } } },
      { match: { path: "/stall" }, target: { function: { name: "counter.stall" } } },
    ],
  }, { files: { "plugins/counter.ts": counter("1.0.0") } });
  const call = async (path: string) => {
    const res = await fetch(`http://127.0.0.1:${port}${path}`);
    assertEquals(res.status, 200, path);
    return await res.json();
  };
  return { gw, call, file: join(gw.dir, "plugins", "counter.ts") };
}

Deno.test("plugin hand-over: snapshot() and restore() carry a counter across a file save", async () => {
  const { gw, call, file } = await startCounter();
  await using _gw = gw;
  for (let i = 1; i <= 3; i++) assertEquals((await call("/hit")).hits, i);
  await Deno.writeTextFile(file, counter("1.0.1"));
  await until("version 1.0.1", async () => (await counterStatus(gw)).version === "1.0.1");
  assertEquals(await call("/hit"), { hits: 4, version: "1.0.1" });
});

Deno.test("plugin hand-over: a restore that throws, a snapshot too big or too slow keeps the old version serving", async () => {
  const { gw, call, file } = await startCounter();
  await using _gw = gw;
  assertEquals((await call("/hit")).hits, 1);
  const refusedWith = async (message: string) => {
    const status = await until(message, async () => {
      const status = await counterStatus(gw);
      return status.lastError?.message.includes(message) && status;
    });
    assertEquals([status.state, status.version], ["running", "1.0.0"]);
  };

  await Deno.writeTextFile(file, counter("1.1.0", true));
  await refusedWith("restore() of the new version failed: cannot restore on purpose");
  assertEquals(await call("/hit"), { hits: 2, version: "1.0.0" });

  await call(`/pad?bytes=${2 * 1024 * 1024}`);
  await Deno.writeTextFile(file, counter("1.2.0"));
  await refusedWith("more than the 1048576 a hand-over carries");
  assertEquals(await call("/hit"), { hits: 3, version: "1.0.0" });

  await call("/pad?bytes=0");
  await call("/stall");
  await Deno.writeTextFile(file, counter("1.3.0"));
  await refusedWith("snapshot() of the running version failed");
  assertEquals(await call("/hit"), { hits: 4, version: "1.0.0" });
  assertStringIncludes((await counterStatus(gw)).lastError!.message, "keeps serving");
});
