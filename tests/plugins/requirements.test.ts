/**
 * Plugin dependencies through the real gateway process: `requires` orders the
 * inits (a dependant's init calls what it requires), refuses a missing,
 * incompatible or cyclic requirement with a message naming the file, and a
 * reload of a required plugin reloads its dependants only on a new major.
 */

import { join } from "node:path";
import { assertEquals, assertStringIncludes } from "../helpers/assert.ts";
import { freePort, type GatewayProcess, startGateway } from "../helpers/gateway.ts";
import { until } from "../helpers/wait.ts";

type PluginStatus = Record<string, unknown> & { lastError?: { message: string } | null };

async function pluginNamed(gw: GatewayProcess, name: string): Promise<PluginStatus | undefined> {
  const list = await (await gw.admin("/plugins")).json() as PluginStatus[];
  return list.find((plugin) => plugin.name === name);
}

/** `b` at `version`: its init takes a while, so a dependant that did not wait would miss it. */
function required(version: string): string {
  return `let ready = false;
export default {
  name: "b",
  version: "${version}",
  async init() {
    await new Promise((resolve) => setTimeout(resolve, 300));
    ready = true;
  },
  functions: { hello: () => ({ from: "b", ready }) },
};
`;
}

/** A plugin that requires `requires` and records, at load, an id a reload would change. */
function dependant(name: string, requires: Record<string, string>, initCall = ""): string {
  return `const loaded = crypto.randomUUID();
let greeting = null;
export default {
  name: "${name}",
  requires: ${JSON.stringify(requires)},
  async init(ctx) {
    ${initCall ? `greeting = await ctx.call("${initCall}");` : ""}
  },
  functions: { info: () => ({ loaded, greeting }) },
};
`;
}

Deno.test("plugin requirements: b starts before a, and a's init calls b's function", async () => {
  const port = freePort();
  await using gw = await startGateway({
    listeners: { web: { type: "http", port } },
    routes: [{ match: { path: "/a" }, target: { function: { name: "a.info" } } }],
  }, {
    files: {
      "plugins/a.ts": dependant("a", { b: "^1.2" }, "b.hello"),
      "plugins/b.ts": required("1.4.0"),
    },
  });
  const res = await fetch(`http://127.0.0.1:${port}/a`);
  assertEquals(res.status, 200);
  assertEquals((await res.json()).greeting, { from: "b", ready: true });
  const a = await pluginNamed(gw, "a");
  assertEquals([a?.state, a?.requires], ["running", { b: "^1.2" }]);
});

Deno.test("plugin requirements: a missing, incompatible or cyclic requirement refuses the plugin, naming its file", async () => {
  await using gw = await startGateway({
    listeners: { web: { type: "http", port: freePort() } },
    plugins: { debounce: "20ms" },
    routes: [{ target: { respond: { body: "ok" } } }],
  }, {
    files: {
      "plugins/b.ts": required("1.4.0"),
      "plugins/lonely.ts": dependant("lonely", { auth: "^1" }),
      "plugins/newer.ts": dependant("newer", { b: "^2" }),
      "plugins/x.ts": dependant("x", { y: "~1.0" }),
      "plugins/y.ts": dependant("y", { x: ">=0.1" }),
    },
  });
  const expected: Record<string, string> = {
    lonely: 'plugins/lonely.ts: requires "auth" ^1, but there is no plugin "auth"',
    newer: 'plugins/newer.ts: requires "b" ^2, found 1.4.0',
    x: "plugins/x.ts: requires form a cycle: x -> y -> x",
    y: "plugins/y.ts: requires form a cycle: y -> x -> y",
  };
  for (const [name, message] of Object.entries(expected)) {
    const plugin = await pluginNamed(gw, name);
    assertEquals(plugin?.state, "failed", name);
    assertStringIncludes(plugin?.lastError?.message ?? "", message);
  }
  assertEquals((await pluginNamed(gw, "b"))?.state, "running");
  // What was missing arrives: the plugin that needed it is tried again and starts.
  await Deno.writeTextFile(
    join(gw.dir, "plugins", "auth.ts"),
    required("1.0.0").replace('"b"', '"auth"'),
  );
  await until("lonely running", async () => (await pluginNamed(gw, "lonely"))?.state === "running");
});

Deno.test("plugin requirements: reloading b within its major leaves a alone; a new major reloads a, which refuses it", async () => {
  const port = freePort();
  await using gw = await startGateway({
    listeners: { web: { type: "http", port } },
    plugins: { debounce: "20ms" },
    routes: [{ match: { path: "/a" }, target: { function: { name: "a.info" } } }],
  }, {
    files: {
      "plugins/a.ts": dependant("a", { b: "^1" }),
      "plugins/b.ts": required("1.0.0"),
    },
  });
  const info = async () => await (await fetch(`http://127.0.0.1:${port}/a`)).json();
  const first = await info();
  const file = join(gw.dir, "plugins", "b.ts");
  await Deno.writeTextFile(file, required("1.1.0"));
  await until("b 1.1.0", async () => (await pluginNamed(gw, "b"))?.version === "1.1.0");
  const reload = await gw.admin("/plugins/b/reload", { method: "POST" });
  assertEquals(reload.status, 200);
  await reload.body?.cancel();
  // The same version of a, loaded once: neither the save nor the reload of b reloaded it.
  assertEquals(await info(), first);
  await Deno.writeTextFile(file, required("2.0.0"));
  const refused = await until("a refused", async () => {
    const a = await pluginNamed(gw, "a");
    return a?.state === "failed" && a;
  });
  assertStringIncludes(
    refused.lastError?.message ?? "",
    'plugins/a.ts: requires "b" ^1, found 2.0.0',
  );
  assertEquals((await fetch(`http://127.0.0.1:${port}/a`)).status, 503);
  // a is made for b 1: back to it, a loads again.
  await Deno.writeTextFile(file, required("1.2.0"));
  await until("a running", async () => (await pluginNamed(gw, "a"))?.state === "running");
  const again = await info();
  assertEquals(again.loaded === first.loaded, false);
});
