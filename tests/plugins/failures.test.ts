/**
 * Failure attribution through the real gateway process: a hook or function
 * that throws fails that request or call (500) and is counted, and the plugin
 * keeps running with its in-memory state: only a worker that crashes, hangs or
 * fails its ping is restarted.
 */

import { assertEquals, assertStringIncludes } from "../helpers/assert.ts";
import { freePort, startGateway } from "../helpers/gateway.ts";

/** Counts hooks in a module-level variable: a restart would start it at 0 again. */
const COUNTING = `let seen = 0;
const started = crypto.randomUUID();
export default {
  name: "counting",
  onRequest(req) {
    seen++;
    if (req.query.fail) throw new Error("failed on purpose");
  },
  functions: {
    seen: () => ({ seen, started }),
    boom: () => { throw new Error("boom on purpose"); },
  },
};
`;

Deno.test("plugin failures: 20 throwing hooks and calls answer 500, are counted, and do not restart the plugin", async () => {
  const port = freePort();
  await using gw = await startGateway({
    listeners: { web: { type: "http", port } },
    routes: [
      { match: { path: "/seen" }, target: { function: { name: "counting.seen" } } },
      { match: { path: "/boom" }, target: { function: { name: "counting.boom" } } },
      { match: { path: "/*" }, plugins: ["counting"], target: { respond: { body: "ok" } } },
    ],
  }, { files: { "plugins/counting.ts": COUNTING } });
  const base = `http://127.0.0.1:${port}`;
  const before = await (await fetch(`${base}/seen`)).json();
  assertEquals(before.seen, 0);
  for (let i = 0; i < 20; i++) {
    const res = await fetch(`${base}/x?fail=1`);
    assertEquals(res.status, 500, `request ${i + 1}`);
    assertEquals((await res.json()).error.code, "plugin_error");
    const call = await fetch(`${base}/boom`);
    assertEquals(call.status, 500, `call ${i + 1}`);
    await call.body?.cancel();
  }
  const ok = await fetch(`${base}/x`);
  assertEquals([ok.status, await ok.text()], [200, "ok"]);
  // The same Worker, with its state: every hook counted, none lost to a restart.
  assertEquals(await (await fetch(`${base}/seen`)).json(), { seen: 21, started: before.started });
  const plugin = (await (await gw.admin("/plugins")).json() as Record<string, unknown>[])
    .find((p) => p.name === "counting")!;
  assertEquals([plugin.state, plugin.restarts, plugin.errors], ["running", 0, 40]);
  const metrics = await (await gw.admin("/metrics")).text();
  assertStringIncludes(
    metrics,
    'gateway_plugin_failures_total{plugin="counting",kind="request",reason="threw"} 20',
  );
  assertStringIncludes(
    metrics,
    'gateway_plugin_failures_total{plugin="counting",kind="function",reason="threw"} 20',
  );
});
