import { join } from "node:path";
import { assert, assertEquals } from "../helpers/assert.ts";
import { MqttQueueConfig } from "../../src/mqtt/config.ts";
import { type DropReason, ForwardQueue, QueueFullError } from "../../src/mqtt/queue.ts";

const encode = (text: string) => new TextEncoder().encode(text);
const decode = (bytes: Uint8Array) => new TextDecoder().decode(bytes);
const message = (i: number, size = 0) => ({
  topic: `t/${i}`,
  payload: size ? new Uint8Array(size).fill(i % 251) : encode(String(i)),
  qos: 1 as const,
  retain: false,
});

async function withKv(run: (path: string) => Promise<void>): Promise<void> {
  const dir = await Deno.makeTempDir({ prefix: "mqtt-queue-test-" });
  try {
    await run(join(dir, "queue.sqlite3"));
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

Deno.test("queue: appends come back in order, acks remove them, concurrent appends keep their order", async () => {
  await withKv(async (path) => {
    const kv = await Deno.openKv(path);
    const queue = await ForwardQueue.open(kv, "b", MqttQueueConfig.parse({}));
    await Promise.all(Array.from({ length: 1200 }, (_, i) => queue.append(message(i))));
    assertEquals(queue.depth, 1200);
    const first = queue.pending(0, 5);
    assertEquals(first.map((m) => decode(m.payload)), ["0", "1", "2", "3", "4"]);
    const next = queue.pending(first[4].seq, 2);
    assertEquals(next.map((m) => m.topic), ["t/5", "t/6"]);
    await queue.ack(first[1].seq);
    await queue.ack(first[0].seq);
    assertEquals(queue.pending(0, 2).map((m) => m.topic), ["t/2", "t/3"]);
    assertEquals(queue.depth, 1198);
    kv.close();
  });
});

Deno.test("queue: survives closing and reopening the store, including payloads stored in parts", async () => {
  await withKv(async (path) => {
    let kv = await Deno.openKv(path);
    let queue = await ForwardQueue.open(kv, "b", MqttQueueConfig.parse({}));
    for (let i = 0; i < 10; i++) await queue.append(message(i, i === 3 ? 200_000 : 0));
    await queue.ack(queue.pending(0, 1)[0].seq);
    await queue.flush();
    kv.close();

    kv = await Deno.openKv(path);
    queue = await ForwardQueue.open(kv, "b", MqttQueueConfig.parse({}));
    const all = queue.pending(0, 100);
    assertEquals(all.map((m) => m.topic), [1, 2, 3, 4, 5, 6, 7, 8, 9].map((i) => `t/${i}`));
    assertEquals(all[2].payload.byteLength, 200_000);
    assert(all[2].payload.every((byte) => byte === 3));
    await queue.append(message(10));
    assertEquals(queue.pending(all[8].seq, 10).map((m) => m.topic), ["t/10"]);
    const other = await ForwardQueue.open(kv, "other", MqttQueueConfig.parse({}));
    assertEquals(other.depth, 0);
    kv.close();
  });
});

Deno.test("queue: drop-oldest makes room and reports the drop", async () => {
  await withKv(async (path) => {
    const kv = await Deno.openKv(path);
    const drops: [DropReason, number][] = [];
    const bounds = MqttQueueConfig.parse({ maxMessages: 3, policy: "drop-oldest" });
    const queue = await ForwardQueue.open(kv, "b", bounds, (reason, n) => drops.push([reason, n]));
    for (let i = 0; i < 5; i++) await queue.append(message(i));
    assertEquals(queue.pending(0, 10).map((m) => m.topic), ["t/2", "t/3", "t/4"]);
    assertEquals(drops, [["full", 1], ["full", 1]]);
    kv.close();
  });
});

Deno.test("queue: refuse rejects what does not fit, by count and by bytes", async () => {
  await withKv(async (path) => {
    const kv = await Deno.openKv(path);
    const bounds = MqttQueueConfig.parse({ maxMessages: 2, maxBytes: 100, policy: "refuse" });
    const queue = await ForwardQueue.open(kv, "b", bounds);
    await queue.append(message(0));
    await queue.append(message(1));
    const refused = await queue.append(message(2)).then(() => undefined, (error) => error);
    assert(refused instanceof QueueFullError, String(refused));
    await queue.ack(queue.pending(0, 1)[0].seq);
    const tooBig = await queue.append(message(3, 200)).then(() => undefined, (error) => error);
    assert(tooBig instanceof QueueFullError, String(tooBig));
    await queue.append(message(4));
    assertEquals(queue.pending(0, 10).map((m) => m.topic), ["t/1", "t/4"]);
    kv.close();
  });
});

Deno.test("queue: messages older than maxAge are dropped as expired", async () => {
  await withKv(async (path) => {
    const kv = await Deno.openKv(path);
    const drops: [DropReason, number][] = [];
    const bounds = MqttQueueConfig.parse({ maxAge: 50 });
    const queue = await ForwardQueue.open(kv, "b", bounds, (reason, n) => drops.push([reason, n]));
    await queue.append(message(0));
    await queue.append(message(1));
    await new Promise((resolve) => setTimeout(resolve, 80));
    await queue.append(message(2));
    assertEquals(queue.pending(0, 10).map((m) => m.topic), ["t/2"]);
    assertEquals(drops, [["expired", 2]]);
    kv.close();
  });
});
