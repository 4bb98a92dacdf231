/**
 * The per-event log rate limit, the message-rate token bucket, and the
 * connection manager's use of them: connections over their rate are closed
 * (UDP peers have their excess dropped), and a full UDP peer table evicts
 * the idlest unbound peer instead of refusing a new one.
 */

import { configure, getLogger, type LogRecord, reset } from "@logtape/logtape";
import { assert, assertEquals } from "../helpers/assert.ts";
import { Bus } from "../../src/bus/bus.ts";
import type { ConnectionHandle, ConnectionLimits } from "../../src/connections/connection.ts";
import { ConnectionManager } from "../../src/connections/manager.ts";
import { TokenBucket } from "../../src/connections/token_bucket.ts";
import { MetricsRegistry } from "../../src/observability/metrics.ts";
import { RateLimitedLog } from "../../src/observability/rate_limited_log.ts";

Deno.test("a token bucket lets a burst through, then its rate", () => {
  let now = 0;
  const bucket = new TokenBucket({ perSecond: 10, burst: 5 }, () => now);
  assertEquals(bucket.take(8), 5);
  assertEquals(bucket.take(1), 0);
  now += 250; // 2.5 tokens
  assertEquals(bucket.take(3), 2);
  now += 10_000;
  assertEquals(bucket.take(100), 5); // never more than the burst
});

Deno.test("rate-limited warnings: one line per key and interval, then a summary with the count", async () => {
  const records: LogRecord[] = [];
  await configure({
    reset: true,
    sinks: { memory: (record) => records.push(record) },
    loggers: [
      { category: ["test"], lowestLevel: "debug", sinks: ["memory"] },
      { category: ["logtape", "meta"], lowestLevel: "error", sinks: ["memory"] },
    ],
  });
  const log = new RateLimitedLog(50);
  const logger = getLogger(["test"]);
  try {
    for (let i = 0; i < 1000; i++) log.warn(logger, "a", "refused {peer}", { peer: i });
    log.warn(logger, "b", "other {peer}", { peer: "x" });
    assertEquals(records.length, 2);
    assertEquals(log.suppressed("a"), 999);
    await new Promise((resolve) => setTimeout(resolve, 120));
    const summary = records.find((record) => record.properties.suppressed === 999);
    assert(summary, `no summary line: ${JSON.stringify(records.map((r) => r.properties))}`);
    assertEquals(summary.properties.peer, 999); // the fields of the last event
    assertEquals(records.length, 3); // key "b" had nothing more to summarise
  } finally {
    log.clear();
    await reset();
  }
});

function managerWith(now: () => number) {
  const metrics = new MetricsRegistry();
  const manager = new ConnectionManager(new Bus(metrics), metrics, { now });
  return { manager, metrics };
}

/** A handle that records closes, and tells the manager (as listeners do). */
function recordingHandle(closes: { reason: string; violation?: boolean }[]) {
  const state: { connection?: { closed(): void } } = {};
  const handle: ConnectionHandle = {
    send() {},
    close(reason, violation) {
      closes.push({ reason, violation });
      state.connection?.closed();
    },
  };
  return { handle, state };
}

Deno.test("a connection over its message rate is closed as a violation; a UDP peer only drops", () => {
  let now = 0;
  const { manager, metrics } = managerWith(() => now);
  const limits: ConnectionLimits = {
    maxConnections: 10,
    maxPerIp: 10,
    idleTimeout: 0,
    messageRate: { perSecond: 10, burst: 3 },
  };
  const closes: { reason: string; violation?: boolean }[] = [];
  const tcp = recordingHandle(closes);
  const connection = manager.admit({
    listener: "plc",
    protocol: "tcp",
    remoteAddress: "10.0.0.1",
    limits,
    handle: tcp.handle,
  });
  if ("refused" in connection) throw new Error(connection.refused);
  tcp.state.connection = connection;
  assertEquals(connection.received(10, 2), 2);
  assertEquals(connection.received(10, 2), 1);
  assertEquals(closes, [{ reason: "message rate exceeded", violation: true }]);
  assertEquals(manager.openCount, 0);

  const udp = manager.admit({
    listener: "sensors",
    protocol: "udp",
    remoteAddress: "10.0.0.2",
    limits,
    handle: { send() {}, close: () => closes.push({ reason: "udp", violation: false }) },
  });
  if ("refused" in udp) throw new Error(udp.refused);
  assertEquals([1, 1, 1, 1, 1].map(() => udp.received(1)), [1, 1, 1, 0, 0]);
  now += 100;
  assertEquals(udp.received(1), 1);
  assertEquals(closes.length, 1); // the UDP peer stays
  const text = metrics.render();
  assert(
    text.includes(
      'gateway_connection_frames_dropped_total{listener="sensors",reason="rate_limit"} 2',
    ),
    text,
  );
  assert(text.includes('gateway_connections_rate_limited_total{listener="plc"} 1'), text);
  udp.closed();
  manager.stop();
});

Deno.test("a full UDP peer table evicts the idlest unbound peer, never-answered ones first", () => {
  let now = 0;
  const { manager } = managerWith(() => now);
  const limits = { maxConnections: 3, maxPerIp: 3, idleTimeout: 0 };
  const evicted: string[] = [];
  const admit = (port: number) => {
    const { handle, state } = recordingHandle([]);
    const admitted = manager.admit({
      listener: "sensors",
      protocol: "udp",
      remoteAddress: `10.0.0.${port}`,
      remotePort: port,
      limits,
      handle: {
        send: handle.send,
        close(reason) {
          evicted.push(`${port}: ${reason}`);
          state.connection?.closed();
        },
      },
    });
    if ("refused" in admitted) throw new Error(admitted.refused);
    state.connection = admitted;
    now++;
    return admitted;
  };
  const bound = admit(1);
  bound.bindDevice("pump-1");
  const answered = admit(2);
  answered.sent(3);
  admit(3); // idlest of the unanswered ones when 4 arrives
  admit(4);
  assertEquals(evicted.map((line) => line.split(":")[0]), ["3"]);
  admit(5); // evicts 4 (never answered), not 2 (answered, though idler)
  const six = admit(6); // evicts 5
  six.sent(1);
  admit(7); // every unbound peer was answered: the idlest of them, 2, goes; 1 is bound
  assertEquals(evicted.map((line) => line.split(":")[0]), ["3", "4", "5", "2"]);
  assertEquals(manager.list({ deviceId: "pump-1" }).length, 1);
  assertEquals(manager.openCount, 3);
  manager.stop();
});
