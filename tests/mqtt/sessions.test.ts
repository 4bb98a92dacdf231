/**
 * Persistent sessions and retained messages on disk, through the real gateway
 * process: a `mosquitto_sub -c` subscriber's queued QoS 1 messages and a
 * retained message survive `kill -9`; a clean-session client's subscriptions
 * do not come back; the bounds drop what they say.
 */

import { Buffer } from "node:buffer";
import mqtt from "mqtt";
import { assertEquals, assertStringIncludes } from "../helpers/assert.ts";
import { freePort, type GatewayProcess, startGateway } from "../helpers/gateway.ts";
import { until } from "../helpers/wait.ts";
import { mosquitto } from "./clients.ts";

/** Connects an mqtt.js client and resolves with it and its CONNACK's session-present flag. */
async function connect(
  port: number,
  options: mqtt.IClientOptions,
): Promise<{ client: mqtt.MqttClient; sessionPresent: boolean }> {
  const client = mqtt.connect(`mqtt://127.0.0.1:${port}`, { reconnectPeriod: 0, ...options });
  const connack = await new Promise<mqtt.IConnackPacket>((resolve, reject) => {
    client.once("connect", resolve);
    client.once("error", reject);
  });
  return { client, sessionPresent: connack.sessionPresent };
}

async function subscriptionsOf(gw: GatewayProcess, clientId: string): Promise<number> {
  const status = await (await gw.admin("/mqtt")).json();
  const client = status.clients.find((c: { clientId: string }) => c.clientId === clientId);
  return client.subscriptions;
}

async function killAndRestart(
  gw: GatewayProcess,
  config: Record<string, unknown>,
): Promise<GatewayProcess> {
  gw.child.kill("SIGKILL");
  assertEquals((await gw.exited()).signal, "SIGKILL");
  await gw.stop();
  return await startGateway(config);
}

Deno.test("sessions: queued QoS 1 messages and retained messages survive kill -9; clean sessions do not", async () => {
  const dataDir = await Deno.makeTempDir({ prefix: "mqtt-sessions-data-" });
  const port = freePort();
  const config = {
    storage: { dataDir },
    mqtt: { listeners: { main: { port } }, allowAnonymous: true, sessions: { anonymous: true } },
  };
  const p = ["-p", String(port)];
  const total = 200;
  const big = Buffer.from(new Uint8Array(150_000).map((_, i) => i % 251));
  let gw = await startGateway(config);
  try {
    // A persistent subscriber subscribes and goes away.
    const first = await mosquitto("mosquitto_sub", [
      ...p,
      "-c",
      "-i",
      "s1",
      "-q",
      "1",
      "-t",
      "sess/#",
      "-E",
    ]);
    assertEquals(first.code, 0, first.stderr);
    // A clean-session client and a persistent one subscribe and disconnect.
    for (const [clientId, clean] of [["c1", true], ["p1", false]] as const) {
      const { client } = await connect(port, { clientId, clean });
      await client.subscribeAsync("other/#", { qos: 1 });
      await client.endAsync();
    }
    // QoS 1 messages for s1 while it is away. The broker sends no PUBACK (and no PUBREC)
    // before a message is on disk for every persistent session it reaches; the last
    // publish, QoS 2, is a barrier all the same.
    const publisher = await mqtt.connectAsync(`mqtt://127.0.0.1:${port}`, { reconnectPeriod: 0 });
    for (let i = 0; i < total; i++) {
      await publisher.publishAsync(`sess/${i % 3}`, String(i), { qos: 1 });
    }
    await publisher.publishAsync("ret/a", "kept", { qos: 1, retain: true });
    // Larger than one KV value: stored in parts.
    await publisher.publishAsync("big", big, { qos: 1, retain: true });
    await publisher.publishAsync("ret/b", "gone", { qos: 1, retain: true });
    await publisher.publishAsync("ret/b", "", { qos: 2, retain: true });
    publisher.end(true);

    gw = await killAndRestart(gw, config);

    const retained = await mosquitto("mosquitto_sub", [...p, "-t", "ret/#", "-C", "1", "-W", "10"]);
    assertEquals(retained.code, 0, retained.stderr);
    assertEquals(retained.stdout.trim(), "kept");
    assertEquals((await (await gw.admin("/mqtt")).json()).retained, 2);
    const reader = await mqtt.connectAsync(`mqtt://127.0.0.1:${port}`, { reconnectPeriod: 0 });
    const bigAgain = new Promise<Uint8Array>((resolve) =>
      reader.on("message", (_t, p) => resolve(p))
    );
    await reader.subscribeAsync("big", { qos: 1 });
    assertEquals(Array.from(await bigAgain), Array.from(big));
    await reader.endAsync();

    const again = await mosquitto("mosquitto_sub", [
      ...p,
      "-c",
      "-i",
      "s1",
      "-q",
      "1",
      "-t",
      "sess/#",
      "-C",
      String(total),
      "-W",
      "20",
    ]);
    assertEquals(again.code, 0, again.stderr);
    assertEquals(
      again.stdout.trim().split("\n"),
      Array.from({ length: total }, (_, i) => String(i)),
    );

    // The persistent client's session is back; the clean-session client's is not.
    const persistent = await connect(port, { clientId: "p1", clean: false });
    assertEquals(persistent.sessionPresent, true);
    assertEquals(await subscriptionsOf(gw, "p1"), 1);
    const clean = await connect(port, { clientId: "c1", clean: false });
    assertEquals(clean.sessionPresent, false);
    assertEquals(await subscriptionsOf(gw, "c1"), 0);
    // A QoS 2 write as the barrier: s1's acknowledgements are on disk before its PUBREC.
    await persistent.client.publishAsync("ret/a", "", { qos: 2, retain: true });
    await persistent.client.endAsync();
    await clean.client.endAsync();

    // Delivered and acknowledged: nothing is queued for s1 after another restart.
    gw = await killAndRestart(gw, config);
    const { client: s1, sessionPresent } = await connect(port, { clientId: "s1", clean: false });
    assertEquals(sessionPresent, true);
    const redelivered: string[] = [];
    s1.on("message", (_topic, payload) => redelivered.push(String(payload)));
    // The marker is published after the reconnect, so it arrives after anything still queued.
    await s1.publishAsync("sess/marker", "marker", { qos: 1 });
    await until("the marker", () => redelivered.includes("marker"));
    assertEquals(redelivered, ["marker"]);
    await s1.endAsync();
  } finally {
    await gw.stop();
    await Deno.remove(dataDir, { recursive: true }).catch(() => {});
  }
});

Deno.test("sessions: a full offline queue drops its oldest messages; retained topics are bounded", async () => {
  const dataDir = await Deno.makeTempDir({ prefix: "mqtt-sessions-bounds-" });
  const port = freePort();
  const config = {
    storage: { dataDir },
    mqtt: {
      listeners: { main: { port } },
      allowAnonymous: true,
      sessions: { anonymous: true, maxQueuedMessages: 5, maxRetained: 2 },
    },
  };
  const p = ["-p", String(port)];
  let gw = await startGateway(config);
  try {
    const first = await mosquitto("mosquitto_sub", [
      ...p,
      "-c",
      "-i",
      "b1",
      "-q",
      "1",
      "-t",
      "bound/#",
      "-E",
    ]);
    assertEquals(first.code, 0, first.stderr);
    const publisher = await mqtt.connectAsync(`mqtt://127.0.0.1:${port}`, { reconnectPeriod: 0 });
    for (let i = 0; i < 12; i++) await publisher.publishAsync("bound/x", String(i), { qos: 1 });
    for (const topic of ["r/1", "r/2", "r/3"]) {
      await publisher.publishAsync(topic, topic, { qos: 1, retain: true });
    }
    // Replacing a retained topic at the bound is allowed (QoS 2: on disk before its PUBREC).
    await publisher.publishAsync("r/2", "r/2 again", { qos: 2, retain: true });
    publisher.end(true);

    gw = await killAndRestart(gw, config);

    const queued = await mosquitto("mosquitto_sub", [
      ...p,
      "-c",
      "-i",
      "b1",
      "-q",
      "1",
      "-t",
      "bound/#",
      "-C",
      "5",
      "-W",
      "20",
    ]);
    assertEquals(queued.code, 0, queued.stderr);
    assertEquals(queued.stdout.trim().split("\n"), ["7", "8", "9", "10", "11"]);
    const retained = await mosquitto("mosquitto_sub", [...p, "-t", "r/#", "-C", "2", "-W", "10"]);
    assertEquals(retained.stdout.trim().split("\n").sort(), ["r/1", "r/2 again"]);
  } finally {
    await gw.stop();
    await Deno.remove(dataDir, { recursive: true }).catch(() => {});
  }
});

Deno.test("sessions: drops at the bounds are counted", async () => {
  const port = freePort();
  const gw = await startGateway({
    mqtt: {
      listeners: { main: { port } },
      allowAnonymous: true,
      sessions: { anonymous: true, maxQueuedMessages: 2, maxRetained: 1 },
    },
  });
  try {
    const p = ["-p", String(port)];
    await mosquitto("mosquitto_sub", [...p, "-c", "-i", "m1", "-q", "1", "-t", "m/#", "-E"]);
    const publisher = await mqtt.connectAsync(`mqtt://127.0.0.1:${port}`, { reconnectPeriod: 0 });
    for (let i = 0; i < 5; i++) await publisher.publishAsync("m/x", String(i), { qos: 1 });
    await publisher.publishAsync("r/1", "a", { qos: 1, retain: true });
    await publisher.publishAsync("r/2", "b", { qos: 2, retain: true });
    publisher.end(true);
    const metrics = await (await gw.admin("/metrics")).text();
    assertStringIncludes(metrics, 'gateway_mqtt_sessions_dropped_total{what="queued"} 3');
    assertStringIncludes(metrics, 'gateway_mqtt_sessions_dropped_total{what="retained"} 1');
  } finally {
    await gw.stop();
  }
});
