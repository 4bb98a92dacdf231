import { assert, assertEquals, assertStringIncludes } from "../helpers/assert.ts";
import { Bus, BusError } from "../../src/bus/bus.ts";
import type { BusMessage, MessageSource } from "../../src/bus/message.ts";
import { MetricsRegistry } from "../../src/observability/metrics.ts";

const SOURCE: MessageSource = { listener: "test", protocol: "gateway" };
const encoder = new TextEncoder();
const decoder = new TextDecoder();

function message(topic: string, text = ""): BusMessage {
  return { topic, payload: encoder.encode(text), source: SOURCE, meta: {} };
}

/** The payloads of `messages` as text. */
function texts(messages: BusMessage[]): string[] {
  return messages.map((received) => decoder.decode(received.payload));
}

/** Resolves once `done()` holds, checking after each macrotask; fails after 1000 checks. */
async function eventually(done: () => boolean): Promise<void> {
  for (let i = 0; i < 1000; i++) {
    if (done()) return;
    await new Promise((resolve) => setTimeout(resolve, 0));
  }
  throw new Error("condition not reached");
}

/** Runs `action` and returns the BusError it throws or rejects with. */
async function busError(action: () => unknown): Promise<BusError> {
  try {
    await action();
  } catch (error) {
    assert(error instanceof BusError, `not a BusError: ${error}`);
    return error;
  }
  throw new Error("no BusError");
}

Deno.test("a message reaches every matching subscription and no other", async () => {
  const bus = new Bus();
  const received: Record<string, string[]> = {};
  for (const filter of ["sensors/1/temp", "sensors/+/temp", "sensors/#", "#", "sensors/2/+"]) {
    received[filter] = [];
    bus.subscribe(filter, (got) => void received[filter].push(got.topic), { owner: "t" });
  }
  assertEquals(bus.publish(message("sensors/1/temp")), 4);
  await eventually(() => received["#"].length === 1);
  assertEquals(received, {
    "sensors/1/temp": ["sensors/1/temp"],
    "sensors/+/temp": ["sensors/1/temp"],
    "sensors/#": ["sensors/1/temp"],
    "#": ["sensors/1/temp"],
    "sensors/2/+": [],
  });
  assertEquals(bus.publish(message("other")), 1);
});

Deno.test("messages arrive in publish order, including those handlers publish", async () => {
  const bus = new Bus();
  const slow: string[] = [];
  const fast: string[] = [];
  bus.subscribe("a", async (got) => {
    await Promise.resolve();
    slow.push(decoder.decode(got.payload));
  }, { owner: "slow" });
  bus.subscribe("a", (got) => {
    const text = decoder.decode(got.payload);
    fast.push(text);
    if (text === "m0") bus.publish(message("a", "m0-echo"));
  }, { owner: "fast" });
  for (let i = 0; i < 50; i++) bus.publish(message("a", `m${i}`));
  await eventually(() => slow.length === 51);
  assertEquals(slow, fast);
  assertEquals(fast, [
    ...Array.from({ length: 50 }, (_, i) => `m${i}`),
    "m0-echo",
  ]);
});

Deno.test("a subscriber that never finishes does not hold back another", async () => {
  const bus = new Bus();
  const release = Promise.withResolvers<void>();
  const stuck: string[] = [];
  const flowing: string[] = [];
  bus.subscribe("t", async (got) => {
    stuck.push(decoder.decode(got.payload));
    await release.promise;
  }, { owner: "stuck" });
  bus.subscribe("t", (got) => void flowing.push(decoder.decode(got.payload)), { owner: "flow" });
  for (let i = 0; i < 100; i++) assertEquals(bus.publish(message("t", String(i))), 2);
  await eventually(() => flowing.length === 100);
  assertEquals(stuck, ["0"]);
  release.resolve();
  await eventually(() => stuck.length === 100);
  assertEquals(stuck, flowing);
});

Deno.test("a full drop-oldest queue discards its oldest message and counts it", async () => {
  const metrics = new MetricsRegistry();
  const bus = new Bus(metrics);
  const release = Promise.withResolvers<void>();
  const received: BusMessage[] = [];
  bus.subscribe("t", async (got) => {
    received.push(got);
    await release.promise;
  }, { owner: "p", queueSize: 3 });
  bus.publish(message("t", "0"));
  await eventually(() => received.length === 1); // "0" is being handled, not queued
  for (let i = 1; i <= 6; i++) assertEquals(bus.publish(message("t", String(i))), 1);
  release.resolve();
  await eventually(() => received.length === 4);
  assertEquals(texts(received), ["0", "4", "5", "6"]);
  assertEquals(
    metrics.counter("gateway_bus_dropped_total", "", ["owner"]).labels({ owner: "p" }).value,
    3,
  );
});

Deno.test("a full drop-newest queue discards the arriving message and counts it", async () => {
  const metrics = new MetricsRegistry();
  const bus = new Bus(metrics);
  const received: BusMessage[] = [];
  bus.subscribe("t", (got) => void received.push(got), {
    owner: "p",
    queueSize: 3,
    overflow: "drop-newest",
  });
  const queued = [0, 1, 2, 3, 4].map((i) => bus.publish(message("t", String(i))));
  assertEquals(queued, [1, 1, 1, 0, 0]);
  await eventually(() => received.length === 3);
  assertEquals(texts(received), ["0", "1", "2"]);
  assertEquals(
    metrics.counter("gateway_bus_dropped_total", "", ["owner"]).labels({ owner: "p" }).value,
    2,
  );
  bus.publish(message("t", "after"));
  await eventually(() => received.length === 4);
  assertEquals(texts(received)[3], "after");
});

Deno.test("published, delivered and subscriptions are counted", async () => {
  const metrics = new MetricsRegistry();
  const bus = new Bus(metrics);
  let handled = 0;
  const first = bus.subscribe("a/+", () => void handled++, { owner: "p" });
  bus.subscribe("a/#", () => void handled++, { owner: "p" });
  bus.publish(message("a/b"));
  bus.publish(message("nobody"));
  await eventually(() => handled === 2);
  const text = metrics.render();
  assertStringIncludes(text, "gateway_bus_published_total 2\n");
  assertStringIncludes(text, "gateway_bus_delivered_total 2\n");
  assertStringIncludes(text, "gateway_bus_subscriptions 2\n");
  first.unsubscribe();
  assertStringIncludes(metrics.render(), "gateway_bus_subscriptions 1\n");
});

Deno.test("a handler that throws or rejects still gets the next message", async () => {
  const bus = new Bus();
  const failing: string[] = [];
  const healthy: string[] = [];
  bus.subscribe("t", async (got) => {
    const text = decoder.decode(got.payload);
    failing.push(text);
    if (text === "throw") throw new Error("sync failure");
    await Promise.resolve();
    if (text === "reject") throw new Error("async failure");
  }, { owner: "failing" });
  bus.subscribe("t", (got) => void healthy.push(decoder.decode(got.payload)), { owner: "ok" });
  for (const text of ["throw", "reject", "fine"]) bus.publish(message("t", text));
  await eventually(() => failing.length === 3 && healthy.length === 3);
  assertEquals(failing, ["throw", "reject", "fine"]);
  assertEquals(healthy, ["throw", "reject", "fine"]);
});

Deno.test("a handler throwing synchronously (not async) is isolated too", async () => {
  const bus = new Bus();
  const seen: string[] = [];
  bus.subscribe("t", (got) => {
    seen.push(decoder.decode(got.payload));
    throw new Error("boom");
  }, { owner: "p" });
  bus.publish(message("t", "1"));
  bus.publish(message("t", "2"));
  await eventually(() => seen.length === 2);
  assertEquals(seen, ["1", "2"]);
});

Deno.test("unsubscribe stops delivery and discards what was queued", async () => {
  const bus = new Bus();
  const kept: string[] = [];
  const dropped: string[] = [];
  bus.subscribe("t", (got) => void kept.push(decoder.decode(got.payload)), { owner: "k" });
  const subscription = bus.subscribe(
    "t",
    (got) => void dropped.push(decoder.decode(got.payload)),
    { owner: "d" },
  );
  assertEquals(subscription.filter, "t");
  assertEquals(subscription.owner, "d");
  assertEquals(bus.subscriptionCount, 2);
  bus.publish(message("t", "queued"));
  subscription.unsubscribe();
  subscription.unsubscribe();
  assertEquals(bus.subscriptionCount, 1);
  assertEquals(bus.publish(message("t", "later")), 1);
  await eventually(() => kept.length === 2);
  assertEquals(dropped, []);
});

Deno.test("unsubscribeOwner removes every subscription of that owner only", async () => {
  const bus = new Bus();
  const received: string[] = [];
  for (const filter of ["a", "a/+", "#"]) {
    bus.subscribe(filter, () => void received.push(`plugin:${filter}`), { owner: "plugin" });
  }
  bus.subscribe("a", () => void received.push("other:a"), { owner: "other" });
  assertEquals(bus.subscriptionCount, 4);
  assertEquals(bus.unsubscribeOwner("plugin"), 3);
  assertEquals(bus.unsubscribeOwner("plugin"), 0);
  assertEquals(bus.unsubscribeOwner("nobody"), 0);
  assertEquals(bus.subscriptionCount, 1);
  assertEquals(bus.publish(message("a")), 1);
  await eventually(() => received.length === 1);
  assertEquals(received, ["other:a"]);
});

Deno.test("invalid topics and filters are refused with their codes", async () => {
  const bus = new Bus();
  const published = await busError(() => bus.publish(message("a/+")));
  assertEquals(published.code, "invalid_topic");
  assertStringIncludes(published.message, "wildcard");
  const subscribed = await busError(() => bus.subscribe("a/#/b", () => {}, { owner: "p" }));
  assertEquals(subscribed.code, "invalid_filter");
  assertStringIncludes(subscribed.message, '"#" must be the whole last level');
  const requested = await busError(() =>
    bus.request("", new Uint8Array(), { source: SOURCE, timeout: 1000 })
  );
  assertEquals(requested.code, "invalid_topic");
  assertEquals(bus.subscriptionCount, 0);
});

Deno.test("a queue size that is not a positive integer is refused", () => {
  const bus = new Bus();
  for (const queueSize of [0, -1, 1.5]) {
    try {
      bus.subscribe("a", () => {}, { owner: "p", queueSize });
      throw new Error(`queueSize ${queueSize} accepted`);
    } catch (error) {
      assert(error instanceof RangeError, String(error));
    }
  }
  assertEquals(bus.subscriptionCount, 0);
});

Deno.test("request resolves with the reply of the function it calls", async () => {
  const bus = new Bus();
  bus.subscribe("fn/demo/upper", (got) => {
    assertEquals(got.meta, { "content-type": "text/plain" });
    assertEquals(got.source, SOURCE);
    const text = decoder.decode(got.payload).toUpperCase();
    got.reply!(encoder.encode(text), { status: "ok" });
  }, { owner: "demo" });
  const reply = await bus.request("fn/demo/upper", encoder.encode("hello"), {
    source: SOURCE,
    meta: { "content-type": "text/plain" },
    timeout: 5000,
  });
  assertEquals(decoder.decode(reply.payload), "HELLO");
  assertEquals(reply.meta, { status: "ok" });
});

Deno.test("request takes the first reply and ignores later ones", async () => {
  const bus = new Bus();
  bus.subscribe("fn/demo/twice", (got) => {
    got.reply!(encoder.encode("first"));
    got.reply!(encoder.encode("second"));
  }, { owner: "demo" });
  bus.subscribe("fn/demo/#", async (got) => {
    await Promise.resolve();
    got.reply!(encoder.encode("third"));
  }, { owner: "other" });
  const reply = await bus.request("fn/demo/twice", new Uint8Array(), {
    source: SOURCE,
    timeout: 5000,
  });
  assertEquals(decoder.decode(reply.payload), "first");
  assertEquals(reply.meta, {});
});

Deno.test("request rejects with no_responder when nothing subscribes", async () => {
  const bus = new Bus();
  bus.subscribe("fn/other/+", () => {}, { owner: "other" });
  const error = await busError(() =>
    bus.request("fn/nobody/echo", new Uint8Array(), { source: SOURCE, timeout: 60_000 })
  );
  assertEquals(error.code, "no_responder");
});

Deno.test("request rejects with timeout when no reply comes; a late reply is ignored", async () => {
  const bus = new Bus();
  let late: BusMessage | undefined;
  bus.subscribe("fn/slow/work", (got) => void (late = got), { owner: "slow" });
  const error = await busError(() =>
    bus.request("fn/slow/work", new Uint8Array(), { source: SOURCE, timeout: 10 })
  );
  assertEquals(error.code, "timeout");
  late!.reply!(encoder.encode("too late"));
});
