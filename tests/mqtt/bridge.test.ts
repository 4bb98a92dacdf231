/**
 * Bridges to a real Mosquitto started by the test: topic mappings both ways,
 * and store-and-forward across an uplink outage and a `kill -9` of the gateway.
 */

import mqtt from "mqtt";
import { assert, assertEquals } from "../helpers/assert.ts";
import { freePort, type GatewayProcess, startGateway } from "../helpers/gateway.ts";
import { mapTopic } from "../../src/mqtt/bridge.ts";
import { MqttBridgeMapping } from "../../src/mqtt/config.ts";
import { mosquitto, subscriber } from "./clients.ts";
import { Mosquitto } from "./mosquitto.ts";
import { until } from "../helpers/wait.ts";

const decoder = new TextDecoder();

async function bridgeState(gw: GatewayProcess, name: string): Promise<Record<string, unknown>> {
  const status = await (await gw.admin("/mqtt")).json();
  return status.bridges[name];
}

Deno.test("mapTopic renames by prefix and takes only matching topics", () => {
  const mapping = MqttBridgeMapping.parse({
    topic: "sensors/#",
    removePrefix: "sensors/",
    addPrefix: "site1/",
  });
  assertEquals(mapTopic(mapping, "sensors/a/t"), "site1/a/t");
  assertEquals(mapTopic(mapping, "other/a"), undefined);
  assertEquals(mapTopic(MqttBridgeMapping.parse({ topic: "x/+" }), "x/1"), "x/1");
  assert(!MqttBridgeMapping.safeParse({ topic: "a/#", removePrefix: "b/" }).success);
});

Deno.test("bridge: out and in mappings with a real Mosquitto", async () => {
  const upstream = await Mosquitto.start(freePort());
  const port = freePort();
  const web = freePort();
  const gw = await startGateway({
    listeners: { web: { type: "http", port: web } },
    routes: [{ match: { path: "/publish/:name" }, target: { topic: { topic: "sensors/{name}" } } }],
    mqtt: {
      listeners: { main: { port } },
      allowAnonymous: true,
      busToBroker: ["sensors/#"],
      bridges: {
        cloud: {
          url: `mqtt://127.0.0.1:${upstream.port}`,
          out: [{ topic: "sensors/#", removePrefix: "sensors/", addPrefix: "site1/", qos: 1 }],
          in: [{ topic: "cmd/site1/#", removePrefix: "cmd/site1/", addPrefix: "cmd/", qos: 1 }],
          reconnect: { min: "100ms", max: "1s" },
        },
      },
    },
  });
  try {
    await until(
      "the bridge to connect",
      async () => (await bridgeState(gw, "cloud")).state === "connected" || undefined,
    );
    const up = await subscriber([
      "-p",
      String(upstream.port),
      "-t",
      "#",
      "-C",
      "1",
      "-W",
      "15",
      "-v",
    ]);
    const pub = await mosquitto("mosquitto_pub", [
      "-p",
      String(port),
      "-t",
      "sensors/t1",
      "-m",
      "21.5",
      "-q",
      "1",
    ]);
    assertEquals(pub.code, 0, pub.stderr);
    assertEquals((await up.result).stdout.trim(), "site1/t1 21.5");

    // A bus message (here from an HTTP route) on a busToBroker filter goes upstream too.
    const fromBus = await subscriber([
      "-p",
      String(upstream.port),
      "-t",
      "#",
      "-C",
      "1",
      "-W",
      "15",
      "-v",
    ]);
    const posted = await fetch(`http://127.0.0.1:${web}/publish/http1`, {
      method: "POST",
      body: "7",
    });
    assertEquals(posted.status, 202, await posted.text());
    assertEquals((await fromBus.result).stdout.trim(), "site1/http1 7");

    const local = await subscriber([
      "-p",
      String(port),
      "-t",
      "cmd/#",
      "-C",
      "1",
      "-W",
      "15",
      "-v",
    ]);
    await mosquitto("mosquitto_pub", [
      "-p",
      String(upstream.port),
      "-t",
      "cmd/site1/reboot",
      "-m",
      "now",
      "-q",
      "1",
    ]);
    assertEquals((await local.result).stdout.trim(), "cmd/reboot now");
    const state = await bridgeState(gw, "cloud");
    assertEquals(state.queueDepth, 0);
    const metrics = await (await gw.admin("/metrics")).text();
    assert(/gateway_mqtt_bridge_connected\{bridge="cloud"\} 1/.test(metrics), metrics);
  } finally {
    await gw.stop();
    await upstream.remove();
  }
});

Deno.test("bridge: 10,000 QoS 1 messages survive an uplink outage and kill -9, in order", async () => {
  const upstream = await Mosquitto.start(freePort());
  const dataDir = await Deno.makeTempDir({ prefix: "mqtt-outage-data-" });
  const port = freePort();
  const config = {
    storage: { dataDir },
    mqtt: {
      listeners: { main: { port } },
      allowAnonymous: true,
      bridges: {
        cloud: {
          url: `mqtt://127.0.0.1:${upstream.port}`,
          out: [{ topic: "telemetry/#", qos: 1 }],
          reconnect: { min: "100ms", max: "500ms" },
        },
      },
    },
  };
  const total = 10_000;
  // The upstream subscriber has a persistent session, so that what the bridge delivers
  // while it is not connected waits for it in Mosquitto.
  const collectorOptions = {
    clientId: "outage-collector",
    clean: false,
    reconnectPeriod: 0,
  } as const;
  let collector = await mqtt.connectAsync(`mqtt://127.0.0.1:${upstream.port}`, collectorOptions);
  await collector.subscribeAsync("telemetry/#", { qos: 1 });
  await collector.endAsync();

  let gw = await startGateway(config);
  try {
    await until(
      "the bridge to connect",
      async () => (await bridgeState(gw, "cloud")).state === "connected" || undefined,
    );
    await upstream.stop();
    await until(
      "the bridge to notice",
      async () => (await bridgeState(gw, "cloud")).state !== "connected" || undefined,
    );

    const publisher = await mqtt.connectAsync(`mqtt://127.0.0.1:${port}`, { reconnectPeriod: 0 });
    const acks: Promise<unknown>[] = [];
    for (let i = 0; i < total; i++) {
      acks.push(publisher.publishAsync("telemetry/seq", String(i), { qos: 1 }));
    }
    await Promise.all(acks);
    assertEquals((await bridgeState(gw, "cloud")).queueDepth, total);
    gw.child.kill("SIGKILL");
    assertEquals((await gw.exited()).signal, "SIGKILL");
    publisher.end(true);
    await gw.stop();

    gw = await startGateway(config);
    assertEquals((await bridgeState(gw, "cloud")).queueDepth, total);
    await upstream.resume();

    const received: number[] = [];
    collector = await mqtt.connectAsync(`mqtt://127.0.0.1:${upstream.port}`, collectorOptions);
    collector.on("message", (_topic, payload) => received.push(Number(decoder.decode(payload))));
    await collector.subscribeAsync("telemetry/#", { qos: 1 });
    await until(
      `all ${total} messages upstream`,
      () => new Set(received).size === total || undefined,
      120_000,
    );
    await until(
      "the queue to empty",
      async () => (await bridgeState(gw, "cloud")).queueDepth === 0 || undefined,
    );

    // In order: each message's first arrival comes after the previous one's.
    const firstArrivals: number[] = [];
    const seen = new Set<number>();
    for (const value of received) {
      if (!seen.has(value)) firstArrivals.push(value);
      seen.add(value);
    }
    assertEquals(firstArrivals, Array.from({ length: total }, (_, i) => i));
    const duplicates = received.length - total;
    console.log(`outage test: ${total} delivered in order, ${duplicates} duplicates`);
    collector.end(true);
  } finally {
    await gw.stop();
    await upstream.remove();
    await Deno.remove(dataDir, { recursive: true }).catch(() => {});
  }
});

Deno.test("bridge: a full queue with policy refuse disconnects the publisher without an ack", async () => {
  const port = freePort();
  const gw = await startGateway({
    mqtt: {
      listeners: { main: { port } },
      allowAnonymous: true,
      bridges: {
        down: {
          url: `mqtt://127.0.0.1:${freePort()}`,
          out: [{ topic: "up/#", qos: 1 }],
          queue: { maxMessages: 3, policy: "refuse" },
        },
      },
    },
  });
  try {
    const publisher = await mqtt.connectAsync(`mqtt://127.0.0.1:${port}`, { reconnectPeriod: 0 });
    for (let i = 0; i < 3; i++) await publisher.publishAsync("up/x", String(i), { qos: 1 });
    const closed = new Promise<void>((resolve) => publisher.once("close", () => resolve()));
    let acked = false;
    publisher.publish("up/x", "3", { qos: 1 }, (error) => acked = !error);
    await closed;
    assert(!acked, "the refused message was not acknowledged");
    assertEquals((await bridgeState(gw, "down")).queueDepth, 3);
    await gw.waitForLine(/publish on .*up\/x.* not accepted: .*queue full/);
    const metrics = await (await gw.admin("/metrics")).text();
    assert(/gateway_mqtt_publishes_refused_total 1\b/.test(metrics), metrics);
    publisher.end(true);
  } finally {
    await gw.stop();
  }
});
