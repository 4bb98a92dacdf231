/**
 * HTTP benchmark, all on loopback in one run, each server its own process:
 * a bare `Deno.serve` hello server, the gateway answering from a `respond`
 * route (access log off, then on), and, in front of one hello upstream,
 * nginx and the gateway as reverse proxies. `wrk` drives each with the same
 * load after a warm-up; the script prints rps, p50 and p99, the ratios to the
 * baselines, the gateway's idle RSS and its time from spawn to first response,
 * and writes them to `.bench/http.json`. A missing `wrk` or `nginx` skips the
 * rows that need it.
 *
 * nginx runs one worker process: the gateway serves requests on one JavaScript
 * thread, and the two cores here are shared with wrk and the upstream, so one
 * worker is the like-for-like comparison (more workers would only contend).
 *
 * ```sh
 * deno task bench                  # via bench/main.ts
 * BENCH_SECONDS=3 deno task bench  # shorter measured runs (default 10 s)
 * ```
 *
 * @module
 */

import { join } from "node:path";
import { freePort, gatewayArgv } from "../tests/helpers/gateway.ts";

const ROOT = join(import.meta.dirname!, "..");
const HELLO = join(ROOT, "bench", "servers", "hello.ts");
const RESULTS = join(ROOT, ".bench", "http.json");
const LOAD = { threads: 1, connections: 50, seconds: Number(Deno.env.get("BENCH_SECONDS") ?? 10) };
const WARMUP_SECONDS = 3;
const STARTUP_RUNS = 3;

/** wrk's figures for one server. */
interface Load {
  rps: number;
  p50Ms: number;
  p99Ms: number;
  /** Non-2xx responses plus socket errors (connect, read, write, timeout). */
  errors: number;
}

/** One row of the results table. */
interface Row extends Partial<Load> {
  name: string;
  idleRssMiB?: number;
  skipped?: string;
}

/** A server to start and load. */
interface Case {
  name: string;
  argv: string[];
  port: number;
  /** Whether the process's idle RSS is worth reporting (not nginx's master). */
  rss: boolean;
}

const dir = await Deno.makeTempDir({ prefix: "bench-http-" });
const running = new Set<Deno.ChildProcess>();

const slug = (name: string) => name.replace(/\W+/g, "-");
const delay = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));
const median = (values: number[]) => values.toSorted((a, b) => a - b)[values.length >> 1];

/** Whether `command` exists on PATH (its exit code does not matter). */
async function installed(command: string): Promise<boolean> {
  try {
    await new Deno.Command(command, { args: ["-v"], stdout: "null", stderr: "null" }).output();
    return true;
  } catch (error) {
    if (error instanceof Deno.errors.NotFound) return false;
    throw error;
  }
}

/** Spawns `argv` with its output in `logFile`; `exec` keeps the child's pid the server's. */
function spawn(argv: string[], logFile: string): Deno.ChildProcess {
  const child = new Deno.Command("/bin/sh", {
    args: ["-c", 'exec "$@" >"$0" 2>&1', logFile, ...argv],
    stdin: "null",
  }).spawn();
  running.add(child);
  return child;
}

/** SIGTERM, then SIGKILL after 5 s; resolves once the process is gone. */
async function stop(child: Deno.ChildProcess): Promise<void> {
  running.delete(child);
  const kill = (signal: Deno.Signal) => {
    try {
      child.kill(signal);
    } catch { /* already exited */ }
  };
  kill("SIGTERM");
  const timer = setTimeout(() => kill("SIGKILL"), 5000);
  await child.status;
  clearTimeout(timer);
}

/** Starts a case and polls it until it answers 200; returns the child and the time that took. */
async function start(test: Case): Promise<{ child: Deno.ChildProcess; startupMs: number }> {
  const logFile = join(dir, `${slug(test.name)}.log`);
  const began = performance.now();
  const child = spawn(test.argv, logFile);
  let exited = false;
  child.status.then(() => exited = true);
  while (!exited && performance.now() - began < 30_000) {
    try {
      const response = await fetch(`http://127.0.0.1:${test.port}/`);
      await response.body?.cancel();
      if (response.status === 200) return { child, startupMs: performance.now() - began };
    } catch { /* not listening yet */ }
    await delay(5);
  }
  await stop(child);
  const log = await Deno.readTextFile(logFile).catch(() => "");
  throw new Error(`${test.name} never answered 200 on port ${test.port}:\n${log.slice(-2000)}`);
}

/** Resident memory of a process, from /proc. */
async function rssMiB(pid: number): Promise<number> {
  const status = await Deno.readTextFile(`/proc/${pid}/status`);
  return Math.round(Number(/^VmRSS:\s+(\d+) kB/m.exec(status)![1]) / 102.4) / 10;
}

/** Runs wrk against `port` for `seconds` and parses its `--latency` report. */
async function wrk(port: number, seconds: number): Promise<Load> {
  const child = new Deno.Command("wrk", {
    args: [
      `-t${LOAD.threads}`,
      `-c${LOAD.connections}`,
      `-d${seconds}s`,
      "--latency",
      `http://127.0.0.1:${port}/`,
    ],
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  running.add(child);
  const output = await child.output();
  running.delete(child);
  const text = new TextDecoder().decode(output.stdout);
  if (!output.success) throw new Error(`wrk failed: ${new TextDecoder().decode(output.stderr)}`);
  const percentile = (p: number) => {
    const [, value, unit] = new RegExp(`^\\s*${p}%\\s+([\\d.]+)(us|ms|s)$`, "m").exec(text)!;
    const ms = Number(value) * { us: 0.001, ms: 1, s: 1000 }[unit as "us" | "ms" | "s"];
    return Math.round(ms * 1000) / 1000;
  };
  const socketErrors = /Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)/
    .exec(text)?.slice(1) ?? [];
  return {
    rps: Number(/^Requests\/sec:\s+([\d.]+)/m.exec(text)![1]),
    p50Ms: percentile(50),
    p99Ms: percentile(99),
    errors: [/Non-2xx or 3xx responses: (\d+)/.exec(text)?.[1] ?? "0", ...socketErrors]
      .reduce((sum, n) => sum + Number(n), 0),
  };
}

/** A gateway config serving `port`, with a respond route or a route to `upstreamPort`. */
async function gatewayCase(
  name: string,
  options: { access: boolean; upstreamPort?: number },
): Promise<Case> {
  const port = freePort();
  const target = options.upstreamPort === undefined
    ? { respond: { body: "Hello, world!\n" } }
    : { upstream: "hello" };
  const config = {
    listeners: { web: { type: "http", host: "127.0.0.1", port } },
    routes: [{ name: "hello", match: { path: "/*" }, target }],
    upstreams: options.upstreamPort === undefined
      ? {}
      : { hello: { targets: [`http://127.0.0.1:${options.upstreamPort}`] } },
    admin: { host: "127.0.0.1", port: freePort() },
    log: { level: "info", format: "json", access: options.access },
  };
  const file = join(dir, `${slug(name)}.json`);
  await Deno.writeTextFile(file, JSON.stringify(config, null, 2));
  return { name, argv: [...gatewayArgv(), "run", "--config", file], port, rss: true };
}

function helloCase(name: string): Case {
  const port = freePort();
  return {
    name,
    argv: [Deno.execPath(), "run", "--allow-net", HELLO, String(port)],
    port,
    rss: true,
  };
}

/** nginx in the foreground, one worker, keep-alive to the upstream, no access log. */
async function nginxCase(upstreamPort: number): Promise<Case> {
  const port = freePort();
  const home = join(dir, "nginx");
  await Deno.mkdir(home);
  const temp = ["client_body", "proxy", "fastcgi", "uwsgi", "scgi"]
    .map((kind) => `${kind}_temp_path ${join(home, kind)};`).join("\n  ");
  await Deno.writeTextFile(
    join(home, "nginx.conf"),
    `worker_processes 1;
daemon off;
pid ${join(home, "nginx.pid")};
error_log ${join(home, "error.log")} warn;
events { worker_connections 1024; }
http {
  access_log off;
  keepalive_requests 1000000;
  ${temp}
  upstream hello {
    server 127.0.0.1:${upstreamPort};
    keepalive 64;
    keepalive_requests 1000000;
  }
  server {
    listen 127.0.0.1:${port};
    location / {
      proxy_pass http://hello;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
      proxy_set_header X-Forwarded-Proto $scheme;
      proxy_set_header X-Forwarded-Host $host;
    }
  }
}
`,
  );
  const argv = ["nginx", "-p", home, "-e", join(home, "error.log"), "-c", "nginx.conf"];
  return { name: "nginx proxy → hello", argv, port, rss: false };
}

/** Starts, measures idle RSS, warms up, loads and stops one case. */
async function measure(test: Case, withLoad: boolean): Promise<Row> {
  const { child } = await start(test);
  try {
    await delay(1000);
    const idleRssMiB = test.rss ? await rssMiB(child.pid) : undefined;
    if (!withLoad) return { name: test.name, idleRssMiB, skipped: "wrk not installed" };
    await wrk(test.port, WARMUP_SECONDS);
    return { name: test.name, idleRssMiB, ...await wrk(test.port, LOAD.seconds) };
  } finally {
    await stop(child);
  }
}

/** Milliseconds from spawn to the first 200, for each of {@link STARTUP_RUNS} starts. */
async function startupTimes(test: Case): Promise<number[]> {
  const times: number[] = [];
  for (let run = 0; run < STARTUP_RUNS; run++) {
    const { child, startupMs } = await start(test);
    await stop(child);
    times.push(Math.round(startupMs));
  }
  return times;
}

function printTable(rows: Row[]): void {
  const cell = (value: number | undefined, digits: number) =>
    value === undefined ? "-" : value.toFixed(digits);
  const lines = [
    ["server", "rps", "p50 ms", "p99 ms", "errors", "idle RSS MiB"],
    ...rows.map((row) => [
      row.name,
      row.skipped ? `skipped: ${row.skipped}` : cell(row.rps, 0),
      cell(row.p50Ms, 2),
      cell(row.p99Ms, 2),
      cell(row.errors, 0),
      cell(row.idleRssMiB, 1),
    ]),
  ];
  const widths = lines[0].map((_, i) => Math.max(...lines.map((line) => line[i].length)));
  for (const line of lines) {
    console.log(
      line.map((text, i) => i ? text.padStart(widths[i]) : text.padEnd(widths[i]))
        .join("  "),
    );
  }
}

async function cleanUp(): Promise<void> {
  await Promise.all([...running].map(stop));
  await Deno.remove(dir, { recursive: true }).catch(() => {});
}

async function main(): Promise<void> {
  const hasWrk = await installed("wrk");
  const hasNginx = await installed("nginx");
  if (!hasWrk) console.log("wrk is not installed (apt-get install wrk): no load rows, only RSS");
  if (!hasNginx) console.log("nginx is not installed (apt-get install nginx): no nginx row");
  console.log(
    `load: wrk -t${LOAD.threads} -c${LOAD.connections} -d${LOAD.seconds}s --latency ` +
      `after a ${WARMUP_SECONDS} s warm-up; ${navigator.hardwareConcurrency} CPUs; ` +
      `deno ${Deno.version.deno}; gateway: ${gatewayArgv().join(" ")}\n`,
  );

  const bare = helloCase("Deno.serve hello (bare)");
  const respond = await gatewayCase("gateway respond", { access: false });
  const bareRow = await measure(bare, hasWrk);
  const respondRow = await measure(respond, hasWrk);
  const loggedRow = await measure(
    await gatewayCase("gateway respond + access log", { access: true }),
    hasWrk,
  );

  const upstream = helloCase("hello upstream");
  const { child: upstreamChild } = await start(upstream);
  let nginxRow: Row = { name: "nginx proxy → hello", skipped: "nginx not installed" };
  let proxyRow: Row;
  try {
    if (hasNginx) nginxRow = await measure(await nginxCase(upstream.port), hasWrk);
    proxyRow = await measure(
      await gatewayCase("gateway proxy → hello", { access: false, upstreamPort: upstream.port }),
      hasWrk,
    );
  } finally {
    await stop(upstreamChild);
  }
  const rows = [bareRow, respondRow, loggedRow, nginxRow, proxyRow];

  const startupMs = { bare: await startupTimes(bare), gateway: await startupTimes(respond) };
  const ratio = (row: Row, baseline: Row) =>
    row.rps && baseline.rps ? Math.round((row.rps / baseline.rps) * 100) / 100 : undefined;
  const ratios = {
    respondVsBare: ratio(respondRow, bareRow),
    proxyVsNginx: ratio(proxyRow, nginxRow),
  };

  printTable(rows);
  const verdict = (value: number | undefined, target: number) =>
    value === undefined
      ? "n/a"
      : `${value.toFixed(2)} (target ≥ ${target}: ${value >= target ? "met" : "below"})`;
  console.log(`\ngateway respond ÷ bare Deno.serve: ${verdict(ratios.respondVsBare, 0.9)}`);
  console.log(`gateway proxy ÷ nginx proxy:       ${verdict(ratios.proxyVsNginx, 0.8)}`);
  console.log(
    `start to first response, median of ${STARTUP_RUNS}: gateway ${median(startupMs.gateway)} ms ${
      JSON.stringify(startupMs.gateway)
    }, bare Deno.serve ${median(startupMs.bare)} ms ${JSON.stringify(startupMs.bare)}`,
  );

  await Deno.mkdir(join(ROOT, ".bench"), { recursive: true });
  await Deno.writeTextFile(
    RESULTS,
    JSON.stringify(
      {
        date: new Date().toISOString(),
        deno: Deno.version.deno,
        cpus: navigator.hardwareConcurrency,
        gateway: gatewayArgv().join(" "),
        load: hasWrk ? { tool: "wrk", ...LOAD, warmupSeconds: WARMUP_SECONDS } : null,
        nginx: hasNginx ? { workerProcesses: 1, upstreamKeepalive: 64 } : null,
        rows,
        ratios,
        startupMs: {
          gateway: { runs: startupMs.gateway, median: median(startupMs.gateway) },
          bare: { runs: startupMs.bare, median: median(startupMs.bare) },
        },
      },
      null,
      2,
    ) + "\n",
  );
  console.log(`\nwrote ${RESULTS}`);
}

for (const signal of ["SIGINT", "SIGTERM"] as const) {
  Deno.addSignalListener(signal, () => cleanUp().finally(() => Deno.exit(130)));
}
try {
  await main();
} finally {
  await cleanUp();
}
