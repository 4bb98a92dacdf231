/**
 * Issue 12, item 10: secrets do not leak from the real gateway process.
 * `GET /config` masks worker `env` values, bridge URL credentials and
 * passwords and plugin settings (keys); `GET /mqtt` and the bridge's
 * reconnect warnings show its URL without the password; the access log masks
 * API keys in query strings; the broker's sessions, the bridges' queue and
 * the plugins' store are files of mode 0600.
 */

import { join } from "node:path";
import { assert, assertEquals, assertStringIncludes } from "../helpers/assert.ts";
import { freePort, startGateway } from "../helpers/gateway.ts";
import { echoUpstream } from "../plugins/shipped/shipped.ts";
import { EXAMPLES } from "../workers/harness.ts";

const API_KEY = "alice-api-key-3c9f1e";
const DB_URL_PASSWORD = "db-pass-8d21";
const BRIDGE_URL_PASSWORD = "bridge-url-pass-51aa";
const BRIDGE_PASSWORD = "bridge-password-77c0";
const SECRETS = [API_KEY, DB_URL_PASSWORD, BRIDGE_URL_PASSWORD, BRIDGE_PASSWORD];

/** A plugin that writes to its store, so that the store's file exists. */
const STORING_PLUGIN = `export default {
  name: "storing",
  async init(ctx) { await ctx.store.set("started", true); },
  onRequest() {},
};
`;

function leaked(text: string): string[] {
  return SECRETS.filter((secret) => text.includes(secret));
}

async function until(what: string, check: () => boolean | Promise<boolean>): Promise<void> {
  for (let i = 0; i < 600; i++) {
    if (await check()) return;
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
  throw new Error(`timed out waiting for ${what}`);
}

Deno.test("config, bridge logs and the access log show no secrets; data files are 0600", async () => {
  await using upstream = echoUpstream();
  // Nothing listens there: the bridge keeps reconnecting and warning.
  const closed = freePort();
  const apiKeyPlugin = join(import.meta.dirname!, "..", "..", "plugins", "api-key.ts");
  await using gw = await startGateway({
    listeners: { web: { type: "http", host: "127.0.0.1", port: 0 } },
    upstreams: { api: { targets: [upstream.url], retries: 0 } },
    routes: [{
      name: "orders",
      match: { path: "/orders" },
      plugins: ["api-key", "storing"],
      target: { upstream: "api" },
    }],
    plugins: { settings: { "api-key": { keys: { alice: API_KEY }, query: "api_key" } } },
    workers: [{
      name: "python",
      command: EXAMPLES.python,
      env: { DATABASE_URL: `postgres://app:${DB_URL_PASSWORD}@db/app`, FROM_ENV: "env:HOME" },
    }],
    mqtt: {
      listeners: { main: { port: freePort() } },
      allowAnonymous: true,
      bridges: {
        cloud: {
          url: `mqtt://bob:${BRIDGE_URL_PASSWORD}@127.0.0.1:${closed}`,
          username: "bob",
          password: BRIDGE_PASSWORD,
          out: [{ topic: "sensors/#" }],
          reconnect: { min: "50ms", max: "100ms" },
        },
      },
    },
  }, {
    files: {
      "plugins/api-key.ts": await Deno.readTextFile(apiKeyPlugin),
      "plugins/storing.ts": STORING_PLUGIN,
    },
  });
  const url = `http://127.0.0.1:${await gw.port("web")}`;

  const config = await (await gw.admin("/config")).text();
  assertEquals(leaked(config), [], config);
  const shown = JSON.parse(config);
  assertEquals(shown.workers[0].env, { DATABASE_URL: "[redacted]", FROM_ENV: "env:HOME" });
  assertEquals(shown.plugins.settings["api-key"].keys.alice, "[redacted]");
  assertEquals(shown.mqtt.bridges.cloud.url, `mqtt://bob:[redacted]@127.0.0.1:${closed}`);

  const mqtt = await (await gw.admin("/mqtt")).text();
  assertEquals(leaked(mqtt), [], mqtt);

  const response = await fetch(`${url}/orders?page=2&api_key=${API_KEY}`);
  assertEquals(response.status, 200);
  await response.body?.cancel();
  const access = await gw.waitForLine(/\/orders\?page=2.*"logger":"gateway\.access"/);
  assertStringIncludes(access, "api_key=[redacted]");
  assertStringIncludes(access, "page=2");

  const warnings = () => gw.lines.filter((line) => line.includes("disconnected from"));
  await until("two bridge reconnect warnings", () => warnings().length >= 2);
  assertStringIncludes(warnings()[0], `bob:[redacted]@127.0.0.1:${closed}`);
  assertEquals(leaked(gw.output), [], "the log");

  const dataDir = join(gw.dir, "data");
  await until("the plugin store", async () => {
    const answer = await gw.admin("/status");
    const status = await answer.json();
    return status.plugins.some((p: { name: string; state: string }) =>
      p.name === "storing" && p.state === "running"
    );
  });
  const files = [...Deno.readDirSync(dataDir)].map((entry) => entry.name)
    .filter((name) => /\.(sqlite3|kv)(-wal|-shm)?$/.test(name)).sort();
  for (const base of ["mqtt-sessions.sqlite3", "mqtt-queue.sqlite3", "plugins.kv"]) {
    assert(files.includes(base), `${base} in ${files}`);
  }
  for (const name of files) {
    assertEquals((await Deno.stat(join(dataDir, name))).mode! & 0o777, 0o600, name);
  }
});
