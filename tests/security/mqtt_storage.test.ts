/**
 * Security regressions of the broker's storage bounds (issue 12, item 8),
 * through the real gateway process with mqtt.js: retained messages bounded
 * by bytes per message and in total (measured on disk), no persistent
 * sessions for anonymous clients unless allowed, a bound on persistent
 * sessions, queued bytes per offline session, and subscriptions per client.
 * Every refusal is counted in `gateway_mqtt_storage_refused_total{reason}`.
 */

import { join } from "node:path";
import mqtt from "mqtt";
import { assert, assertEquals } from "../helpers/assert.ts";
import { freePort, type GatewayProcess, startGateway } from "../helpers/gateway.ts";
import { until } from "../helpers/wait.ts";

const KiB = 1024;
const MiB = 1024 * KiB;

/** A gateway with one anonymous broker listener and `mqttConfig` merged into its section. */
async function brokerGateway(
  mqttConfig: Record<string, unknown> = {},
): Promise<{ gw: GatewayProcess; url: string }> {
  const port = freePort();
  const gw = await startGateway({
    mqtt: { listeners: { main: { port } }, allowAnonymous: true, ...mqttConfig },
  });
  return { gw, url: `mqtt://127.0.0.1:${port}` };
}

function connect(url: string, options: mqtt.IClientOptions = {}): Promise<mqtt.MqttClient> {
  return mqtt.connectAsync(url, { reconnectPeriod: 0, ...options });
}

/** The count of `gateway_mqtt_storage_refused_total` for `reason` (0 when absent). */
async function refused(gw: GatewayProcess, reason: string): Promise<number> {
  const text = await (await gw.admin("/metrics")).text();
  const pattern = new RegExp(
    `^gateway_mqtt_storage_refused_total\\{reason="${reason}"\\} (\\S+)$`,
    "m",
  );
  return Number(text.match(pattern)?.[1] ?? 0);
}

/** Waits until client `clientId` is no longer connected (its messages are then queued). */
async function gone(gw: GatewayProcess, clientId: string): Promise<void> {
  await until(`client ${clientId} to be gone`, async () => {
    const status = await (await gw.admin("/mqtt")).json();
    return status.clients.every((c: { clientId: string }) => c.clientId !== clientId) || undefined;
  });
}

/** The retained messages a new subscriber to `filter` gets: their payload sizes by topic. */
async function retainedOf(url: string, filter: string): Promise<Map<string, number>> {
  const reader = await connect(url);
  const got = new Map<string, number>();
  reader.on("message", (topic, payload, packet) => {
    if (packet.retain) got.set(topic, payload.byteLength);
  });
  await reader.subscribeAsync(filter, { qos: 1 });
  // A marker published after the subscription arrives after every retained message.
  const marker = `marker/${crypto.randomUUID()}`;
  const markerSeen = new Promise<void>((resolve) =>
    reader.on("message", (topic) => topic === marker && resolve())
  );
  await reader.subscribeAsync(marker, { qos: 1 });
  await reader.publishAsync(marker, "m", { qos: 1 });
  await markerSeen;
  await reader.endAsync();
  return got;
}

/** The return codes of a SUBACK (0x80: refused), which mqtt.js turns into an error when one is 0x80. */
async function subscribe(
  client: mqtt.MqttClient,
  topics: string | string[],
  qos: 0 | 1,
): Promise<number[]> {
  try {
    return (await client.subscribeAsync(topics, { qos })).map((grant) => grant.qos);
  } catch (error) {
    const granted = (error as { packet?: { granted?: number[] } }).packet?.granted;
    if (!granted) throw error;
    return granted;
  }
}

/** Bytes of the files under `dir`. */
async function sizeOf(dir: string): Promise<number> {
  let total = 0;
  for await (const entry of Deno.readDir(dir)) {
    const path = join(dir, entry.name);
    total += entry.isDirectory ? await sizeOf(path) : (await Deno.stat(path)).size;
  }
  return total;
}

Deno.test("mqtt storage: a retained message over the default per-message bound is delivered, not retained, and counted", async () => {
  const { gw, url } = await brokerGateway();
  try {
    const live = await connect(url);
    const delivered: number[] = [];
    live.on("message", (_topic, payload) => delivered.push(payload.byteLength));
    await live.subscribeAsync("state/#", { qos: 1 });
    const publisher = await connect(url);
    await publisher.publishAsync("state/small", "on", { qos: 1, retain: true });
    await publisher.publishAsync("state/big", new Uint8Array(300 * KiB) as never, {
      qos: 1,
      retain: true,
    });
    // A too-large message replacing a retained one removes it (it is no longer the topic's state).
    await publisher.publishAsync("state/small", new Uint8Array(300 * KiB) as never, {
      qos: 2,
      retain: true,
    });
    await until("the live deliveries", () => delivered.length === 3 || undefined);
    assertEquals(delivered, [2, 300 * KiB, 300 * KiB]);
    assertEquals((await (await gw.admin("/mqtt")).json()).retained, 0);
    assertEquals(await retainedOf(url, "state/#"), new Map());
    assertEquals(await refused(gw, "retained_message_bytes"), 2);
    await publisher.endAsync();
    await live.endAsync();
  } finally {
    await gw.stop();
  }
});

Deno.test("mqtt storage: retained messages stay within maxRetainedBytes on disk", async () => {
  const { gw, url } = await brokerGateway({
    maxPacketSize: "2MB",
    sessions: { maxRetainedMessageBytes: "1MB", maxRetainedBytes: "4MB" },
  });
  try {
    const publisher = await connect(url);
    const payload = new Uint8Array(1000 * KiB).fill(0x61);
    for (let i = 0; i < 40; i++) {
      await publisher.publishAsync(`r/${i}`, payload as never, { qos: 1, retain: true });
    }
    // QoS 2: on disk before its PUBREC, with every write before it.
    await publisher.publishAsync("r/last", "x", { qos: 2, retain: true });
    await publisher.endAsync();
    const onDisk = await sizeOf(join(gw.dir, "data"));
    console.log(`data directory after 40 x 1000 KiB retained: ${(onDisk / MiB).toFixed(1)} MiB`);
    // 40 MB were published as retained; 4 MB may be kept (and the store's pages, WAL included).
    assert(onDisk < 16 * MiB, `the data directory holds ${(onDisk / MiB).toFixed(1)} MiB`);
    assertEquals((await (await gw.admin("/mqtt")).json()).retained, 5); // 4 of 1000 KiB, "r/last"
    assertEquals(await refused(gw, "retained_bytes"), 36);
  } finally {
    await gw.stop();
  }
});

Deno.test("mqtt storage: anonymous clients get no persistent session by default", async () => {
  const { gw, url } = await brokerGateway();
  try {
    for (let i = 0; i < 20; i++) {
      const error = await connect(url, { clientId: `anon-${i}`, clean: false }).then(
        (client) => client.endAsync().then(() => undefined),
        (error: Error & { code?: number }) => error,
      );
      assertEquals(error?.code, 5, `anon-${i}: ${error?.message ?? "accepted"}`);
    }
    // Clean sessions are still served.
    const clean = await connect(url, { clientId: "anon-clean" });
    await clean.subscribeAsync("t/#", { qos: 1 });
    await clean.endAsync();
    assertEquals(await refused(gw, "anonymous_session"), 20);
    const metrics = await (await gw.admin("/metrics")).text();
    assert(/^gateway_mqtt_persistent_sessions 0$/m.test(metrics), "sessions were stored");
  } finally {
    await gw.stop();
  }
});

Deno.test("mqtt storage: mqtt.sessions.anonymous lets anonymous clients keep a session", async () => {
  const { gw, url } = await brokerGateway({ sessions: { anonymous: true } });
  try {
    const options = { clientId: "anon-kept", clean: false };
    const first = await connect(url, options);
    await first.subscribeAsync("t/#", { qos: 1 });
    await first.endAsync();
    await gone(gw, "anon-kept");
    const again = mqtt.connect(url, { ...options, reconnectPeriod: 0 });
    const connack = await new Promise<mqtt.IConnackPacket>((resolve) =>
      again.once("connect", resolve)
    );
    assertEquals(connack.sessionPresent, true);
    await again.endAsync();
  } finally {
    await gw.stop();
  }
});

Deno.test("mqtt storage: persistent sessions beyond maxSessions get SUBACK 0x80", async () => {
  const { gw, url } = await brokerGateway({ sessions: { anonymous: true, maxSessions: 2 } });
  try {
    const granted: number[] = [];
    for (const id of ["s1", "s2", "s3"]) {
      const client = await connect(url, { clientId: id, clean: false });
      granted.push(...await subscribe(client, `t/${id}`, 1));
      await client.endAsync();
    }
    assertEquals(granted, [1, 1, 128]);
    // An existing session may still subscribe; a clean client is not a session.
    const s1 = await connect(url, { clientId: "s1", clean: false });
    assertEquals(await subscribe(s1, "t/more", 1), [1]);
    await s1.endAsync();
    const clean = await connect(url, { clientId: "s4" });
    assertEquals(await subscribe(clean, "t/s4", 1), [1]);
    await clean.endAsync();
    assertEquals(await refused(gw, "sessions"), 1);
  } finally {
    await gw.stop();
  }
});

Deno.test("mqtt storage: an offline session keeps at most maxQueuedBytes, its newest messages", async () => {
  const { gw, url } = await brokerGateway({
    sessions: { anonymous: true, maxQueuedBytes: "64KB" },
  });
  try {
    const options = { clientId: "offline-bytes", clean: false };
    const subscriber = await connect(url, options);
    await subscriber.subscribeAsync("q/#", { qos: 1 });
    await subscriber.endAsync();
    await gone(gw, "offline-bytes");
    const publisher = await connect(url);
    const payload = new Uint8Array(10 * KiB);
    for (let i = 0; i < 20; i++) {
      payload[0] = i;
      await publisher.publishAsync("q/x", payload as never, { qos: 1 });
    }
    // Larger than the whole bound: not queued at all.
    await publisher.publishAsync("q/huge", new Uint8Array(100 * KiB) as never, { qos: 1 });
    await publisher.endAsync();

    const received: number[] = [];
    const resumed = mqtt.connect(url, { ...options, reconnectPeriod: 0 });
    resumed.on("message", (topic, body) => received.push(topic === "q/x" ? body[0] : -1));
    // 64 KiB hold 6 messages of 10 KiB and their topic.
    await until("the queued messages", () => received.length >= 6 || undefined);
    await resumed.publishAsync("q/marker", "m", { qos: 1 });
    await until("the marker", () => received.includes(-1) || undefined);
    assertEquals(received, [14, 15, 16, 17, 18, 19, -1]);
    assertEquals(await refused(gw, "queued_bytes"), 15);
    await resumed.endAsync();
  } finally {
    await gw.stop();
  }
});

Deno.test("mqtt storage: subscriptions beyond the default 100 per client get SUBACK 0x80 and are not stored", async () => {
  const { gw, url } = await brokerGateway({ sessions: { anonymous: true } });
  try {
    const options = { clientId: "many-subs", clean: false };
    const client = await connect(url, options);
    const topics = Array.from({ length: 105 }, (_, i) => `s/${i}`);
    assertEquals(await subscribe(client, topics, 1), [
      ...Array(100).fill(1),
      ...Array(5).fill(128),
    ]);
    // Re-subscribing to a topic held already is not one more.
    assertEquals(await subscribe(client, "s/0", 0), [0]);
    // After an unsubscribe there is room for one.
    await client.unsubscribeAsync("s/1");
    assertEquals(await subscribe(client, "s/200", 1), [1]);
    assertEquals(await subscribe(client, "s/201", 1), [128]);
    assertEquals(await refused(gw, "subscriptions"), 6);
    await client.endAsync();
    await gone(gw, "many-subs");
    // The session holds the 100 granted subscriptions, not the refused ones.
    const resumed = await connect(url, options);
    const status = await (await gw.admin("/mqtt")).json();
    const entry = status.clients.find((c: { clientId: string }) => c.clientId === "many-subs");
    assertEquals(entry?.subscriptions, 100);
    await resumed.endAsync();
  } finally {
    await gw.stop();
  }
});
