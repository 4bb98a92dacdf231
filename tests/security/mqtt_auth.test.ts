/**
 * Security regression of the shipped MQTT config (issue 12, item 15), through
 * the real gateway process: the `mqtt` section of `config/config.json`
 * refuses anonymous clients (CONNACK 5) and accepts the local user, whose
 * password the gateway generates in the data directory (mode 0600) and names
 * in its log.
 */

import { join } from "node:path";
import mqtt from "mqtt";
import { assert, assertEquals, assertStringIncludes } from "../helpers/assert.ts";
import { freePort, type GatewayProcess, startGateway } from "../helpers/gateway.ts";

/** The shipped config's `mqtt` section, its listener on a free port. */
async function shippedMqtt(port: number): Promise<Record<string, unknown>> {
  const shipped = JSON.parse(
    await Deno.readTextFile(new URL("../../config/config.json", import.meta.url)),
  );
  const section = shipped.mqtt as { listeners: Record<string, { port: number }> };
  for (const listener of Object.values(section.listeners)) listener.port = port;
  return section;
}

/** The CONNACK return code of a CONNECT with `options` (0: accepted). */
function connackCode(url: string, options: mqtt.IClientOptions): Promise<number> {
  return mqtt.connectAsync(url, { reconnectPeriod: 0, ...options }).then(
    async (client) => {
      await client.endAsync();
      return 0;
    },
    (error: Error & { code?: number }) => error.code ?? -1,
  );
}

async function start(): Promise<{ gw: GatewayProcess; url: string }> {
  const port = freePort();
  const gw = await startGateway({ mqtt: await shippedMqtt(port) });
  return { gw, url: `mqtt://127.0.0.1:${port}` };
}

Deno.test("mqtt auth: the shipped config refuses anonymous clients and accepts the generated local user", async () => {
  const { gw, url } = await start();
  try {
    assertEquals(await connackCode(url, { clientId: "anon" }), 5);
    assertEquals(await connackCode(url, { clientId: "anon", username: "" }), 5);

    const file = join(gw.dir, "data", "mqtt-local.password");
    const info = await Deno.stat(file);
    assertEquals((info.mode ?? 0) & 0o777, 0o600);
    const password = (await Deno.readTextFile(file)).trim();
    assert(password.length >= 32, `a short generated password: ${password.length} characters`);
    const line = await gw.waitForLine(/MQTT user \W*local\W* logs in with the password in/);
    assertStringIncludes(line, file);

    assertEquals(await connackCode(url, { username: "local", password: "wrong" }), 4);
    const client = await mqtt.connectAsync(url, {
      reconnectPeriod: 0,
      username: "local",
      password,
    });
    const got = new Promise<string>((resolve) => client.on("message", (_t, p) => resolve(`${p}`)));
    await client.subscribeAsync("devices/d1/up", { qos: 1 });
    await client.publishAsync("devices/d1/up", "21.5", { qos: 1 });
    assertEquals(await got, "21.5");
    await client.endAsync();
  } finally {
    await gw.stop();
  }
});

Deno.test("mqtt auth: the generated password survives a restart with the same data directory", async () => {
  const dataDir = await Deno.makeTempDir({ prefix: "mqtt-local-" });
  const port = freePort();
  const config = { storage: { dataDir }, mqtt: await shippedMqtt(port) };
  try {
    let gw = await startGateway(config);
    const password = await Deno.readTextFile(join(dataDir, "mqtt-local.password"));
    await gw.stop();
    gw = await startGateway(config);
    try {
      assertEquals(await Deno.readTextFile(join(dataDir, "mqtt-local.password")), password);
      const url = `mqtt://127.0.0.1:${port}`;
      assertEquals(await connackCode(url, { username: "local", password: password.trim() }), 0);
    } finally {
      await gw.stop();
    }
  } finally {
    await Deno.remove(dataDir, { recursive: true }).catch(() => {});
  }
});

Deno.test("mqtt auth: allowAnonymous opens the broker deliberately; localUser false removes the local user", async () => {
  const port = freePort();
  const gw = await startGateway({
    mqtt: { ...await shippedMqtt(port), allowAnonymous: true, localUser: false },
  });
  try {
    const url = `mqtt://127.0.0.1:${port}`;
    assertEquals(await connackCode(url, { clientId: "anon" }), 0);
    assertEquals(await connackCode(url, { username: "local", password: "anything" }), 4);
  } finally {
    await gw.stop();
  }
});
