import { assert, assertEquals, assertMatch } from "../helpers/assert.ts";
import { Bus } from "../../src/bus/bus.ts";
import type { Connection, ConnectionLimits } from "../../src/connections/connection.ts";
import { connectionBudget } from "../../src/connections/fd_budget.ts";
import { ConnectionManager, IDLE_SWEEP_INTERVAL } from "../../src/connections/manager.ts";
import { MetricsRegistry } from "../../src/observability/metrics.ts";

const LIMITS: ConnectionLimits = { maxConnections: 100, maxPerIp: 100, idleTimeout: 0 };
const source = { listener: "test", protocol: "gateway" } as const;

/** A listener-side handle that records what the manager asked of it and reports closes back. */
class RecordingHandle {
  readonly sent: string[] = [];
  readonly closeReasons: string[] = [];
  connection?: Connection;
  send(payload: Uint8Array): void {
    this.sent.push(new TextDecoder().decode(payload));
  }
  close(reason: string): void {
    this.closeReasons.push(reason);
    this.connection?.closed();
  }
}

function setup(options: { maxOpenFiles?: number; now?: () => number } = {}) {
  const metrics = new MetricsRegistry();
  const bus = new Bus(metrics);
  const manager = new ConnectionManager(bus, metrics, { maxOpenFiles: 100_000, ...options });
  /** Admits a connection whose handle closes it; throws when refused. */
  const open = (
    overrides: { listener?: string; remoteAddress?: string; limits?: ConnectionLimits },
  ) => {
    const handle = new RecordingHandle();
    const admitted = manager.admit({
      listener: overrides.listener ?? "tcp-in",
      protocol: "tcp",
      remoteAddress: overrides.remoteAddress ?? "127.0.0.1",
      remotePort: 40000,
      limits: overrides.limits ?? LIMITS,
      handle,
    });
    if ("refused" in admitted) throw new Error(admitted.refused);
    handle.connection = admitted;
    return { connection: admitted, handle };
  };
  const tryAdmit = (listener: string, remoteAddress: string, limits: ConnectionLimits) =>
    manager.admit({
      listener,
      protocol: "tcp",
      remoteAddress,
      limits,
      handle: new RecordingHandle(),
    });
  return { metrics, bus, manager, open, tryAdmit };
}

/** Lets the bus deliver what was published (delivery runs on a microtask). */
const delivered = () => new Promise((resolve) => setTimeout(resolve, 0));

Deno.test("ids are short, unique and URL-safe; source names listener, protocol and id", () => {
  const { manager, open } = setup();
  const ids = new Set<string>();
  for (let i = 0; i < 50; i++) {
    const { connection } = open({});
    assertMatch(connection.id, /^c[0-9a-z]{1,12}$/);
    assertEquals(connection.source, {
      listener: "tcp-in",
      protocol: "tcp",
      connectionId: connection.id,
    });
    ids.add(connection.id);
  }
  assertEquals(ids.size, 50);
  assertEquals(manager.openCount, 50);
  manager.stop();
});

Deno.test("maxConnections refuses with a reason naming the limit and listener, per listener", () => {
  const { manager, metrics, open, tryAdmit } = setup();
  const limits = { ...LIMITS, maxConnections: 2 };
  const first = open({ limits });
  open({ limits, remoteAddress: "10.0.0.2" });
  const refused = tryAdmit("tcp-in", "10.0.0.3", limits);
  assert("refused" in refused);
  assertMatch(refused.refused, /listener "tcp-in".*maxConnections/);
  assert(!("refused" in tryAdmit("other", "10.0.0.3", limits)), "other listeners are not counted");
  first.connection.closed();
  assert(!("refused" in tryAdmit("tcp-in", "10.0.0.3", limits)), "a close frees a place");
  assertMatch(
    metrics.render(),
    /gateway_connections_refused_total\{listener="tcp-in",reason="listener_limit"\} 1/,
  );
  manager.stop();
});

Deno.test("maxPerIp counts per listener and address, and is released on close", () => {
  const { manager, metrics, open, tryAdmit } = setup();
  const limits = { ...LIMITS, maxPerIp: 2 };
  const a = open({ limits, remoteAddress: "10.0.0.1" });
  open({ limits, remoteAddress: "10.0.0.1" });
  const refused = tryAdmit("tcp-in", "10.0.0.1", limits);
  assert("refused" in refused);
  assertMatch(refused.refused, /listener "tcp-in".*10\.0\.0\.1.*maxPerIp/);
  assert(
    !("refused" in tryAdmit("tcp-in", "10.0.0.2", limits)),
    "another address is counted apart",
  );
  assert(
    !("refused" in tryAdmit("ws-in", "10.0.0.1", limits)),
    "another listener is counted apart",
  );
  a.connection.closed();
  a.connection.closed(); // a second call changes nothing
  assert(!("refused" in tryAdmit("tcp-in", "10.0.0.1", limits)), "the close released a place");
  assert("refused" in tryAdmit("tcp-in", "10.0.0.1", limits), "and only one");
  assertMatch(
    metrics.render(),
    /gateway_connections_refused_total\{listener="tcp-in",reason="ip_limit"\} 2/,
  );
  manager.stop();
});

Deno.test("the descriptor budget refuses sockets above it, but not UDP peers", () => {
  const maxOpenFiles = 300;
  const budget = connectionBudget(maxOpenFiles);
  const { manager, metrics, open, tryAdmit } = setup({ maxOpenFiles });
  const limits = { ...LIMITS, maxConnections: 1000, maxPerIp: 1000 };
  const first = open({ limits });
  for (let i = 1; i < budget; i++) open({ limits });
  const refused = tryAdmit("tcp-in", "127.0.0.1", limits);
  assert("refused" in refused);
  assertMatch(refused.refused, /listener "tcp-in".*236 connections.*descriptor budget.*limit 300/);
  const udpPeer = manager.admit({
    listener: "udp-in",
    protocol: "udp",
    remoteAddress: "127.0.0.1",
    limits,
    handle: new RecordingHandle(),
  });
  assert(!("refused" in udpPeer), "UDP peers share their listener's socket");
  first.connection.closed();
  assert(!("refused" in tryAdmit("tcp-in", "127.0.0.1", limits)), "a close frees a descriptor");
  assertMatch(
    metrics.render(),
    /gateway_connections_refused_total\{listener="tcp-in",reason="fd_budget"\} 1/,
  );
  manager.stop();
});

Deno.test("traffic is counted per connection and in per-listener metrics", () => {
  let now = 1000;
  const { manager, metrics, open } = setup({ now: () => now });
  const { connection } = open({});
  now = 2000;
  connection.received(10);
  connection.received(30, 3);
  now = 3000;
  connection.sent(5);
  const info = manager.get(connection.id);
  assert(info);
  assertEquals(
    [info.openedAt, info.lastSeenAt, info.bytesIn, info.framesIn, info.bytesOut, info.framesOut],
    [1000, 3000, 40, 4, 5, 1],
  );
  assertEquals([info.remoteAddress, info.remotePort, info.protocol], ["127.0.0.1", 40000, "tcp"]);
  const text = metrics.render();
  assertMatch(text, /gateway_connections_open\{listener="tcp-in"\} 1/);
  assertMatch(text, /gateway_connections_accepted_total\{listener="tcp-in"\} 1/);
  assertMatch(text, /gateway_connection_bytes_total\{listener="tcp-in",direction="in"\} 40/);
  assertMatch(text, /gateway_connection_bytes_total\{listener="tcp-in",direction="out"\} 5/);
  assertMatch(text, /gateway_connection_frames_total\{listener="tcp-in",direction="in"\} 4/);
  connection.closed();
  assertMatch(metrics.render(), /gateway_connections_open\{listener="tcp-in"\} 0/);
  assertEquals(manager.get(connection.id), undefined);
});

Deno.test("the idle sweep closes connections idle longer than their listener's timeout", async () => {
  let now = 0;
  const { manager, open } = setup({ now: () => now });
  const idle = open({ listener: "short", limits: { ...LIMITS, idleTimeout: 5000 } });
  const busy = open({ listener: "short", limits: { ...LIMITS, idleTimeout: 5000 } });
  const patient = open({ listener: "long", limits: { ...LIMITS, idleTimeout: 60_000 } });
  const never = open({ listener: "none", limits: { ...LIMITS, idleTimeout: 0 } });
  now = 4000;
  busy.connection.sent(1);
  now = 6000;
  await new Promise((resolve) => setTimeout(resolve, IDLE_SWEEP_INTERVAL + 100));
  assertEquals(idle.handle.closeReasons, ["idle timeout"]);
  assertEquals([busy.handle, patient.handle, never.handle].map((h) => h.closeReasons.length), [
    0,
    0,
    0,
  ]);
  assertEquals(
    manager.list().map((info) => info.id).sort(),
    [
      busy.connection.id,
      patient.connection.id,
      never.connection.id,
    ].sort(),
  );
  for (const { connection } of [busy, patient, never]) connection.closed();
  // The sweep stops by itself with the last connection: no manager.stop() needed here.
});

Deno.test("conn/<id>/send and device/<id>/send reach the handle; close unsubscribes", async () => {
  const { manager, bus, open } = setup();
  const { connection, handle } = open({});
  const other = open({});
  const push = (topic: string, text: string) =>
    bus.publish({ topic, payload: new TextEncoder().encode(text), source, meta: {} });

  assertEquals(push(`conn/${connection.id}/send`, "to the connection"), 1);
  await delivered();
  assertEquals(handle.sent, ["to the connection"]);
  assertEquals(other.handle.sent, []);

  assertEquals(push("device/sensor-1/send", "nobody yet"), 0);
  connection.bindDevice("sensor-1");
  assertEquals(connection.source.deviceId, "sensor-1");
  assertEquals(manager.get(connection.id)?.deviceId, "sensor-1");
  push("device/sensor-1/send", "to the device");
  await delivered();
  assertEquals(handle.sent, ["to the connection", "to the device"]);

  connection.bindDevice("sensor-2");
  assertEquals(push("device/sensor-1/send", "old device"), 0, "rebinding drops the old device");
  assertEquals(push("device/sensor-2/send", "new device"), 1);

  let threw = false;
  try {
    connection.bindDevice("a/b");
  } catch {
    threw = true;
  }
  assert(threw, "a device id must be one topic level");

  connection.closed();
  assertEquals(push(`conn/${connection.id}/send`, "gone"), 0);
  assertEquals(push("device/sensor-2/send", "gone"), 0);
  assertEquals(bus.subscriptionCount, 1, "only the other connection's subscription is left");
  other.connection.closed();
  assertEquals(bus.subscriptionCount, 0);
  manager.stop();
});

Deno.test("list filters by listener and device; close goes through the handle", () => {
  const { manager, open } = setup();
  const a = open({ listener: "ws" });
  const b = open({ listener: "ws" });
  const c = open({ listener: "tcp" });
  b.connection.bindDevice("pump-7");
  c.connection.bindDevice("pump-7");
  const ids = (infos: { id: string }[]) => infos.map((info) => info.id).sort();
  assertEquals(ids(manager.list()), ids([a.connection, b.connection, c.connection]));
  assertEquals(ids(manager.list({ listener: "ws" })), ids([a.connection, b.connection]));
  assertEquals(ids(manager.list({ deviceId: "pump-7" })), ids([b.connection, c.connection]));
  assertEquals(ids(manager.list({ listener: "ws", deviceId: "pump-7" })), [b.connection.id]);
  assertEquals(manager.list({ listener: "nope" }), []);

  assertEquals(manager.close(a.connection.id, "kicked by admin"), true);
  assertEquals(a.handle.closeReasons, ["kicked by admin"]);
  assertEquals(manager.get(a.connection.id), undefined);
  assertEquals(manager.close(a.connection.id, "again"), false);
  assertEquals(manager.openCount, 2);
  manager.stop();
});
