/**
 * Issue 12, item 25: one client flooding small messages cannot starve the
 * rest. Each WebSocket (and TCP, and UDP) connection has a message rate (a
 * token bucket, `limits.messageRate`); what goes over it is dropped and
 * counted, and `/healthz` keeps answering while a client floods.
 */

import { assert } from "../helpers/assert.ts";
import { startGateway } from "../helpers/gateway.ts";
import { clientFrame, OPCODE, RawWebSocket } from "./raw_websocket.ts";

/** The value of the metric line that starts with `series`, 0 when absent. */
function metricOf(metrics: string, series: string): number {
  const line = metrics.split("\n").find((l) => l.startsWith(series));
  return line ? Number(line.split(" ").at(-1)) : 0;
}

/** 20,000 one-byte binary messages, as one write. */
function floodBatch(): Uint8Array {
  const one = clientFrame(OPCODE.binary, new Uint8Array([1]));
  const batch = new Uint8Array(one.length * 20_000);
  for (let i = 0; i < 20_000; i++) batch.set(one, i * one.length);
  return batch;
}

/**
 * Floods `ws` with up to 100 batches (2,000,000 messages); true when the
 * gateway closed the connection before they were all written. (Its close
 * frame, 1008, is usually lost: a socket closed with unread bytes resets.)
 */
async function floodUntilClosed(ws: RawWebSocket): Promise<boolean> {
  const batch = floodBatch();
  let batches = 0;
  while (batches < 100 && await ws.write(batch)) batches++;
  ws.close();
  return batches < 100;
}

Deno.test("WebSocket clients flooding tiny messages are closed; /healthz answers", async () => {
  await using gw = await startGateway({
    listeners: { web: { type: "http", port: 0 } },
    routes: [{
      name: "ws",
      match: { path: "/ws" },
      target: {
        websocket: { topic: "ws/flood", limits: { messageRate: { perSecond: 100, burst: 200 } } },
      },
    }],
  });
  const port = await gw.port("web");
  const clients = await Promise.all([1, 2, 3].map(() => RawWebSocket.open(port, "/ws")));
  for (const client of clients) assert(client.status === 101, `upgrade answered ${client.status}`);
  let flooding = true;
  const floods = Promise.all(clients.map(floodUntilClosed)).finally(() => flooding = false);
  const latencies: number[] = [];
  while (flooding || latencies.length < 5) {
    const started = performance.now();
    const res = await fetch(`${gw.adminUrl}/healthz`);
    assert(res.status === 200, `/healthz answered ${res.status} during the flood`);
    await res.body?.cancel();
    latencies.push(performance.now() - started);
  }
  const closedEarly = await floods;
  assert(closedEarly.every(Boolean), `closed before 2,000,000 messages: ${closedEarly}`);
  const metrics = await (await gw.admin("/metrics")).text();
  const closed = metricOf(metrics, 'gateway_connections_rate_limited_total{listener="ws"}');
  const dropped = metricOf(
    metrics,
    'gateway_connection_frames_dropped_total{listener="ws",reason="rate_limit"}',
  );
  assert(closed === 3, `${closed} connections closed for their rate`);
  assert(dropped >= 3, `${dropped} messages dropped`);
  const sorted = latencies.sort((a, b) => a - b);
  console.log(
    `/healthz during the flood: median ${sorted[sorted.length >> 1].toFixed(2)} ms ` +
      `over ${sorted.length} probes`,
  );
  // One rate-limit warning line (or its summary) per interval, not one per client or message.
  await gw.waitForLine(/over its message rate/);
  const warnings = gw.lines.filter((line) => line.includes("over its message rate"));
  assert(warnings.length === 1, `${warnings.length} rate-limit lines`);
});

Deno.test("a TCP client flooding lines is closed; a UDP peer's excess datagrams are dropped", async () => {
  const messageRate = { perSecond: 100, burst: 200 };
  await using gw = await startGateway({
    listeners: {
      plc: { type: "tcp", port: 0, framing: { type: "line" }, limits: { messageRate } },
      sensors: { type: "udp", port: 0, limits: { messageRate } },
    },
    routes: [],
  });
  const tcp = await Deno.connect({ hostname: "127.0.0.1", port: await gw.port("plc") });
  const lines = new TextEncoder().encode("x\n".repeat(20_000));
  // 1,000 writes of 20,000 lines: far more than the socket buffers hold.
  let batches = 0;
  try {
    for (; batches < 1000; batches++) await tcp.write(lines);
  } catch { /* closed by the gateway */ }
  tcp.close();
  assert(batches < 1000, "the TCP connection was not closed after 20,000,000 lines");

  const udp = Deno.listenDatagram({ transport: "udp", hostname: "127.0.0.1", port: 0 });
  const to = { transport: "udp" as const, hostname: "127.0.0.1", port: await gw.port("sensors") };
  for (let i = 0; i < 2000; i++) await udp.send(new Uint8Array([1]), to);
  udp.close();

  let metrics = "";
  for (let poll = 0; poll < 100; poll++) {
    metrics = await (await gw.admin("/metrics")).text();
    if (metricOf(metrics, 'gateway_connection_frames_dropped_total{listener="sensors"') > 0) break;
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
  assert(
    metricOf(metrics, 'gateway_connections_rate_limited_total{listener="plc"}') === 1,
    metrics,
  );
  const dropped = metricOf(metrics, 'gateway_connection_frames_dropped_total{listener="sensors"');
  assert(dropped > 0, "no datagram over the peer's rate was dropped");
  // The peer stays (there is nothing to close): its excess is dropped.
  const peers = await (await gw.admin("/connections?listener=sensors")).json();
  assert(peers.length === 1, `${peers.length} UDP peers`);
});
