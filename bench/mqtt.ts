/**
 * The embedded MQTT broker against Mosquitto, in one run with the same
 * clients: messages per second for QoS 0 and QoS 1, one publisher to one
 * subscriber and one publisher to 100 subscribers (deliveries per second),
 * QoS 1 to one persistent subscriber (clean session 0: each message is
 * written to disk before the gateway's PUBACK), and resident memory with
 * 1,000 idle clients. Prints each figure and the
 * gateway/Mosquitto ratio (the goal is ≥ 0.8).
 *
 * Both brokers run as their own processes on loopback: the gateway with an
 * `mqtt` listener (anonymous, anonymous persistent sessions allowed, no ACL,
 * no bridge) started the way the tests start it, Mosquitto from the Debian
 * package with a config of its own. The clients are mqtt.js in this process:
 * the publisher keeps at most `WINDOW` QoS 1 messages unacknowledged; a run
 * lasts from the first publish until
 * every subscriber has every message. The idle clients are raw TCP sockets
 * that send CONNECT and read CONNACK; RSS is read from `/proc/<pid>/status`.
 *
 * ```sh
 * deno task bench mqtt
 * MQTT_BENCH_MESSAGES=100000 deno task bench mqtt
 * MQTT_BENCH_SCENARIOS=persistent deno task bench mqtt   # only scenarios whose name contains it
 * ```
 *
 * @module
 */

import { freePort, startGateway } from "../tests/helpers/gateway.ts";
import { Mosquitto } from "../tests/mqtt/mosquitto.ts";

const MESSAGES = Number(Deno.env.get("MQTT_BENCH_MESSAGES") ?? 50_000);
const FANOUT = 100;
/**
 * Most QoS 1 messages in one run: `mosquitto_pub -l` disconnects at the first
 * PUBACK carrying the message id of its last message, and ids wrap at 65,535.
 */
const QOS1_MAX = 60_000;
const IDLE_CLIENTS = 1000;
const WINDOW = 1000;
/** Milliseconds given to the subscribers to connect and subscribe. */
const SUBSCRIBE_WAIT = 1500;
const PAYLOAD = "x".repeat(64);

interface Broker {
  name: string;
  port: number;
  pid: number;
}

function rssMiB(pid: number): number {
  const status = Deno.readTextFileSync(`/proc/${pid}/status`);
  return Number(/VmRSS:\s+(\d+)/.exec(status)![1]) / 1024;
}

/**
 * Starts `mosquitto_sub` for `count` messages; it exits once it has them. With
 * `clientId` it connects with clean session 0 under that id.
 */
function subscribe(
  port: number,
  topic: string,
  qos: 0 | 1,
  count: number,
  clientId?: string,
): Deno.ChildProcess {
  const session = clientId ? ["-c", "-i", clientId] : [];
  return new Deno.Command("mosquitto_sub", {
    args: ["-p", String(port), "-t", topic, "-q", String(qos), "-C", String(count), ...session],
    stdin: "null",
    stdout: "null",
    stderr: "inherit",
  }).spawn();
}

/**
 * Messages (deliveries) per second from one publisher to `subscribers`
 * subscribers, with persistent sessions when `persistent`.
 */
async function throughput(
  port: number,
  qos: 0 | 1,
  subscribers: number,
  messages: number,
  persistent = false,
): Promise<number> {
  const topic = `bench/${crypto.randomUUID()}`;
  const subs = Array.from(
    { length: subscribers },
    (_, i) =>
      subscribe(port, topic, qos, messages, persistent ? `${topic.slice(6)}-${i}` : undefined),
  );
  // The subscribers print nothing to wait for (their output would cost more than the broker's
  // work); on loopback they have subscribed well within this.
  await new Promise((resolve) => setTimeout(resolve, SUBSCRIBE_WAIT));
  const lines = new TextEncoder().encode(`${PAYLOAD}\n`.repeat(messages));
  const started = performance.now();
  const publisher = new Deno.Command("mosquitto_pub", {
    args: ["-p", String(port), "-t", topic, "-q", String(qos), "-M", String(WINDOW), "-l"],
    stdin: "piped",
    stdout: "null",
    stderr: "inherit",
  }).spawn();
  const writer = publisher.stdin.getWriter();
  await writer.write(lines);
  await writer.close();
  const statuses = await Promise.all(subs.map((sub) => sub.status));
  const seconds = (performance.now() - started) / 1000;
  await publisher.status;
  if (statuses.some((status) => !status.success)) throw new Error("a subscriber failed");
  return (messages * subscribers) / seconds;
}

/** RSS growth (MiB) of the broker process with `count` idle clients connected. */
async function idleRss(broker: Broker, count: number): Promise<{ before: number; after: number }> {
  const before = rssMiB(broker.pid);
  const conns: Deno.Conn[] = [];
  const connectPacket = (id: string) => {
    const clientId = new TextEncoder().encode(id);
    const body = [0, 4, 77, 81, 84, 84, 4, 2, 0, 60, 0, clientId.length, ...clientId];
    return new Uint8Array([16, body.length, ...body]);
  };
  for (let i = 0; i < count; i++) {
    const conn = await Deno.connect({ hostname: "127.0.0.1", port: broker.port });
    await conn.write(connectPacket(`idle-${i}`));
    const connack = new Uint8Array(4);
    await conn.read(connack);
    conns.push(conn);
  }
  await new Promise((resolve) => setTimeout(resolve, 2000));
  const after = rssMiB(broker.pid);
  for (const conn of conns) conn.close();
  await new Promise((resolve) => setTimeout(resolve, 1000));
  return { before, after };
}

const mosquitto = await Mosquitto.start(freePort());
const gatewayPort = freePort();
const gateway = await startGateway({
  log: { level: "warning", access: false },
  // A fixed admin port: with port 0 its address is read from an info-level log line.
  admin: { port: freePort() },
  mqtt: {
    listeners: { main: { port: gatewayPort } },
    allowAnonymous: true,
    sessions: { anonymous: true },
  },
});
const brokers: Broker[] = [
  { name: "mosquitto", port: mosquitto.port, pid: mosquitto.pid! },
  { name: "gateway", port: gatewayPort, pid: gateway.child.pid },
];

try {
  const only = Deno.env.get("MQTT_BENCH_SCENARIOS") ?? "";
  const all: {
    name: string;
    qos: 0 | 1;
    subscribers: number;
    messages: number;
    persistent?: boolean;
  }[] = [
    { name: "QoS 0, 1→1", qos: 0, subscribers: 1, messages: MESSAGES },
    { name: "QoS 1, 1→1", qos: 1, subscribers: 1, messages: Math.min(MESSAGES, QOS1_MAX) },
    {
      name: "QoS 1, 1→1 persistent",
      qos: 1,
      subscribers: 1,
      messages: Math.min(MESSAGES, QOS1_MAX),
      persistent: true,
    },
    { name: `QoS 0, 1→${FANOUT}`, qos: 0, subscribers: FANOUT, messages: MESSAGES / 50 },
    { name: `QoS 1, 1→${FANOUT}`, qos: 1, subscribers: FANOUT, messages: MESSAGES / 50 },
  ];
  const scenarios = all.filter((scenario) => scenario.name.includes(only));
  console.log(
    `MQTT throughput, ${PAYLOAD.length}-byte payloads (msgs/s; deliveries/s for fan-out)`,
  );
  for (const scenario of scenarios) {
    const rates: Record<string, number> = {};
    for (const broker of brokers) {
      const { qos, subscribers, persistent } = scenario;
      // A short warm-up run, then the measured one.
      await throughput(broker.port, qos, subscribers, 1000, persistent);
      rates[broker.name] = await throughput(
        broker.port,
        qos,
        subscribers,
        scenario.messages,
        persistent,
      );
    }
    console.log(
      `${scenario.name.padEnd(22)} mosquitto ${Math.round(rates.mosquitto).toLocaleString("en")}` +
        `  gateway ${Math.round(rates.gateway).toLocaleString("en")}` +
        `  ratio ${(rates.gateway / rates.mosquitto).toFixed(2)}`,
    );
  }
  if (!only) console.log(`\nRSS with ${IDLE_CLIENTS} idle clients (MiB)`);
  for (const broker of only ? [] : brokers) {
    const { before, after } = await idleRss(broker, IDLE_CLIENTS);
    console.log(
      `${broker.name.padEnd(10)} before ${before.toFixed(1)}  after ${after.toFixed(1)}  ` +
        `per client ${((after - before) * 1024 / IDLE_CLIENTS).toFixed(1)} KiB`,
    );
  }
} finally {
  await gateway.stop();
  await mosquitto.remove();
}
