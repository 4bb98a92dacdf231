/**
 * TCP echo through the gateway's `line` listener (bus mode: each line is
 * published, one subscriber replies with the payload) against a bare
 * `Deno.listen` echo server that writes back whatever it reads. Each server
 * runs in its own process; this process is the client: `BENCH_CONNECTIONS`
 * connections (default 50) each send 16-byte lines, in two load shapes:
 * ping-pong (one line in flight per connection) and pipelined (8 lines per
 * write, then wait for their 8 replies). After a warm-up each run lasts
 * `BENCH_SECONDS` (default 10). The script prints messages per second, the
 * server process's CPU time per message, and the gateway ÷ bare ratio (goal ≥ 0.8).
 *
 * ```sh
 * deno task bench tcp_echo
 * BENCH_SECONDS=3 BENCH_CONNECTIONS=20 deno task bench tcp_echo
 * ```
 *
 * @module
 */

import { Bus } from "../src/bus/bus.ts";
import { TcpListenerConfig } from "../src/listeners/config.ts";
import { ConnectionManager } from "../src/connections/manager.ts";
import { TcpListener } from "../src/listeners/tcp.ts";
import { MetricsRegistry } from "../src/observability/metrics.ts";

const SECONDS = Number(Deno.env.get("BENCH_SECONDS") ?? 10);
const CONNECTIONS = Number(Deno.env.get("BENCH_CONNECTIONS") ?? 50);
const WARMUP_SECONDS = 2;
const LINE = new TextEncoder().encode("0123456789abcde\n");
const LOADS = [{ name: "ping-pong", linesPerWrite: 1 }, { name: "pipelined x8", linesPerWrite: 8 }];
/** Clock ticks per second of /proc/<pid>/stat times (USER_HZ, 100 on Linux). */
const CLOCK_TICKS = 100;

/** The echo servers, run as `tcp_echo.ts serve <kind>`: each prints its port, then serves. */
const SERVERS = {
  /** Writes back every chunk it reads. */
  bare(): number {
    const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
    (async () => {
      for await (const conn of listener) {
        (async () => {
          const buffer = new Uint8Array(16 * 1024);
          for (let n; (n = await conn.read(buffer).catch(() => null)) !== null;) {
            for (let at = 0; at < n;) at += await conn.write(buffer.subarray(at, n));
          }
          conn.close();
        })().catch(() => {});
      }
    })();
    return listener.addr.port;
  },
  /** A bus-mode `line` listener whose one subscriber replies with each payload. */
  gateway(): number {
    const metrics = new MetricsRegistry();
    const bus = new Bus(metrics);
    const connections = new ConnectionManager(bus, metrics);
    bus.subscribe("tcp/echo/+", (message) => message.reply?.(message.payload), {
      owner: "bench",
    });
    const listener = new TcpListener(
      "echo",
      TcpListenerConfig.parse({
        type: "tcp",
        port: 0,
        framing: { type: "line" },
        // The message rate's cost, not its limit (1,000 a second per connection by default).
        limits: { messageRate: { perSecond: 1e9, burst: 1e9 } },
      }),
      { bus, connections, upstreams: new Map() },
    );
    listener.start();
    return listener.port;
  },
};

type ServerKind = keyof typeof SERVERS;

/** One measured run. */
interface Result {
  messagesPerSecond: number;
  cpuMicrosPerMessage: number;
}

/** Starts `tcp_echo.ts serve <kind>` and resolves once it prints its port. */
async function startServer(kind: ServerKind): Promise<{ port: number; child: Deno.ChildProcess }> {
  const child = new Deno.Command(Deno.execPath(), {
    args: ["run", "--allow-all", import.meta.filename!, "serve", kind],
    stdout: "piped",
    stderr: "inherit",
  }).spawn();
  const reader = child.stdout.pipeThrough(new TextDecoderStream()).getReader();
  const { value } = await reader.read();
  reader.releaseLock();
  const port = Number(value?.trim());
  if (!Number.isInteger(port)) throw new Error(`${kind} server printed ${value}`);
  return { port, child };
}

/** User plus system CPU seconds a process has used. */
function cpuSeconds(pid: number): number {
  const stat = Deno.readTextFileSync(`/proc/${pid}/stat`);
  const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
  return (Number(fields[11]) + Number(fields[12])) / CLOCK_TICKS;
}

/**
 * Drives `port` with the client load until `seconds` pass; every connection
 * writes `linesPerWrite` lines and waits for all their replies, over and over.
 * Returns the number of lines echoed.
 */
async function drive(port: number, linesPerWrite: number, seconds: number): Promise<number> {
  const request = new Uint8Array(LINE.length * linesPerWrite);
  for (let i = 0; i < linesPerWrite; i++) request.set(LINE, i * LINE.length);
  const deadline = performance.now() + seconds * 1000;
  const echoed = await Promise.all(Array.from({ length: CONNECTIONS }, async () => {
    const conn = await Deno.connect({ hostname: "127.0.0.1", port });
    conn.setNoDelay(true);
    const buffer = new Uint8Array(64 * 1024);
    let lines = 0;
    while (performance.now() < deadline) {
      for (let at = 0; at < request.length;) at += await conn.write(request.subarray(at));
      for (let received = 0; received < request.length;) {
        const n = await conn.read(buffer);
        if (n === null) throw new Error("the server closed the connection");
        received += n;
      }
      lines += linesPerWrite;
    }
    conn.close();
    return lines;
  }));
  return echoed.reduce((sum, lines) => sum + lines, 0);
}

/** Warms `kind` up, then measures it under each load. */
async function measure(kind: ServerKind): Promise<Result[]> {
  const { port, child } = await startServer(kind);
  try {
    const results: Result[] = [];
    for (const load of LOADS) {
      await drive(port, load.linesPerWrite, WARMUP_SECONDS);
      const cpuBefore = cpuSeconds(child.pid);
      const started = performance.now();
      const messages = await drive(port, load.linesPerWrite, SECONDS);
      const elapsed = (performance.now() - started) / 1000;
      results.push({
        messagesPerSecond: messages / elapsed,
        cpuMicrosPerMessage: (cpuSeconds(child.pid) - cpuBefore) * 1e6 / messages,
      });
    }
    return results;
  } finally {
    child.kill("SIGTERM");
    await child.status;
  }
}

if (Deno.args[0] === "serve") {
  console.log(SERVERS[Deno.args[1] as ServerKind]());
} else {
  console.log(
    `TCP echo, ${CONNECTIONS} connections, ${LINE.length}-byte lines, ${SECONDS} s per run ` +
      `after ${WARMUP_SECONDS} s warm-up; each server in its own process`,
  );
  const bare = await measure("bare");
  const gateway = await measure("gateway");
  console.log("\n| load | server | msgs/s | server CPU µs/msg |");
  console.log("|---|---|---:|---:|");
  LOADS.forEach((load, i) => {
    const rows: [string, Result][] = [["bare Deno.listen", bare[i]], ["gateway line", gateway[i]]];
    for (const [name, result] of rows) {
      console.log(
        `| ${load.name} | ${name} | ${Math.round(result.messagesPerSecond)} | ${
          result.cpuMicrosPerMessage.toFixed(1)
        } |`,
      );
    }
  });
  console.log("");
  LOADS.forEach((load, i) => {
    const ratio = gateway[i].messagesPerSecond / bare[i].messagesPerSecond;
    console.log(
      `${load.name}: gateway ÷ bare = ${ratio.toFixed(2)} ${
        ratio >= 0.8 ? "(goal ≥ 0.8 met)" : "(goal ≥ 0.8 NOT met)"
      }`,
    );
  });
}
