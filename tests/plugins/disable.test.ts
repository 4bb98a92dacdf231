/**
 * Disabling and enabling a plugin through the real gateway process:
 * `plugins.disabled` in the config and `POST /plugins/:name/disable|enable` on
 * the admin API. A disabled plugin's routes answer 503 `plugin_disabled`; its
 * version ends once the hooks in flight are done; the config's list wins again
 * on the next config reload.
 */

import { assertEquals } from "../helpers/assert.ts";
import { freePort, type GatewayProcess, startGateway } from "../helpers/gateway.ts";
import { until } from "../helpers/wait.ts";

/** Answers every request itself; `?slow=1` answers after 3 s. */
const STAMP = `export default {
  name: "stamp",
  async onRequest(req) {
    if (req.query.slow) await new Promise((resolve) => setTimeout(resolve, 3000));
    return { status: 200, body: req.query.slow ? "slow stamped" : "stamped" };
  },
};
`;

function configFor(port: number, disabled: string[]): Record<string, unknown> {
  return {
    listeners: { web: { type: "http", port } },
    ...(disabled.length > 0 ? { plugins: { disabled } } : {}),
    routes: [{ match: { path: "/*" }, plugins: ["stamp"], target: { respond: { body: "no" } } }],
  };
}

async function stampStatus(gw: GatewayProcess): Promise<Record<string, unknown>> {
  const list = await (await gw.admin("/plugins")).json() as Record<string, unknown>[];
  return list.find((plugin) => plugin.name === "stamp")!;
}

async function get(url: string): Promise<{ status: number; text: string }> {
  const res = await fetch(url);
  return { status: res.status, text: await res.text() };
}

Deno.test("plugin disable: plugins.disabled answers 503 plugin_disabled, admin enable serves again, a config reload disables again", async () => {
  const port = freePort();
  const config = configFor(port, ["stamp"]);
  await using gw = await startGateway(config, { files: { "plugins/stamp.ts": STAMP } });
  const url = `http://127.0.0.1:${port}/x`;
  const refused = await fetch(url);
  assertEquals(refused.status, 503);
  assertEquals((await refused.json()).error.code, "plugin_disabled");
  assertEquals((await stampStatus(gw)).state, "disabled");

  const enabled = await gw.admin("/plugins/stamp/enable", { method: "POST" });
  assertEquals([enabled.status, (await enabled.json()).state], [200, "running"]);
  assertEquals(await get(url), { status: 200, text: "stamped" });

  // The config still lists it: on its next reload the config's word wins.
  const written = JSON.parse(await Deno.readTextFile(gw.configFile));
  await gw.writeConfig({ ...written, log: { ...written.log, level: "debug" } });
  await until("the reloaded config to disable stamp", async () => (await get(url)).status === 503);
  assertEquals((await stampStatus(gw)).state, "disabled");

  const unknown = await gw.admin("/plugins/nosuch/disable", { method: "POST" });
  assertEquals(unknown.status, 404);
  await unknown.body?.cancel();
});

Deno.test("plugin disable: the admin API disables while a slow hook runs; it finishes, the next request answers 503", async () => {
  const port = freePort();
  await using gw = await startGateway(configFor(port, []), {
    files: { "plugins/stamp.ts": STAMP },
  });
  const base = `http://127.0.0.1:${port}`;
  assertEquals(await get(`${base}/x`), { status: 200, text: "stamped" });
  const slow = get(`${base}/x?slow=1`);
  await until("the slow hook to be in flight", async () => (await stampStatus(gw)).inFlight === 1);
  const disabled = await gw.admin("/plugins/stamp/disable", { method: "POST" });
  assertEquals([disabled.status, (await disabled.json()).state], [200, "disabled"]);

  const next = await fetch(`${base}/x`);
  assertEquals(next.status, 503);
  assertEquals((await next.json()).error.code, "plugin_disabled");
  assertEquals(await slow, { status: 200, text: "slow stamped" });
  await gw.waitForLine(/plugin stamp disabled/);

  const enabled = await gw.admin("/plugins/stamp/enable", { method: "POST" });
  assertEquals((await enabled.json()).state, "running");
  assertEquals(await get(`${base}/x`), { status: 200, text: "stamped" });
});
