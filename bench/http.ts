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
import {
  delay,
  installed,
  type Load,
  median,
  printTable,
  rssMiB,
  runBench,
  start as startProcess,
  stop,
  writeResults,
  wrk,
} from "./support.ts";

const ROOT = join(import.meta.dirname!, "..");
const HELLO = join(ROOT, "bench", "servers", "hello.ts");
const LOAD = { threads: 1, connections: 50, seconds: Number(Deno.env.get("BENCH_SECONDS") ?? 10) };
const WARMUP_SECONDS = 3;
const STARTUP_RUNS = 3;

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

const slug = (name: string) => name.replace(/\W+/g, "-");

/** Starts a case and polls it until it answers 200; returns the child and the time that took. */
function start(test: Case): Promise<{ child: Deno.ChildProcess; startupMs: number }> {
  return startProcess(test.argv, {
    url: `http://127.0.0.1:${test.port}/`,
    logFile: join(dir, `${slug(test.name)}.log`),
  });
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
    const url = `http://127.0.0.1:${test.port}/`;
    await wrk(url, { ...LOAD, seconds: WARMUP_SECONDS });
    return { name: test.name, idleRssMiB, ...await wrk(url, LOAD) };
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

function printRows(rows: Row[]): void {
  const cell = (value: number | undefined, digits: number) =>
    value === undefined ? "-" : value.toFixed(digits);
  printTable([
    ["server", "rps", "p50 ms", "p99 ms", "errors", "idle RSS MiB"],
    ...rows.map((row) => [
      row.name,
      row.skipped ? `skipped: ${row.skipped}` : cell(row.rps, 0),
      cell(row.p50Ms, 2),
      cell(row.p99Ms, 2),
      cell(row.errors, 0),
      cell(row.idleRssMiB, 1),
    ]),
  ]);
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

  printRows(rows);
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

  await writeResults("http", {
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
  });
}

await runBench(main, () => Deno.remove(dir, { recursive: true }));
