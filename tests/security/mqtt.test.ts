/**
 * Security regressions of the embedded MQTT broker (issue 12, items 3, 18 and
 * 19), through the real gateway process with raw sockets and mqtt.js:
 * packet-size limits before and after CONNECT over TCP and WebSocket, the
 * connect timeout's bound, an empty client id asking for a persistent
 * session, and DUP=1 on messages re-sent after a reconnect.
 */

import { Buffer } from "node:buffer";
import mqtt from "mqtt";
import { assert, assertEquals, assertStringIncludes } from "../helpers/assert.ts";
import { freePort, type GatewayProcess, startGateway } from "../helpers/gateway.ts";
import { until } from "../helpers/wait.ts";

const MiB = 1024 * 1024;
const encoder = new TextEncoder();

/** An MQTT string: two length bytes and UTF-8. */
function mqttString(text: string | Uint8Array): Uint8Array {
  const bytes = typeof text === "string" ? encoder.encode(text) : text;
  return new Uint8Array([bytes.length >> 8, bytes.length & 0xff, ...bytes]);
}

/** The remaining-length varint of `length` (MQTT 3.1.1 §2.2.3). */
function varint(length: number): number[] {
  const bytes: number[] = [];
  do {
    let byte = length % 128;
    length = Math.floor(length / 128);
    if (length > 0) byte |= 0x80;
    bytes.push(byte);
  } while (length > 0);
  return bytes;
}

/** An MQTT 3.1.1 CONNECT packet, with a user name and password when `password` is given. */
function connectPacket(clientId: string, clean: boolean, password?: Uint8Array): Uint8Array {
  const flags = (clean ? 0x02 : 0) | (password ? 0xc0 : 0);
  const body = [
    ...mqttString("MQTT"),
    4,
    flags,
    0,
    60,
    ...mqttString(clientId),
    ...(password ? [...mqttString("user"), ...mqttString(password)] : []),
  ];
  return new Uint8Array([0x10, ...varint(body.length), ...body]);
}

/** Reads from `conn` until it has `count` bytes or the peer closes; returns what came. */
async function readUpTo(conn: Deno.Conn, count: number): Promise<Uint8Array> {
  const received: number[] = [];
  const buffer = new Uint8Array(64 * 1024);
  while (received.length < count) {
    const n = await conn.read(buffer).catch(() => null);
    if (n === null) break;
    received.push(...buffer.subarray(0, n));
  }
  return new Uint8Array(received);
}

/** The gateway's resident set size, from `/metrics`. */
async function rss(gw: GatewayProcess): Promise<number> {
  const text = await (await gw.admin("/metrics")).text();
  const value = text.match(/^gateway_process_memory_bytes\{kind="rss"\} (\S+)$/m)?.[1];
  assert(value !== undefined, `no rss in /metrics:\n${text.slice(0, 500)}`);
  return Number(value);
}

async function brokerGateway(mqttConfig: Record<string, unknown> = {}): Promise<{
  gw: GatewayProcess;
  port: number;
  web: number;
}> {
  const port = freePort();
  const web = freePort();
  const gw = await startGateway({
    listeners: { web: { type: "http", port: web } },
    routes: [{ name: "mqtt-ws", match: { path: "/mqtt" }, target: { mqtt: {} } }],
    // connectTimeout at its bound: what closes a connection in these tests is the packet limit.
    mqtt: {
      listeners: { main: { port } },
      allowAnonymous: true,
      connectTimeout: "60s",
      ...mqttConfig,
    },
  });
  return { gw, port, web };
}

Deno.test("mqtt security: a CONNECT declaring 256 MiB is refused before its body is held", async () => {
  const { gw, port } = await brokerGateway();
  try {
    const before = await rss(gw);
    const declared = 256 * MiB - 1;
    const chunk = new Uint8Array(MiB).fill(0x61);
    const taken: number[] = [];
    for (let i = 0; i < 3; i++) {
      const conn = await Deno.connect({ hostname: "127.0.0.1", port });
      let sent = 0;
      try {
        await conn.write(new Uint8Array([0x10, ...varint(declared)]));
        while (sent < declared) {
          sent += await conn.write(chunk.subarray(0, Math.min(chunk.length, declared - sent)));
        }
      } catch { /* the gateway closed the connection: the writes fail */ }
      // Closed, not held open: the read ends without a CONNACK.
      assertEquals((await readUpTo(conn, 4)).length, 0);
      taken.push(sent);
      conn.close();
    }
    const growth = (await rss(gw)) - before;
    assert(growth < 64 * MiB, `RSS grew by ${(growth / MiB).toFixed(0)} MiB (bound 64 MiB)`);
    for (const sent of taken) {
      assert(sent < declared, `all ${declared} bytes of a CONNECT were taken`);
    }
    await gw.waitForLine(/over the limit of 65536/);
  } finally {
    await gw.stop();
  }
});

Deno.test("mqtt security: packets over 64 KiB before CONNECT is accepted close the connection", async () => {
  const { gw, port } = await brokerGateway();
  try {
    // A CONNECT of 100 KiB (its password) is refused without a CONNACK...
    const big = await Deno.connect({ hostname: "127.0.0.1", port });
    await big.write(connectPacket("big", true, new Uint8Array(100 * 1024).fill(0x62)))
      .catch(() => 0);
    assertEquals(await readUpTo(big, 4), new Uint8Array());
    big.close();
    // ...while one under the limit gets CONNACK 0 (anonymous users; the password is not checked).
    const small = await Deno.connect({ hostname: "127.0.0.1", port });
    await small.write(connectPacket("small", true));
    assertEquals(await readUpTo(small, 4), new Uint8Array([0x20, 2, 0, 0]));
    small.close();
  } finally {
    await gw.stop();
  }
});

Deno.test("mqtt security: an oversized packet over the mqtt WebSocket route closes it", async () => {
  const { gw, web } = await brokerGateway();
  try {
    const socket = new WebSocket(`ws://127.0.0.1:${web}/mqtt`, "mqtt");
    const closed = new Promise<void>((resolve) => socket.onclose = () => resolve());
    await new Promise((resolve, reject) => {
      socket.onopen = resolve;
      socket.onerror = reject;
    });
    socket.send(new Uint8Array([0x10, ...varint(256 * MiB - 1), ...new Uint8Array(1024)]));
    // Without the limit the broker waits for the rest until connectTimeout (60 s) ends it.
    let timer: ReturnType<typeof setTimeout> | undefined;
    const outcome = await Promise.race([
      closed.then(() => "closed"),
      new Promise((resolve) => timer = setTimeout(() => resolve("still open"), 20_000)),
    ]);
    clearTimeout(timer);
    assertEquals(outcome, "closed");
  } finally {
    await gw.stop();
  }
});

Deno.test("mqtt security: maxPacketSize bounds packets of connected clients", async () => {
  const { gw, port } = await brokerGateway({ maxPacketSize: "256KB" });
  try {
    const url = `mqtt://127.0.0.1:${port}`;
    const subscriber = await mqtt.connectAsync(url, { reconnectPeriod: 0 });
    const received: number[] = [];
    subscriber.on("message", (_topic, payload) => received.push(payload.length));
    await subscriber.subscribeAsync("big/#", { qos: 1 });
    const publisher = await mqtt.connectAsync(url, { reconnectPeriod: 0 });
    // 100 KiB is over the pre-CONNECT limit but within maxPacketSize: delivered.
    await publisher.publishAsync("big/ok", Buffer.alloc(100 * 1024), { qos: 1 });
    await until("the 100 KiB message", () => received.includes(100 * 1024) || undefined);
    // 1 MiB is over maxPacketSize: the publisher is disconnected, nothing delivered.
    let closed = false;
    publisher.once("close", () => closed = true);
    publisher.publish("big/no", Buffer.alloc(MiB), { qos: 1 });
    await until(
      "the publisher closed or the 1 MiB message delivered",
      () => closed || received.length > 1 || undefined,
    );
    assert(closed, "the publisher of a 1 MiB packet is still connected");
    await gw.waitForLine(/over the limit of 262144/);
    assertEquals(received, [100 * 1024]);
    publisher.end(true);
    await subscriber.endAsync();
  } finally {
    await gw.stop();
  }
});

Deno.test("mqtt security: connectTimeout is bounded", async () => {
  const port = freePort();
  const refused = await startGateway({
    mqtt: { listeners: { main: { port } }, allowAnonymous: true, connectTimeout: "5m" },
  }).then(async (gw) => {
    await gw.stop();
    return undefined;
  }, (error: Error) => error);
  assert(refused, "a config with connectTimeout 5m was accepted");
  assertStringIncludes(refused.message, "connectTimeout is at most 60s");
});

Deno.test("mqtt security: an empty client id with clean session 0 gets CONNACK 2", async () => {
  const { gw, port } = await brokerGateway();
  try {
    const conn = await Deno.connect({ hostname: "127.0.0.1", port });
    await conn.write(connectPacket("", false));
    // CONNACK, session present 0, return code 2 (identifier rejected).
    assertEquals(await readUpTo(conn, 4), new Uint8Array([0x20, 2, 0, 2]));
    conn.close();
    const status = await (await gw.admin("/mqtt")).json();
    assertEquals(status.clients, []);
    // An empty client id with clean session 1 is still accepted.
    const clean = await Deno.connect({ hostname: "127.0.0.1", port });
    await clean.write(connectPacket("", true));
    assertEquals(await readUpTo(clean, 4), new Uint8Array([0x20, 2, 0, 0]));
    clean.close();
  } finally {
    await gw.stop();
  }
});

Deno.test("mqtt security: an unacknowledged message is re-sent with DUP=1 after a reconnect", async () => {
  const { gw, port } = await brokerGateway({ sessions: { anonymous: true } });
  try {
    const url = `mqtt://127.0.0.1:${port}`;
    const options = { clientId: "dup-sub", clean: false, reconnectPeriod: 0 };
    const first: mqtt.IPublishPacket[] = [];
    const unacked = await mqtt.connectAsync(url, options);
    // Takes the message and never acknowledges it (mqtt.js sends the PUBACK after handleMessage).
    unacked.handleMessage = (packet) => first.push(packet as mqtt.IPublishPacket);
    await unacked.subscribeAsync("dup/t", { qos: 1 });
    const publisher = await mqtt.connectAsync(url, { reconnectPeriod: 0 });
    await publisher.publishAsync("dup/t", "once", { qos: 1 });
    await until("the first delivery", () => first.length > 0 || undefined);
    assertEquals(first[0].dup, false);
    unacked.end(true);
    await until("the subscriber gone", async () => {
      const status = await (await gw.admin("/mqtt")).json();
      return status.clients.every((c: { clientId: string }) => c.clientId !== "dup-sub") ||
        undefined;
    });

    const again: mqtt.IPublishPacket[] = [];
    const resumed = mqtt.connect(url, options);
    resumed.on("message", (_topic, _payload, packet) => again.push(packet));
    await until("the re-delivery", () => again.length > 0 || undefined);
    assertEquals(again[0].messageId, first[0].messageId);
    assertEquals(new TextDecoder().decode(again[0].payload as Uint8Array), "once");
    assertEquals(again[0].dup, true);
    await resumed.endAsync();
    await publisher.endAsync();
  } finally {
    await gw.stop();
  }
});
