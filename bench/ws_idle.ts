/**
 * Idle WebSocket connections, all on loopback in one run: a bare Deno server
 * (`Deno.serve` + `Deno.upgradeWebSocket`, the sockets in a Set) and the
 * gateway's WebSocket target each hold N idle connections. For each the script
 * prints the server's resident memory per connection (RSS growth / N, read from
 * the server process's `/proc/<pid>/status` after a warm-up) and the time to
 * push one small message to every connection, from the push request until the
 * last client has it (median of three). Results also go to `.bench/ws_idle.json`.
 *
 * The gateway does not serve websocket routes from its config yet, so the
 * gateway server is this script in `serve gateway` mode: the route table and
 * listener app built from a config with one `websocket` route (bus mode), the
 * real bus and connection manager, under the gateway's runtime flags from
 * build.ts. Its push publishes on each connection's `conn/<id>/send` (the
 * manager subscribes each connection there; there is no shared broadcast
 * subscription).
 *
 * The clients run in this process on the same machine, so every connection
 * costs two descriptors: one here and one in the server. Each process has its
 * own `RLIMIT_NOFILE`; N is capped at the connection manager's budget (the
 * limit minus its headroom) less a margin for the server's other descriptors,
 * about 17,900 with a limit of 20,000.
 *
 * ```sh
 * deno task bench ws_idle                          # 5,000 connections
 * WS_IDLE_CONNECTIONS=17000 deno task bench ws_idle
 * deno run -A bench/ws_idle.ts 17000               # the same, directly
 * ```
 *
 * @module
 */

import { join } from "node:path";
import { RUNTIME_FLAGS } from "../build.ts";
import { freePort } from "../tests/helpers/gateway.ts";
import { Bus } from "../src/bus/bus.ts";
import { GatewayConfig } from "../src/sections.ts";
import { connectionBudget, descriptorLimit } from "../src/connections/fd_budget.ts";
import { ConnectionManager } from "../src/connections/manager.ts";
import { HttpMetrics } from "../src/observability/http_metrics.ts";
import { MetricsRegistry } from "../src/observability/metrics.ts";
import { buildListenerApp } from "../src/router/app.ts";
import { buildRouteTable } from "../src/router/table.ts";
import { createHttp1Client } from "../src/upstreams/http1_client.ts";
import { TrustedProxies } from "../src/security/trusted_proxies.ts";

const SCRIPT = import.meta.filename!;
const RESULTS = join(import.meta.dirname!, "..", ".bench", "ws_idle.json");
const PAYLOAD = new TextEncoder().encode("push");
/** Descriptors the server keeps besides its connections (listener, stdio, runtime). */
const SERVER_MARGIN = 100;
const OPEN_BATCH = 250;
const PUSH_ROUNDS = 3;
const WARMUP_CONNECTIONS = 200;

type Kind = "bare" | "gateway";

/** One server's figures. */
interface Row {
  server: string;
  connections: number;
  rssBeforeMiB: number;
  rssAfterMiB: number;
  kibPerConnection: number;
  pushAllMs: number;
}

const delay = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

/** The bare baseline: upgrade, keep the socket, send the push to every socket. */
function serveBare(port: number): void {
  const sockets = new Set<WebSocket>();
  Deno.serve({ hostname: "127.0.0.1", port, onListen() {} }, (request) => {
    if (request.url.endsWith("/push")) {
      for (const socket of sockets) socket.send(PAYLOAD);
      return new Response("pushed");
    }
    const { socket, response } = Deno.upgradeWebSocket(request);
    socket.onopen = () => sockets.add(socket);
    socket.onclose = () => sockets.delete(socket);
    return response;
  });
}

/** The gateway: one bus-mode websocket route on `/ws`, pushes through the bus. */
function serveGateway(port: number): void {
  const registry = new MetricsRegistry();
  const bus = new Bus(registry);
  const connections = new ConnectionManager(bus, registry);
  const metrics = new HttpMetrics(registry);
  const config = GatewayConfig.parse({
    routes: [{
      name: "ws",
      match: { path: "/ws" },
      target: {
        websocket: { limits: { maxConnections: 100_000, maxPerIp: 100_000, idleTimeout: 0 } },
      },
    }],
  });
  const client = createHttp1Client();
  const routes = buildRouteTable(config, {
    upstreams: new Map(),
    client,
    metrics,
    bus,
    connections,
  });
  const handler = buildListenerApp({
    listener: "bench",
    routes,
    metrics,
    accessLog: false,
    trustedProxies: new TrustedProxies([]),
  });
  const source = { listener: "bench", protocol: "gateway" } as const;
  Deno.serve({ hostname: "127.0.0.1", port, onListen() {} }, (request, info) => {
    if (!request.url.endsWith("/push")) return handler(request, info);
    for (const { id } of connections.list()) {
      bus.publish({ topic: `conn/${id}/send`, payload: PAYLOAD, source, meta: {} });
    }
    return new Response("pushed");
  });
}

/** Settles as `promise` does, or rejects once `ms` have passed without it settling. */
async function within<T>(promise: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`${what}: not done within ${ms} ms`)), ms);
  });
  try {
    return await Promise.race([promise, timeout]);
  } finally {
    clearTimeout(timer);
  }
}

/** Resident memory of a process in MiB, from /proc. */
async function rssMiB(pid: number): Promise<number> {
  const status = await Deno.readTextFile(`/proc/${pid}/status`);
  return Number(/^VmRSS:\s+(\d+) kB/m.exec(status)![1]) / 1024;
}

/** Opens `count` client sockets to `url`, `OPEN_BATCH` at a time; `onPush` runs on each message. */
async function openClients(url: string, count: number, onPush: () => void): Promise<WebSocket[]> {
  const sockets: WebSocket[] = [];
  for (let opened = 0; opened < count; opened += OPEN_BATCH) {
    const batch = Array.from({ length: Math.min(OPEN_BATCH, count - opened) }, () => {
      const socket = new WebSocket(url);
      socket.onmessage = onPush;
      sockets.push(socket);
      return new Promise<void>((resolve, reject) => {
        socket.onopen = () => resolve();
        socket.onerror = () => reject(new Error(`a connection to ${url} failed`));
      });
    });
    await Promise.all(batch);
  }
  return sockets;
}

/** Closes every socket and waits (up to 60 s) for their close events. */
async function closeClients(sockets: WebSocket[]): Promise<void> {
  const closed = sockets.map((socket) =>
    new Promise((resolve) => {
      socket.onclose = resolve;
      socket.close();
    })
  );
  await within(Promise.all(closed), 60_000, "closing the clients");
}

/** Starts one server, holds `count` idle connections to it and measures it. */
async function measure(kind: Kind, count: number): Promise<Row> {
  const port = freePort();
  const server = new Deno.Command(Deno.execPath(), {
    args: ["run", ...RUNTIME_FLAGS, SCRIPT, "serve", kind, String(port)],
    stdin: "null",
  }).spawn();
  try {
    const base = `127.0.0.1:${port}`;
    let listening = false;
    for (let attempt = 0; attempt < 3000 && !listening; attempt++) {
      try {
        await (await fetch(`http://${base}/push`)).body?.cancel();
        listening = true;
      } catch {
        await delay(10);
      }
    }
    if (!listening) throw new Error(`the ${kind} server never listened on ${base}`);

    const url = `ws://${base}/ws`;
    await closeClients(await openClients(url, WARMUP_CONNECTIONS, () => {}));
    await delay(1000);
    const rssBefore = await rssMiB(server.pid);

    let received = 0;
    let roundDone = () => {};
    let expected = 0;
    const sockets = await openClients(url, count, () => {
      if (++received === expected) roundDone();
    });
    await delay(2000);
    const rssAfter = await rssMiB(server.pid);

    const times: number[] = [];
    for (let round = 1; round <= PUSH_ROUNDS; round++) {
      expected = count * round;
      const done = new Promise<void>((resolve) => roundDone = resolve);
      const began = performance.now();
      await (await fetch(`http://${base}/push`)).body?.cancel();
      await within(done, 60_000, `${kind}: push round ${round}`);
      times.push(performance.now() - began);
    }
    await closeClients(sockets);
    return {
      server: kind === "bare" ? "bare Deno.upgradeWebSocket" : "gateway websocket target",
      connections: count,
      rssBeforeMiB: Math.round(rssBefore * 10) / 10,
      rssAfterMiB: Math.round(rssAfter * 10) / 10,
      kibPerConnection: Math.round((rssAfter - rssBefore) * 1024 / count * 10) / 10,
      pushAllMs: Math.round(times.toSorted((a, b) => a - b)[PUSH_ROUNDS >> 1] * 10) / 10,
    };
  } finally {
    server.kill("SIGTERM");
    await server.status;
  }
}

if (Deno.args[0] === "serve") {
  const port = Number(Deno.args[2]);
  if (Deno.args[1] === "bare") serveBare(port);
  else serveGateway(port);
} else {
  const requested = Number(Deno.args[0] ?? Deno.env.get("WS_IDLE_CONNECTIONS") ?? 5000);
  const limit = descriptorLimit();
  const most = connectionBudget(limit) - SERVER_MARGIN;
  const count = Math.min(requested, most);
  if (count < requested) {
    console.log(`${requested} connections asked; ${count} fit under the descriptor limit ${limit}`);
  }
  console.log(
    `${count} idle WebSocket connections per server; the clients in this process hold as many ` +
      `descriptors again (2 per connection on this machine; open files limit ${limit} per process)`,
  );
  const rows = [await measure("bare", count), await measure("gateway", count)];
  console.table(rows);
  const [bare, gateway] = rows;
  console.log(
    `gateway / bare: memory per connection ${
      (gateway.kibPerConnection / bare.kibPerConnection).toFixed(2)
    }x, push to all ${(gateway.pushAllMs / bare.pushAllMs).toFixed(2)}x`,
  );
  await Deno.mkdir(join(RESULTS, ".."), { recursive: true });
  await Deno.writeTextFile(RESULTS, JSON.stringify({ date: new Date(), rows }, null, 2));
  console.log(`wrote ${RESULTS}`);
}
