/**
 * Issue 12, item 20: a fragmented WebSocket message is held to its route's
 * `maxMessageSize` while its fragments arrive. `Deno.upgradeWebSocket` keeps
 * every fragment until the last one (and has no size option), so the HTTP
 * guard follows the frame headers: past the limit it sends close 1009 and
 * closes, in bus and proxy mode and on the `mqtt` route, and the gateway's
 * memory stays where it was however long the client goes on. A loopback
 * listener gets the guard by default when a route on it upgrades (a local
 * reverse proxy passes fragments through).
 */

import { assert, assertEquals } from "../helpers/assert.ts";
import { type GatewayProcess, startGateway } from "../helpers/gateway.ts";
import { clientFrame, memoryOf, OPCODE, RawWebSocket } from "./raw_websocket.ts";

const FRAGMENT = 64 * 1024;
const MiB = 1024 * 1024;
/** How much a client sends at most before the test gives up on being closed. */
const ENDLESS = 300 * MiB;

/** An upstream WebSocket server that echoes, for the proxy route. */
function echoUpstream(): Deno.HttpServer<Deno.NetAddr> {
  return Deno.serve({ hostname: "127.0.0.1", port: 0, onListen() {} }, (request) => {
    const { socket, response } = Deno.upgradeWebSocket(request);
    socket.onmessage = (event) => socket.send(event.data);
    return response;
  });
}

async function startWebSocketGateway(upstreamPort: number): Promise<GatewayProcess> {
  return await startGateway({
    // On loopback, and no `guard` given: the WebSocket routes turn it on.
    listeners: { web: { type: "http", port: 0 } },
    upstreams: { echo: { targets: [`http://127.0.0.1:${upstreamPort}`] } },
    routes: [
      { name: "bus", match: { path: "/bus" }, target: { websocket: { topic: "ws/bus" } } },
      {
        name: "proxy",
        match: { path: "/proxy" },
        target: { websocket: { mode: "proxy", upstream: "echo" } },
      },
      { name: "mqtt-ws", match: { path: "/mqtt" }, target: { mqtt: {} } },
    ],
    mqtt: { listeners: {}, allowAnonymous: true },
  });
}

/** The first fragment of a binary message, then continuations, never the last. */
const first = clientFrame(OPCODE.binary, new Uint8Array(FRAGMENT), false);
const more = clientFrame(OPCODE.continuation, new Uint8Array(FRAGMENT), false);

/** Sends fragments until `total` bytes or the gateway closes; returns the bytes sent. */
async function sendFragments(ws: RawWebSocket, total: number): Promise<number> {
  if (!await ws.write(first)) return 0;
  let sent = FRAGMENT;
  while (sent < total && await ws.write(more)) sent += FRAGMENT;
  return sent;
}

for (
  const [route, path, protocol] of [
    ["bus", "/bus", undefined],
    ["proxy", "/proxy", undefined],
    ["mqtt", "/mqtt", "mqtt"],
  ] as const
) {
  Deno.test(`${route} route: a fragmented message past maxMessageSize closes 1009; memory stays`, async () => {
    await using upstream = echoUpstream();
    await using gw = await startWebSocketGateway(upstream.addr.port);
    const port = await gw.port("web");
    const pid = gw.child.pid;

    // Just past the limit (1 MiB, or the mqtt route's 1 MiB maxPacketSize), then wait: 1009.
    const polite = await RawWebSocket.open(port, path, protocol);
    assertEquals(polite.status, 101);
    await sendFragments(polite, MiB + 2 * FRAGMENT);
    assertEquals(await polite.closeCode(), 1009);
    polite.close();

    // A message that never ends is cut off long before it could take memory.
    const before = await memoryOf(pid, "VmHWM");
    const endless = await RawWebSocket.open(port, path, protocol);
    assertEquals(endless.status, 101);
    const sent = await sendFragments(endless, ENDLESS);
    endless.close();
    assert(sent < ENDLESS, `the gateway took ${sent / MiB} MiB of one message`);
    const grown = ((await memoryOf(pid, "VmHWM")) - before) / MiB;
    console.log(
      `${route}: closed after ${sent / MiB} MiB sent; peak RSS grew ${grown.toFixed(1)} MiB`,
    );
    assert(grown < 64, `peak RSS grew ${grown.toFixed(1)} MiB`);
  });
}
