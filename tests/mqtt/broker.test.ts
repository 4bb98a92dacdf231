/**
 * The embedded broker through the real gateway process, with the Mosquitto
 * command-line clients and mqtt.js: QoS 0/1/2, retained messages, last will,
 * persistent sessions, ACL denials, bad passwords, MQTT over WebSocket, the
 * bus in both directions, and malformed packets.
 */

import mqtt from "mqtt";
import { assert, assertEquals, assertStringIncludes } from "../helpers/assert.ts";
import { freePort, type GatewayProcess, startGateway } from "../helpers/gateway.ts";
import { selfSignedCertificate } from "../helpers/tls.ts";
import { hashPassword } from "../../src/mqtt/auth.ts";
import { mosquitto, subscriber } from "./clients.ts";
import { until } from "../helpers/wait.ts";
import { seededRandom } from "../helpers/random.ts";

const decoder = new TextDecoder();
const encoder = new TextEncoder();

async function mqttStatus(gw: GatewayProcess): Promise<Record<string, unknown>> {
  const res = await gw.admin("/mqtt");
  assertEquals(res.status, 200);
  return await res.json();
}

/** Messages a mqtt.js client receives, as "topic payload" strings. */
function collect(client: mqtt.MqttClient): string[] {
  const received: string[] = [];
  client.on("message", (topic, payload) => received.push(`${topic} ${decoder.decode(payload)}`));
  return received;
}

Deno.test("broker: Mosquitto clients and mqtt.js with QoS 0/1/2, retained, will, sessions, ACL, bad password", async () => {
  const port = freePort();
  const users = {
    alice: { password: await hashPassword("alice-pw", 1000) },
    dev: { password: await hashPassword("dev-pw", 1000) },
  };
  const gw = await startGateway({
    mqtt: {
      listeners: { main: { port } },
      users,
      acl: [
        { user: "alice", publish: ["#"], subscribe: ["#"] },
        { user: "dev", publish: ["devices/%c/#"], subscribe: ["cmd/%c/#"] },
      ],
    },
  });
  const alice = ["-p", String(port), "-u", "alice", "-P", "alice-pw"];
  try {
    // QoS 0, 1 and 2 through mosquitto_pub to mosquitto_sub.
    const sub = await subscriber([...alice, "-t", "q/#", "-q", "2", "-C", "3", "-W", "15", "-v"]);
    for (const qos of ["0", "1", "2"]) {
      const pub = await mosquitto("mosquitto_pub", [
        ...alice,
        "-t",
        `q/${qos}`,
        "-m",
        `m${qos}`,
        "-q",
        qos,
      ]);
      assertEquals(pub.code, 0, pub.stderr);
    }
    const got = await sub.result;
    assertEquals(got.code, 0, got.stderr);
    assertEquals(got.stdout.trim().split("\n").sort(), ["q/0 m0", "q/1 m1", "q/2 m2"]);

    // Retained: a later subscriber gets the last retained message.
    await mosquitto("mosquitto_pub", [...alice, "-t", "ret/x", "-m", "kept", "-r", "-q", "1"]);
    const retained = await mosquitto("mosquitto_sub", [
      ...alice,
      "-t",
      "ret/x",
      "-C",
      "1",
      "-W",
      "10",
    ]);
    assertEquals(retained.stdout.trim(), "kept");
    assertEquals((await mqttStatus(gw)).retained, 1);

    // Persistent session: a QoS 1 message published while the client is away is delivered on resume.
    const session = ["-c", "-i", "session-1", "-q", "1", "-t", "p/#"];
    const first = await mosquitto("mosquitto_sub", [...alice, ...session, "-E"]);
    assertEquals(first.code, 0, first.stderr);
    await mosquitto("mosquitto_pub", [...alice, "-t", "p/offline", "-m", "queued", "-q", "1"]);
    const resumed = await mosquitto("mosquitto_sub", [...alice, ...session, "-C", "1", "-W", "10"]);
    assertEquals(resumed.stdout.trim(), "queued");

    // Last will: published when a client goes away without DISCONNECT.
    const watcher = await subscriber([...alice, "-t", "will/#", "-C", "1", "-W", "10", "-v"]);
    const doomed = await mqtt.connectAsync(`mqtt://127.0.0.1:${port}`, {
      username: "alice",
      password: "alice-pw",
      clientId: "doomed",
      will: {
        topic: "will/doomed",
        payload: encoder.encode("gone") as never,
        qos: 1,
        retain: false,
      },
      reconnectPeriod: 0,
    });
    doomed.stream.destroy();
    assertEquals((await watcher.result).stdout.trim(), "will/doomed gone");
    doomed.end(true);

    // Bad password: CONNACK refuses, the client says so.
    const bad = await mosquitto("mosquitto_pub", [
      "-p",
      String(port),
      "-u",
      "alice",
      "-P",
      "nope",
      "-t",
      "x",
      "-m",
      "y",
    ]);
    assert(bad.code !== 0, "a bad password must fail");
    assertStringIncludes(bad.stderr.toLowerCase(), "bad user name or password");
    await gw.waitForLine(/refused: bad user name or password/);

    // ACL: dev may publish under devices/<its client id>/ only; a denied publish disconnects it.
    const spy = await mqtt.connectAsync(`mqtt://127.0.0.1:${port}`, {
      username: "alice",
      password: "alice-pw",
      reconnectPeriod: 0,
    });
    const seen = collect(spy);
    await spy.subscribeAsync("devices/#", { qos: 1 });
    const dev = await mqtt.connectAsync(`mqtt://127.0.0.1:${port}`, {
      username: "dev",
      password: "dev-pw",
      clientId: "d1",
      reconnectPeriod: 0,
    });
    const granted = await dev.subscribeAsync("cmd/d1/#", { qos: 1 });
    assertEquals(granted.map((g) => g.qos), [1]);
    const denied = await dev.subscribeAsync("cmd/d2/#", { qos: 1 }).then(
      (subscriptions) => subscriptions.map((g) => g.qos),
      (error: Error & { packet?: { granted?: number[] } }) => error.packet?.granted,
    );
    assertEquals(denied, [128]);
    await dev.publishAsync("devices/d1/temp", "21", { qos: 1 });
    const closed = new Promise<void>((resolve) => dev.once("close", () => resolve()));
    dev.publish("devices/d2/temp", "22", { qos: 1 });
    await closed;
    await until("the allowed message", () => seen.includes("devices/d1/temp 21") || undefined);
    await gw.waitForLine(/ACL denied publish on .*devices\/d2\/temp.*client .*d1/);
    await gw.waitForLine(/ACL denied subscribe to .*cmd\/d2\/#.*client .*d1/);
    assert(!seen.includes("devices/d2/temp 22"), "a denied publish must not be delivered");
    dev.end(true);
    spy.end(true);

    const status = await mqttStatus(gw);
    assert((status.messages as { in: number }).in >= 6, JSON.stringify(status));
    const connections = await (await gw.admin("/connections")).json();
    assert(Array.isArray(connections));
  } finally {
    await gw.stop();
  }
});

Deno.test("broker: MQTT over WebSocket and the bus in both directions without loops", async () => {
  const web = freePort();
  const port = freePort();
  const gw = await startGateway({
    listeners: { web: { type: "http", port: web } },
    routes: [
      { name: "mqtt-ws", match: { path: "/mqtt" }, target: { mqtt: {} } },
      {
        name: "devices",
        match: { path: "/ws/:site" },
        target: { websocket: { topic: "ws/{site}/{deviceId}", handshake: "device-id" } },
      },
    ],
    mqtt: {
      listeners: { main: { port } },
      allowAnonymous: true,
      busToBroker: ["ws/#", "device/#"],
    },
  });
  try {
    const wsClient = await mqtt.connectAsync(`ws://127.0.0.1:${web}/mqtt`, { reconnectPeriod: 0 });
    const seen = collect(wsClient);
    await wsClient.subscribeAsync("#", { qos: 1 });

    // A WebSocket device publishes into the bus; the MQTT-over-WebSocket subscriber sees it.
    const device = new WebSocket(`ws://127.0.0.1:${web}/ws/plant1`);
    const frames: string[] = [];
    device.binaryType = "arraybuffer";
    device.onmessage = (event) => frames.push(decoder.decode(event.data));
    await new Promise((resolve) => device.onopen = resolve);
    device.send("dev1");
    device.send("temperature=21");
    await until(
      "the device frame over MQTT",
      () => seen.includes("ws/plant1/dev1 temperature=21") || undefined,
    );

    // An MQTT (TCP) client publishes to the device's send topic; the bus delivers it.
    const tcpClient = await mqtt.connectAsync(`mqtt://127.0.0.1:${port}`, { reconnectPeriod: 0 });
    await tcpClient.publishAsync("device/dev1/send", "reboot", { qos: 1 });
    await until("the push to the device", () => frames.includes("reboot") || undefined);
    await until("the MQTT copy", () => seen.includes("device/dev1/send reboot") || undefined);
    await new Promise((r) => setTimeout(r, 300));
    assertEquals(seen.filter((m) => m === "device/dev1/send reboot").length, 1, "no loop");
    assertEquals(seen.filter((m) => m.startsWith("ws/plant1/dev1")).length, 1, "no loop");

    // QoS 2 over WebSocket.
    await tcpClient.publishAsync("q2/ws", "exactly-once", { qos: 2 });
    await until("the QoS 2 message", () => seen.includes("q2/ws exactly-once") || undefined);

    const status = await mqttStatus(gw);
    assertEquals((status.clients as unknown[]).length, 2);
    assertEquals(status.subscriptions, 1);
    const connections: { protocol: string; listener: string }[] =
      await (await gw.admin("/connections")).json();
    assertEquals(
      connections.filter((c) => c.protocol === "mqtt").map((c) => c.listener).sort(),
      ["main", "mqtt-ws"],
    );
    device.close();
    wsClient.end(true);
    tcpClient.end(true);
  } finally {
    await gw.stop();
  }
});

/** Whether the server closes `conn` within `ms` (reading and discarding what it sends). */
async function closedWithin(conn: Deno.Conn, ms: number): Promise<boolean> {
  const buffer = new Uint8Array(1024);
  const timeout = new Promise<"open">((resolve) => setTimeout(() => resolve("open"), ms));
  while (true) {
    const read = conn.read(buffer).then((n) => n === null ? "closed" : "data", () => "closed");
    const result = await Promise.race([read, timeout]);
    if (result !== "data") return result === "closed";
  }
}

Deno.test("broker: malformed and fuzzed packets close only that client", async () => {
  const port = freePort();
  const gw = await startGateway({
    mqtt: { listeners: { main: { port } }, allowAnonymous: true, connectTimeout: "1s" },
  });
  try {
    const healthy = await mqtt.connectAsync(`mqtt://127.0.0.1:${port}`, { reconnectPeriod: 0 });
    const seen = collect(healthy);
    await healthy.subscribeAsync("health/#", { qos: 1 });
    // CONNECT, protocol MQTT level 4, clean session, keepalive 60, client id "fz".
    const connect = [16, 14, 0, 4, 77, 81, 84, 84, 4, 2, 0, 60, 0, 2, 102, 122];
    const publish = [0x32, 9, 0, 3, 97, 47, 98, 0, 1, 104, 105]; // QoS 1 "a/b" id 1 "hi"
    const random = seededRandom(20261123);
    let closedCount = 0;
    const cases = 40;
    for (let i = 0; i < cases; i++) {
      const conn = await Deno.connect({ hostname: "127.0.0.1", port });
      let bytes: number[];
      if (i === 0) bytes = [...connect, 0x00, 0x00]; // reserved packet type 0
      else if (i % 2 === 0) {
        bytes = [...connect, ...publish];
        for (let flips = 1 + Math.floor(random() * 4); flips > 0; flips--) {
          const at = connect.length + Math.floor(random() * publish.length);
          bytes[at] = Math.floor(random() * 256);
        }
      } else {
        bytes = Array.from(
          { length: 1 + Math.floor(random() * 64) },
          () => Math.floor(random() * 256),
        );
      }
      await conn.write(new Uint8Array(bytes)).catch(() => {});
      if (await closedWithin(conn, 1500)) closedCount++;
      else if (i === 0) throw new Error("a reserved packet type must close the connection");
      conn.close();
      await healthy.publishAsync(`health/${i}`, "ok", { qos: 1 });
      await until(`health message ${i}`, () => seen.includes(`health/${i} ok`) || undefined);
    }
    assert(healthy.connected, "the healthy client stays connected");
    assert(
      closedCount >= cases / 2,
      `only ${closedCount} of ${cases} malformed connections closed`,
    );
    healthy.end(true);
  } finally {
    await gw.stop();
  }
});

Deno.test("broker: a reload changes users and rebinds a changed port without dropping clients", async () => {
  const [first, second] = [freePort(), freePort()];
  const users = { alice: { password: await hashPassword("alice-pw", 1000) } };
  const mqttConfig = { listeners: { main: { port: first } }, users };
  const gw = await startGateway({ mqtt: mqttConfig });
  try {
    const client = await mqtt.connectAsync(`mqtt://127.0.0.1:${first}`, {
      username: "alice",
      password: "alice-pw",
      reconnectPeriod: 0,
    });
    const seen = collect(client);
    await client.subscribeAsync("news/#", { qos: 1 });
    let dropped = false;
    client.on("close", () => dropped = true);

    const bob = { password: await hashPassword("bob-pw", 1000) };
    await gw.writeConfig({
      ...JSON.parse(await Deno.readTextFile(gw.configFile)),
      mqtt: { listeners: { main: { port: second } }, users: { ...users, bob } },
    });
    await gw.waitForLine(/config reloaded/);
    const bobArgs = ["-p", String(second), "-u", "bob", "-P", "bob-pw"];
    const pub = await mosquitto("mosquitto_pub", [
      ...bobArgs,
      "-t",
      "news/1",
      "-m",
      "hi",
      "-q",
      "1",
    ]);
    assertEquals(pub.code, 0, pub.stderr);
    await until(
      "the message on the kept connection",
      () => seen.includes("news/1 hi") || undefined,
    );
    assert(!dropped, "the client stayed connected");
    const old = await mosquitto("mosquitto_pub", ["-p", String(first), "-t", "x", "-m", "y"]);
    assert(old.code !== 0, "the old port is closed");
    client.end(true);
  } finally {
    await gw.stop();
  }
});

Deno.test("broker: a TLS listener with certificate files relative to the config file", async () => {
  const { cert, key } = await selfSignedCertificate();
  const port = freePort();
  const gw = await startGateway({
    mqtt: {
      listeners: { secure: { port, tls: { cert: "tls/cert.pem", key: "tls/key.pem" } } },
      allowAnonymous: true,
    },
  }, {
    files: { "tls/cert.pem": cert, "tls/key.pem": key },
  });
  try {
    const options = { reconnectPeriod: 0, rejectUnauthorized: false };
    const sub = await mqtt.connectAsync(`mqtts://127.0.0.1:${port}`, options);
    const seen = collect(sub);
    await sub.subscribeAsync("secure/#", { qos: 1 });
    const pub = await mqtt.connectAsync(`mqtts://127.0.0.1:${port}`, options);
    await pub.publishAsync("secure/a", "over tls", { qos: 1 });
    await until("the message over TLS", () => seen.includes("secure/a over tls") || undefined);
    const plain = await mosquitto("mosquitto_pub", ["-p", String(port), "-t", "x", "-m", "y"]);
    assert(plain.code !== 0, "plain MQTT on the TLS port fails");
    sub.end(true);
    pub.end(true);
  } finally {
    await gw.stop();
  }
});
