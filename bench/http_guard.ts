/**
 * What the HTTP guard costs: the gateway answering from a `respond` route on
 * a loopback listener with the guard off (the default there) and forced on
 * (`guard: true`, as on any other address), each its own process, loaded by
 * `wrk` on keep-alive connections after a warm-up; and the guarded HTTPS
 * listener, for scale. Prints rps, p50, p99 and the guarded ÷ unguarded
 * ratio, and writes them to `.bench/http_guard.json`.
 *
 * ```sh
 * deno task bench http_guard
 * BENCH_SECONDS=5 deno task bench http_guard
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
  printTable,
  runBench,
  start,
  stop,
  writeResults,
  wrk,
} from "./support.ts";

const LOAD = { threads: 1, connections: 50, seconds: Number(Deno.env.get("BENCH_SECONDS") ?? 10) };
const WARMUP_SECONDS = 3;

const dir = await Deno.makeTempDir({ prefix: "bench-http-guard-" });

/** A self-signed certificate for 127.0.0.1, written into the bench directory. */
async function certificate(): Promise<{ cert: string; key: string }> {
  const [cert, key] = [join(dir, "cert.pem"), join(dir, "key.pem")];
  const made = await new Deno.Command("openssl", {
    args: [
      ...["req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"],
      ...["-keyout", key, "-out", cert, "-days", "2", "-subj", "/CN=localhost"],
      ...[
        "-addext",
        "subjectAltName=IP:127.0.0.1",
        "-addext",
        "basicConstraints=critical,CA:FALSE",
      ],
    ],
    stdout: "null",
    stderr: "null",
  }).output();
  if (!made.success) throw new Error("openssl could not make a certificate");
  return { cert, key };
}

/** Starts the gateway with one listener (`extra` settings), loads it and stops it. */
async function measure(name: string, extra: Record<string, unknown>): Promise<Load> {
  const port = freePort();
  const config = {
    listeners: { web: { type: "http", host: "127.0.0.1", port, ...extra } },
    routes: [{ name: "hello", match: { path: "/*" }, target: { respond: { body: "Hello!\n" } } }],
    admin: { host: "127.0.0.1", port: freePort() },
    log: { level: "warning", format: "json", access: false },
  };
  const file = join(dir, `${name.replace(/\W+/g, "-")}.json`);
  await Deno.writeTextFile(file, JSON.stringify(config));
  const scheme = extra.tls ? "https" : "http";
  const url = `${scheme}://127.0.0.1:${port}/`;
  const { child } = await start([...gatewayArgv(), "run", "--config", file], {
    url: `http://127.0.0.1:${config.admin.port}/readyz`,
    logFile: `${file}.log`,
  });
  try {
    await delay(500);
    await wrk(url, { ...LOAD, seconds: WARMUP_SECONDS });
    return await wrk(url, LOAD);
  } finally {
    await stop(child);
  }
}

async function main(): Promise<void> {
  if (!await installed("wrk")) {
    console.log("wrk is not installed (apt-get install wrk): nothing to measure");
    return;
  }
  console.log(
    `load: wrk -t${LOAD.threads} -c${LOAD.connections} -d${LOAD.seconds}s --latency after a ` +
      `${WARMUP_SECONDS} s warm-up; ${navigator.hardwareConcurrency} CPUs; deno ${Deno.version.deno}\n`,
  );
  const rows: [string, Load][] = [];
  rows.push(["respond, guard off", await measure("off", { guard: false })]);
  rows.push(["respond, guard on", await measure("on", { guard: true })]);
  rows.push(["respond, HTTPS (guard)", await measure("https", { tls: await certificate() })]);
  printTable([
    ["listener", "rps", "p50 ms", "p99 ms", "errors"],
    ...rows.map(([name, load]) => [
      name,
      load.rps.toFixed(0),
      load.p50Ms.toFixed(2),
      load.p99Ms.toFixed(2),
      String(load.errors),
    ]),
  ]);
  const ratio = rows[1][1].rps / rows[0][1].rps;
  console.log(`\nguard on ÷ guard off: ${ratio.toFixed(2)}`);
  await writeResults("http_guard", {
    date: new Date().toISOString(),
    load: LOAD,
    rows: Object.fromEntries(rows),
    ratio,
  });
}

await runBench(main, () => Deno.remove(dir, { recursive: true }));
