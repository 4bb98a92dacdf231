/**
 * The server `emfile.test.ts` runs under `prlimit --nofile=N:N`: a TCP accept
 * loop on `Deno.listen` that admits every connection through the real
 * {@link ConnectionManager} (refusing over the descriptor budget) and backs
 * off when `accept()` fails with EMFILE, plus a bare `Deno.serve` HTTP server
 * (like the gateway's HTTP listener, nothing awaits its `finished`), with the
 * descriptor guard installed.
 *
 * It prints `{"tcpPort","httpPort","limit","budget"}` as one line on stdout,
 * then serves until killed (at most 60 s). TCP protocol: the server greets
 * with `hello <id>` or `refused <reason>` (and closes), then answers each
 * line with `echo <line>`, or with `{"open"}` for the line `stats`.
 *
 * @module
 */

import { Bus } from "../../src/bus/bus.ts";
import { connectionBudget, descriptorLimit } from "../../src/connections/fd_budget.ts";
import { installDescriptorGuard, isDescriptorExhaustion } from "../../src/connections/fd_guard.ts";
import { ConnectionManager } from "../../src/connections/manager.ts";
import { configureLogging } from "../../src/observability/log.ts";
import { MetricsRegistry } from "../../src/observability/metrics.ts";

const ACCEPT_BACKOFF_MS = 50;
const deadline = Date.now() + 60_000;
const encoder = new TextEncoder();
const decoder = new TextDecoder();

await configureLogging({ level: "info", format: "json" });
installDescriptorGuard();
const metrics = new MetricsRegistry();
const manager = new ConnectionManager(new Bus(metrics), metrics);
const limits = { maxConnections: 10_000, maxPerIp: 10_000, idleTimeout: 0 };

async function serveConnection(conn: Deno.TcpConn): Promise<void> {
  const write = (text: string) => conn.write(encoder.encode(text + "\n"));
  const admitted = manager.admit({
    listener: "tcp",
    protocol: "tcp",
    remoteAddress: conn.remoteAddr.hostname,
    remotePort: conn.remoteAddr.port,
    limits,
    handle: { send: (payload) => void conn.write(payload), close: () => conn.close() },
  });
  if ("refused" in admitted) {
    await write(`refused ${admitted.refused}`).catch(() => {});
    conn.close();
    return;
  }
  const connection = admitted;
  const buffer = new Uint8Array(4096);
  let pending = "";
  try {
    await write(`hello ${connection.id}`);
    while (Date.now() < deadline) {
      const n = await conn.read(buffer);
      if (n === null) break;
      pending += decoder.decode(buffer.subarray(0, n));
      const lines = pending.split("\n");
      pending = lines.pop()!;
      connection.received(n, lines.length);
      for (const line of lines) {
        const answer = line === "stats"
          ? JSON.stringify({ open: manager.openCount })
          : `echo ${line}`;
        await write(answer);
        connection.sent(answer.length + 1);
      }
    }
    conn.close();
  } catch {
    // The client went away (reset or closed mid-write): nothing to clean up but the record.
  } finally {
    connection.closed();
  }
}

const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
const server = Deno.serve(
  { hostname: "127.0.0.1", port: 0, onListen: () => {} },
  () => new Response("ok"),
);
const limit = descriptorLimit();
console.log(JSON.stringify({
  tcpPort: listener.addr.port,
  httpPort: server.addr.port,
  limit,
  budget: connectionBudget(limit),
}));

while (Date.now() < deadline) {
  try {
    serveConnection(await listener.accept());
  } catch (error) {
    if (!isDescriptorExhaustion(error)) throw error;
    await new Promise((resolve) => setTimeout(resolve, ACCEPT_BACKOFF_MS));
  }
}
Deno.exit(0);
