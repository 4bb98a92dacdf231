/**
 * MQTT delivery regressions (issue 12, items 16 and 17), through the real
 * gateway process with mqtt.js subscribers and a raw-socket publisher:
 * a QoS 2 message followed in the same TCP write by a QoS 1 message reaches
 * every subscriber while a persistent session matches the topic, and every
 * QoS 1 message the broker acknowledged survives `kill -9` for an offline
 * persistent subscriber.
 */

import { Buffer } from "node:buffer";
import mqtt from "mqtt";
import { assertEquals } from "../helpers/assert.ts";
import { freePort, startGateway } from "../helpers/gateway.ts";
import { until } from "../helpers/wait.ts";

const encoder = new TextEncoder();
/** MQTT packet types (the high nibble of the first byte). */
const CONNACK = 2;
const PUBACK = 4;
const PUBREC = 5;
const PUBCOMP = 7;

/** An MQTT string: two length bytes and UTF-8. */
function mqttString(text: string): number[] {
  const bytes = encoder.encode(text);
  return [bytes.length >> 8, bytes.length & 0xff, ...bytes];
}

/** A packet of type byte `first` with `body`, its remaining length as a varint (§2.2.3). */
function packet(first: number, body: number[]): Uint8Array {
  const length: number[] = [];
  let rest = body.length;
  do {
    length.push((rest % 128) | (rest >= 128 ? 0x80 : 0));
    rest = Math.floor(rest / 128);
  } while (rest > 0);
  return new Uint8Array([first, ...length, ...body]);
}

function connectPacket(clientId: string): Uint8Array {
  return packet(0x10, [...mqttString("MQTT"), 4, 0x02, 0, 60, ...mqttString(clientId)]);
}

function publishPacket(topic: string, qos: 1 | 2, id: number, payload: string): Uint8Array {
  return packet(0x30 | (qos << 1), [
    ...mqttString(topic),
    id >> 8,
    id & 0xff,
    ...encoder.encode(payload),
  ]);
}

/**
 * A raw MQTT 3.1.1 client that connects with clean session 1, answers each
 * PUBREC with its PUBREL, and records the packet ids of the PUBACKs and
 * PUBCOMPs it gets; `onPuback` runs as soon as a PUBACK has been read.
 */
class RawPublisher {
  readonly acked = new Set<number>();
  readonly completed = new Set<number>();
  onPuback?: (id: number) => void;
  readonly #conn: Deno.Conn;
  readonly #connected = Promise.withResolvers<void>();
  readonly #reading: Promise<void>;

  private constructor(conn: Deno.Conn) {
    this.#conn = conn;
    this.#reading = this.#read();
  }

  static async connect(port: number, clientId: string): Promise<RawPublisher> {
    const conn = await Deno.connect({ hostname: "127.0.0.1", port });
    const publisher = new RawPublisher(conn);
    await publisher.write(connectPacket(clientId));
    await publisher.#connected.promise;
    return publisher;
  }

  async write(bytes: Uint8Array): Promise<void> {
    for (let written = 0; written < bytes.length;) {
      written += await this.#conn.write(bytes.subarray(written));
    }
  }

  async close(): Promise<void> {
    try {
      this.#conn.close();
    } catch { /* closed by the peer */ }
    await this.#reading;
  }

  async #read(): Promise<void> {
    let pending = new Uint8Array();
    const buffer = new Uint8Array(64 * 1024);
    for (;;) {
      const n = await this.#conn.read(buffer).catch(() => null);
      if (n === null) break;
      pending = Buffer.concat([pending, buffer.subarray(0, n)]);
      // Each packet here has a one-byte remaining length.
      while (pending.length >= 2 && pending.length >= 2 + pending[1]) {
        const type = pending[0] >> 4;
        const id = (pending[2] << 8) | pending[3];
        pending = pending.subarray(2 + pending[1]);
        if (type === CONNACK) this.#connected.resolve();
        if (type === PUBACK) {
          this.acked.add(id);
          this.onPuback?.(id);
        }
        if (type === PUBREC) this.write(packet(0x62, [id >> 8, id & 0xff])).catch(() => {});
        if (type === PUBCOMP) this.completed.add(id);
      }
    }
    this.#connected.reject(new Error("closed before CONNACK"));
  }
}

/** An mqtt.js subscriber to `filter` that records the payloads it receives. */
async function subscriber(
  port: number,
  options: mqtt.IClientOptions,
  filter: string,
  qos: 1 | 2,
): Promise<{ client: mqtt.MqttClient; received: string[] }> {
  const client = mqtt.connect(`mqtt://127.0.0.1:${port}`, { reconnectPeriod: 0, ...options });
  // Listening before the CONNACK: queued messages may come in the same read.
  const received: string[] = [];
  client.on("message", (_topic, payload) => received.push(payload.toString()));
  await new Promise((resolve, reject) => {
    client.once("connect", resolve);
    client.once("error", reject);
  });
  await client.subscribeAsync(filter, { qos });
  return { client, received };
}

Deno.test("mqtt delivery: a QoS 2 message followed by a QoS 1 one in the same write reaches every subscriber", async () => {
  const port = freePort();
  await using _gw = await startGateway({
    mqtt: { listeners: { main: { port } }, allowAnonymous: true, sessions: { anonymous: true } },
  });
  const persistent = await subscriber(
    port,
    { clientId: "persistent-16", clean: false },
    "order/#",
    2,
  );
  const clean = await subscriber(port, { clientId: "clean-16", clean: true }, "order/#", 2);
  const publisher = await RawPublisher.connect(port, "publisher-16");
  const rounds = 20;
  try {
    for (let round = 0; round < rounds; round++) {
      const two = 2 * round + 1;
      const one = 2 * round + 2;
      await publisher.write(Buffer.concat([
        publishPacket("order/two", 2, two, `two-${round}`),
        publishPacket("order/one", 1, one, `one-${round}`),
      ]));
      await until(
        `PUBCOMP ${two} and PUBACK ${one}`,
        () => publisher.completed.has(two) && publisher.acked.has(one),
      );
    }
    const expected = Array.from({ length: rounds }, (_, round) => `two-${round}`);
    for (const { received } of [persistent, clean]) {
      const of = (prefix: string) => received.filter((p) => p.startsWith(prefix));
      // Lost messages never come: wait for all of them, and assert on what came.
      await until(
        `${2 * rounds} messages`,
        () => of("one-").length + of("two-").length === 2 * rounds,
      )
        .catch(() => {});
      assertEquals(of("two-"), expected);
      assertEquals(of("one-").length, rounds);
    }
  } finally {
    await publisher.close();
    await persistent.client.endAsync();
    await clean.client.endAsync();
  }
});

Deno.test("mqtt delivery: every acknowledged QoS 1 message survives kill -9 for an offline persistent subscriber", async () => {
  const dataDir = await Deno.makeTempDir({ prefix: "mqtt-delivery-data-" });
  const port = freePort();
  const config = {
    storage: { dataDir },
    mqtt: { listeners: { main: { port } }, allowAnonymous: true, sessions: { anonymous: true } },
  };
  const total = 800;
  const killAfter = 400;
  // Sent in one go, large enough that writes queue up behind commits (and under maxQueuedBytes).
  const filler = "x".repeat(2000);
  let gw = await startGateway(config);
  try {
    const away = await subscriber(port, { clientId: "durable-17", clean: false }, "crash/#", 1);
    await away.client.endAsync();

    const publisher = await RawPublisher.connect(port, "publisher-17");
    const killed = Promise.withResolvers<void>();
    publisher.onPuback = () => {
      if (publisher.acked.size !== killAfter) return;
      gw.child.kill("SIGKILL");
      killed.resolve();
    };
    const messages = Array.from(
      { length: total },
      (_, i) => publishPacket("crash/m", 1, i + 1, `m-${i + 1} ${filler}`),
    );
    publisher.write(Buffer.concat(messages)).catch(() => {});
    await killed.promise;
    assertEquals((await gw.exited()).signal, "SIGKILL");
    await publisher.close();
    assertEquals(publisher.acked.size >= killAfter, true);
    const acknowledged = [...publisher.acked].sort((a, b) => a - b).map((id) => `m-${id}`);
    await gw.stop();
    gw = await startGateway(config);

    const back = await subscriber(port, { clientId: "durable-17", clean: false }, "crash/#", 1);
    try {
      const missing = () => {
        const received = new Set(back.received.map((payload) => payload.split(" ")[0]));
        return acknowledged.filter((id) => !received.has(id));
      };
      await until("the acknowledged messages", () => missing().length === 0).catch(() => {});
      assertEquals(missing(), []);
    } finally {
      await back.client.endAsync();
    }
  } finally {
    await gw.stop();
    await Deno.remove(dataDir, { recursive: true }).catch(() => {});
  }
});
