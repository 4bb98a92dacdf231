/**
 * Issue 12, item 24: datagrams from many source addresses cannot fill a UDP
 * listener's table of peers and lock new devices out. (Forged sources need
 * raw sockets; many local source ports are as many new peers.) When the
 * table is full, a new peer evicts the idlest one without a device bound,
 * one never answered first: a new device still gets in, one that was
 * answered keeps its place, and the log gets no line per datagram.
 */

import { assert, assertEquals } from "../helpers/assert.ts";
import { type GatewayProcess, startGateway } from "../helpers/gateway.ts";

const encoder = new TextEncoder();
const decoder = new TextDecoder();

/** Sends one one-byte datagram from each of `count` new sockets (new source ports). */
async function flood(port: number, count: number): Promise<void> {
  const sockets = Array.from(
    { length: count },
    () => Deno.listenDatagram({ transport: "udp", hostname: "127.0.0.1", port: 0 }),
  );
  const target = { transport: "udp" as const, hostname: "127.0.0.1", port };
  await Promise.all(sockets.map((socket) => socket.send(new Uint8Array([1]), target)));
  // Every datagram has been handled once a later one from the same test has.
  for (const socket of sockets) socket.close();
}

/** The UDP peers of listener `sensors`, as the admin API lists them. */
async function peers(gw: GatewayProcess): Promise<{ id: string; remotePort: number }[]> {
  return await (await gw.admin("/connections?listener=sensors")).json();
}

/** The peer whose source port is `port`, once it is listed (it becomes one on its first datagram). */
async function peerOn(gw: GatewayProcess, port: number): Promise<{ id: string } | undefined> {
  for (let i = 0; i < 200; i++) {
    const found = (await peers(gw)).find((peer) => peer.remotePort === port);
    if (found) return found;
    await new Promise((resolve) => setTimeout(resolve, 25));
  }
  return undefined;
}

Deno.test("a full UDP peer table takes a new device; an answered one keeps its place", async () => {
  await using gw = await startGateway({
    listeners: {
      web: { type: "http", port: 0 },
      sensors: { type: "udp", port: 0, limits: { maxConnections: 50, idleTimeout: "5m" } },
    },
    routes: [{
      match: { path: "/conn/:id", methods: ["POST"] },
      target: { topic: { topic: "conn/{id}/send" } },
    }],
  });
  const sensors = await gw.port("sensors");
  const web = await gw.port("web");
  await flood(sensors, 200);

  const device = Deno.listenDatagram({ transport: "udp", hostname: "127.0.0.1", port: 0 });
  const devicePort = (device.addr as Deno.NetAddr).port;
  try {
    await device.send(encoder.encode("temp=21.5"), {
      transport: "udp",
      hostname: "127.0.0.1",
      port: sensors,
    });
    const peer = await peerOn(gw, devicePort);
    assert(peer, "the new device was not admitted while the table was full");
    const pushed = await fetch(`http://127.0.0.1:${web}/conn/${peer.id}`, {
      method: "POST",
      body: "ack",
    });
    assertEquals(pushed.status, 202);
    await pushed.body?.cancel();
    assertEquals(decoder.decode((await device.receive())[0]), "ack");

    // A second flood evicts the peers never answered, not the device.
    await flood(sensors, 200);
    await device.send(encoder.encode("temp=21.6"), {
      transport: "udp",
      hostname: "127.0.0.1",
      port: sensors,
    });
    assertEquals((await peerOn(gw, devicePort))?.id, peer.id);
    assert((await peers(gw)).length <= 50, "the table grew past maxConnections");
  } finally {
    device.close();
  }
  const metrics = await (await gw.admin("/metrics")).text();
  assert(/gateway_connections_evicted_total\{listener="sensors"\} [1-9]/.test(metrics), metrics);
  // No line per refused or evicted datagram.
  const lines = gw.lines.filter((line) => line.includes("sensors") && /refus|evict/.test(line));
  assert(lines.length <= 2, `${lines.length} log lines about refused peers`);
});
