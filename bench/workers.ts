/**
 * Language-worker call overhead: echo calls through the gateway's worker
 * supervisor (bus → pool → Unix socket → SDK → back) for each SDK (Python,
 * PHP, Node on Node, Node on Deno), against a raw Unix-socket echo server in
 * the same language with the same framing (4-byte length + JSON) and no SDK
 * or gateway, in the same run. Two load shapes: sequential (one call at a
 * time) and 64 calls in flight. Prints calls/s, p50 and p99 in µs, and the
 * SDK ÷ raw ratio of calls/s (goal ≥ 0.9).
 *
 * ```sh
 * deno task bench workers
 * BENCH_SECONDS=5 deno task bench workers
 * ```
 *
 * @module
 */

import { join } from "node:path";
import { Bus } from "../src/bus/bus.ts";
import { configFor } from "../tests/helpers/config.ts";
import { callFunction } from "../src/functions/call.ts";
import { MetricsRegistry } from "../src/observability/metrics.ts";
import { encodeFrame, FrameDecoder } from "../src/workers/frame.ts";
import { WorkerSupervisor } from "../src/workers/supervisor.ts";
import { nodeBundle } from "../tests/workers/harness.ts";

const SECONDS = Number(Deno.env.get("BENCH_SECONDS") ?? 3);
const WARMUP_MS = 500;
const ROOT = join(import.meta.dirname!, "..");
const ARGS = { id: 42, name: "echo", tags: ["a", "b"] };
const SHAPES = [{ name: "sequential", inFlight: 1 }, { name: "64 in flight", inFlight: 64 }];

/** Raw echo servers: accept one connection on argv's socket path and answer every call frame. */
const RAW_SERVERS = {
  python: `
import json, socket, struct, sys
server = socket.socket(socket.AF_UNIX); server.bind(sys.argv[1]); server.listen(1)
print("ready", flush=True)
conn, _ = server.accept(); reader = conn.makefile("rb"); H = struct.Struct(">I")
while True:
    header = reader.read(4)
    if len(header) < 4: break
    frame = json.loads(reader.read(H.unpack(header)[0]))
    body = json.dumps({"type": "result", "id": frame["id"], "ok": True, "value": frame["args"]}, separators=(",", ":")).encode()
    conn.sendall(H.pack(len(body)) + body)
`,
  php: `
$server = stream_socket_server("unix://" . $argv[1]); echo "ready\\n";
$conn = stream_socket_accept($server, 30);
$read = function (int $n) use ($conn) { $b = ''; while (strlen($b) < $n) { $c = fread($conn, $n - strlen($b)); if ($c === '' || $c === false) exit(0); $b .= $c; } return $b; };
while (true) {
    $frame = json_decode($read(unpack('N', $read(4))[1]), true);
    $body = json_encode(['type' => 'result', 'id' => $frame['id'], 'ok' => true, 'value' => $frame['args']], JSON_UNESCAPED_SLASHES);
    fwrite($conn, pack('N', strlen($body)) . $body);
}
`,
  node: `
const net = require("node:net");
const server = net.createServer((socket) => {
  let pending = Buffer.alloc(0);
  socket.on("data", (chunk) => {
    pending = pending.length ? Buffer.concat([pending, chunk]) : chunk;
    const out = [];
    while (pending.length >= 4 && pending.length >= 4 + pending.readUInt32BE(0)) {
      const length = pending.readUInt32BE(0);
      const frame = JSON.parse(pending.toString("utf8", 4, 4 + length));
      pending = pending.subarray(4 + length);
      const body = Buffer.from(JSON.stringify({ type: "result", id: frame.id, ok: true, value: frame.args }));
      const header = Buffer.alloc(4); header.writeUInt32BE(body.length);
      out.push(header, body);
    }
    if (out.length) socket.write(Buffer.concat(out));
  });
});
server.listen(process.argv[process.argv.length - 1], () => console.log("ready"));
`,
};

type Sdk = "python" | "php" | "node" | "deno";

/** One measured run. */
interface Measured {
  callsPerSecond: number;
  p50: number;
  p99: number;
}

/** Runs `call` with `inFlight` loops for SECONDS after a warm-up; latencies in µs. */
async function measure(call: () => Promise<unknown>, inFlight: number): Promise<Measured> {
  const warmUntil = performance.now() + WARMUP_MS;
  const endAt = warmUntil + SECONDS * 1000;
  const latencies: number[] = [];
  await Promise.all(Array.from({ length: inFlight }, async () => {
    for (let now = performance.now(); now < endAt; now = performance.now()) {
      await call();
      if (now >= warmUntil) latencies.push((performance.now() - now) * 1000);
    }
  }));
  latencies.sort((a, b) => a - b);
  const at = (q: number) =>
    latencies[Math.min(latencies.length - 1, Math.floor(q * latencies.length))];
  return { callsPerSecond: latencies.length / SECONDS, p50: at(0.5), p99: at(0.99) };
}

/** A client of a raw echo server: multiplexed calls by id over one Unix socket. */
async function rawClient(path: string): Promise<{ call(): Promise<unknown>; close(): void }> {
  const conn = await Deno.connect({ transport: "unix", path });
  const waiting = new Map<number, (value: unknown) => void>();
  const decoder = new FrameDecoder(16 * 1024 * 1024);
  (async () => {
    const buffer = new Uint8Array(64 * 1024);
    for (let n; (n = await conn.read(buffer).catch(() => null)) !== null;) {
      for (const { message } of decoder.push(buffer.subarray(0, n))) {
        waiting.get(message.id as number)?.(message.value);
        waiting.delete(message.id as number);
      }
    }
  })();
  let nextId = 0;
  return {
    call() {
      const id = nextId++;
      const { promise, resolve } = Promise.withResolvers<unknown>();
      waiting.set(id, resolve);
      conn.write(encodeFrame({ type: "call", id, function: "echo", args: ARGS, timeout: 5000 }));
      return promise;
    },
    close: () => conn.close(),
  };
}

/** Starts the raw echo server of `language` on a fresh socket path. */
async function startRaw(language: keyof typeof RAW_SERVERS, node: string) {
  const dir = await Deno.makeTempDir({ prefix: "bench-raw-" });
  const path = join(dir, "echo.sock");
  const argv = language === "python"
    ? ["python3", "-c", RAW_SERVERS.python, path]
    : language === "php"
    ? ["php", "-r", RAW_SERVERS.php, path]
    : [node, "-e", RAW_SERVERS.node, path];
  const child = new Deno.Command(argv[0], { args: argv.slice(1), stdout: "piped", stdin: "null" })
    .spawn();
  const reader = child.stdout.pipeThrough(new TextDecoderStream()).getReader();
  await reader.read();
  reader.releaseLock();
  const client = await rawClient(path);
  return {
    client,
    async stop() {
      client.close();
      child.kill("SIGKILL");
      await child.status;
      await Deno.remove(dir, { recursive: true });
    },
  };
}

const dataDir = await Deno.makeTempDir({ prefix: "bench-workers-" });
const nodeWorker = await nodeBundle();
const metrics = new MetricsRegistry();
const bus = new Bus(metrics);
const supervisor = new WorkerSupervisor(bus, metrics);
const commands: Record<Sdk, string[]> = {
  python: ["python3", join(ROOT, "examples/workers/python/worker.py")],
  php: ["php", join(ROOT, "examples/workers/php/worker.php")],
  node: ["node", nodeWorker],
  deno: [Deno.execPath(), "run", "-A", join(ROOT, "examples/workers/node/worker.ts")],
};
const workers = configFor({
  workers: Object.entries(commands).map(([name, command]) => ({
    name,
    command,
    cwd: ROOT,
    concurrency: 64,
  })),
}, { dataDir });
await (await supervisor.prepare(workers.config, workers.context)).commit();

const source = { listener: "bench", protocol: "gateway" } as const;
const rows: string[][] = [];
const us = (value: number) => value.toFixed(0);
try {
  for (const sdk of Object.keys(commands) as Sdk[]) {
    const raw = await startRaw(sdk === "deno" ? "node" : sdk, "node");
    for (const shape of SHAPES) {
      const viaGateway = await measure(
        () => callFunction(bus, `${sdk}.echo`, ARGS, { source, timeout: 5000 }),
        shape.inFlight,
      );
      const bare = await measure(() => raw.client.call(), shape.inFlight);
      rows.push([
        sdk,
        shape.name,
        viaGateway.callsPerSecond.toFixed(0),
        us(viaGateway.p50),
        us(viaGateway.p99),
        bare.callsPerSecond.toFixed(0),
        us(bare.p50),
        us(bare.p99),
        (viaGateway.callsPerSecond / bare.callsPerSecond).toFixed(2),
      ]);
      console.log(rows.at(-1)!.join("\t"));
    }
    await raw.stop();
  }
} finally {
  await supervisor.stop();
  await Deno.remove(dataDir, { recursive: true });
}

const header = [
  "sdk",
  "load",
  "calls/s",
  "p50 µs",
  "p99 µs",
  "raw calls/s",
  "raw p50",
  "raw p99",
  "÷ raw",
];
console.log(
  `\n${SECONDS} s per run after ${WARMUP_MS} ms warm-up; raw = same-language echo (Node for deno)`,
);
const widths = header.map((h, i) => Math.max(h.length, ...rows.map((row) => row[i].length)));
for (const row of [header, ...rows]) {
  console.log(row.map((cell, i) => cell.padStart(widths[i])).join("  "));
}
