/**
 * Compares HTTP/1.1 clients for proxying to upstreams: `fetch` (default and
 * with a tuned `Deno.createHttpClient`), `node:http` with a keep-alive agent,
 * undici's `Pool`, and the gateway's own pooled client. The Node clients are
 * measured raw and with their responses turned into web `Response`s, which the
 * proxy needs. The upstream runs in a separate process so that this process's
 * CPU time is the client's alone; every response body is read to the end.
 *
 * ```sh
 * deno run -A bench/upstream_clients.ts                # defaults
 * deno run -A bench/upstream_clients.ts 20000 50 15    # requests, concurrency, seconds per run
 * ```
 *
 * @module
 */

import http from "node:http";
import process from "node:process";
import { Readable } from "node:stream";
import { createHttp1Client } from "../src/upstreams/http1_client.ts";

/** One client under test; each call sends one request and reads the whole response body. */
interface Candidate {
  name: string;
  send(path: string, body: Uint8Array<ArrayBuffer> | null): Promise<void>;
  close(): void | Promise<void>;
}

/** One measured run of one candidate on one scenario. */
interface Result {
  candidate: string;
  scenario: string;
  requests: number;
  failures: number;
  requestsPerSecond: number;
  cpuMicrosPerRequest: number;
}

/** A request shape every candidate is driven with. */
interface Scenario {
  name: string;
  path: string;
  body: Uint8Array<ArrayBuffer> | null;
}

const [TOTAL_REQUESTS, CONCURRENCY, SECONDS_PER_RUN] = [
  Number(Deno.args[0] ?? 20_000),
  Number(Deno.args[1] ?? 50),
  Number(Deno.args[2] ?? 15),
];
const WARMUP_REQUESTS = 2_000;

const SCENARIOS: Scenario[] = [
  { name: "GET 12 B", path: "/hello", body: null },
  { name: "POST 1 KiB", path: "/echo-length", body: new Uint8Array(1024).fill(120) },
  { name: "GET 64 KiB", path: "/large", body: null },
];

/** The upstream: a Deno.serve process on 127.0.0.1 that prints its port. */
const UPSTREAM_SOURCE = `
const large = new Uint8Array(64 * 1024).fill(97);
const server = Deno.serve({ hostname: "127.0.0.1", port: 0, onListen({ port }) { console.log(port); } },
  async (request) => {
    const path = new URL(request.url).pathname;
    if (path === "/large") return new Response(large);
    if (path === "/echo-length") return new Response(String((await request.arrayBuffer()).byteLength));
    return new Response("hello world\\n");
  });
await server.finished;
`;

/** Starts the upstream process and resolves with its port once it listens. */
async function startUpstream(): Promise<{ port: number; process: Deno.ChildProcess }> {
  const child = new Deno.Command(Deno.execPath(), {
    args: ["eval", "--no-lock", UPSTREAM_SOURCE],
    stdout: "piped",
    stderr: "inherit",
  }).spawn();
  const reader = child.stdout.pipeThrough(new TextDecoderStream()).getReader();
  let text = "";
  const deadline = Date.now() + 20_000;
  while (!text.includes("\n") && Date.now() < deadline) {
    const { done, value } = await reader.read();
    if (done) break;
    text += value;
  }
  reader.releaseLock();
  const port = Number(text.trim());
  if (!Number.isInteger(port) || port <= 0) throw new Error(`upstream did not start: ${text}`);
  return { port, process: child };
}

function fetchCandidate(name: string, origin: string, client?: Deno.HttpClient): Candidate {
  return {
    name,
    async send(path, body) {
      const response = await fetch(origin + path, {
        method: body === null ? "GET" : "POST",
        body,
        client,
      });
      await response.arrayBuffer();
    },
    close: () => client?.close(),
  };
}

/**
 * `node:http` with a keep-alive agent. With `asResponse`, each response is
 * turned into the web `Response` the UpstreamClient contract requires.
 */
function nodeHttpCandidate(port: number, asResponse: boolean): Candidate {
  const agent = new http.Agent({ keepAlive: true, maxSockets: CONCURRENCY });
  const receive = (response: http.IncomingMessage, resolve: () => void, reject: () => void) => {
    if (asResponse) {
      toWebResponse(response.statusCode!, response.rawHeaders, response).arrayBuffer()
        .then(() => resolve(), reject);
      return;
    }
    response.on("data", () => {});
    response.on("end", resolve);
    response.on("error", reject);
  };
  return {
    name: asResponse ? "node:http → web Response" : "node:http (raw, no Response)",
    send: (path, body) =>
      new Promise<void>((resolve, reject) => {
        const headers = body === null ? {} : { "content-length": String(body.length) };
        const request = http.request(
          { host: "127.0.0.1", port, path, method: body === null ? "GET" : "POST", agent, headers },
          (response) => receive(response, resolve, reject),
        );
        request.on("error", reject);
        request.end(body ?? undefined);
      }),
    close: () => agent.destroy(),
  };
}

/** undici's Pool; with `asResponse`, each response becomes a web `Response`. */
async function undiciCandidate(origin: string, asResponse: boolean): Promise<Candidate> {
  // A bench-only package: versioned here, not in the runtime import map (see build.ts).
  // deno-lint-ignore no-import-prefix
  const { Pool } = await import("npm:undici@7.30.2");
  const pool = new Pool(origin, { connections: CONCURRENCY, pipelining: 1 });
  return {
    name: asResponse ? "undici Pool → web Response" : "undici Pool (raw, no Response)",
    async send(path, body) {
      const { statusCode, headers, body: responseBody } = await pool.request({
        path,
        method: body === null ? "GET" : "POST",
        body: body ?? undefined,
      });
      if (!asResponse) {
        await responseBody.arrayBuffer();
        return;
      }
      const flat = Object.entries(headers).flatMap(([name, value]) =>
        [value ?? ""].flat().flatMap((item) => [name, item])
      );
      await toWebResponse(statusCode, flat, responseBody).arrayBuffer();
    },
    close: () => pool.close(),
  };
}

/** A web Response from a status, flat [name, value, ...] headers and a Node readable body. */
function toWebResponse(status: number, flatHeaders: string[], body: Readable): Response {
  const headers = new Headers();
  for (let i = 0; i + 1 < flatHeaders.length; i += 2) {
    headers.append(flatHeaders[i], flatHeaders[i + 1]);
  }
  return new Response(Readable.toWeb(body) as ReadableStream<Uint8Array>, { status, headers });
}

function http1Candidate(origin: string): Candidate {
  const client = createHttp1Client({ maxIdlePerOrigin: CONCURRENCY });
  return {
    name: "http1_client (Deno.connect)",
    async send(path, body) {
      const headers = new Headers();
      if (body !== null) headers.set("content-length", String(body.length));
      const response = await client.request({
        url: new URL(origin + path),
        method: body === null ? "GET" : "POST",
        headers,
        body: body === null ? null : new Response(body).body,
        connectTimeout: 5_000,
        responseTimeout: 30_000,
      });
      await response.arrayBuffer();
    },
    close: () => client.close(),
  };
}

/** Sends `total` requests (or as many as fit before `deadline`) with `concurrency` in flight. */
async function drive(
  candidate: Candidate,
  scenario: Scenario,
  total: number,
  deadline: number,
): Promise<{ completed: number; failures: number }> {
  let issued = 0;
  let completed = 0;
  let failures = 0;
  const worker = async () => {
    while (issued < total && performance.now() < deadline) {
      issued++;
      try {
        await candidate.send(scenario.path, scenario.body);
        completed++;
      } catch {
        failures++;
      }
    }
  };
  await Promise.all(Array.from({ length: CONCURRENCY }, worker));
  return { completed, failures };
}

async function measure(candidate: Candidate, scenario: Scenario): Promise<Result> {
  await drive(candidate, scenario, WARMUP_REQUESTS, performance.now() + 5_000);
  const cpuBefore = process.cpuUsage();
  const started = performance.now();
  const { completed, failures } = await drive(
    candidate,
    scenario,
    TOTAL_REQUESTS,
    started + SECONDS_PER_RUN * 1000,
  );
  const seconds = (performance.now() - started) / 1000;
  const cpu = process.cpuUsage(cpuBefore);
  return {
    candidate: candidate.name,
    scenario: scenario.name,
    requests: completed,
    failures,
    requestsPerSecond: completed / seconds,
    cpuMicrosPerRequest: (cpu.user + cpu.system) / Math.max(1, completed),
  };
}

function printTable(results: Result[]): void {
  for (const scenario of SCENARIOS) {
    const rows = results.filter((result) => result.scenario === scenario.name);
    const best = Math.max(...rows.map((row) => row.requestsPerSecond));
    console.log(`\n${scenario.name}, ${CONCURRENCY} in flight`);
    console.log("| client | requests | failures | req/s | CPU µs/req | × best req/s |");
    console.log("| --- | ---: | ---: | ---: | ---: | ---: |");
    for (const row of rows) {
      console.log(
        `| ${row.candidate} | ${row.requests} | ${row.failures} | ${
          row.requestsPerSecond.toFixed(0)
        } | ${row.cpuMicrosPerRequest.toFixed(1)} | ${(row.requestsPerSecond / best).toFixed(2)} |`,
      );
    }
  }
}

async function main(): Promise<void> {
  const upstream = await startUpstream();
  const origin = `http://127.0.0.1:${upstream.port}`;
  const makers: (() => Candidate | Promise<Candidate>)[] = [
    () => fetchCandidate("fetch (default client)", origin),
    () =>
      fetchCandidate(
        "fetch + tuned createHttpClient",
        origin,
        Deno.createHttpClient({ http2: false, http1: true, poolMaxIdlePerHost: CONCURRENCY }),
      ),
    () => nodeHttpCandidate(upstream.port, false),
    () => nodeHttpCandidate(upstream.port, true),
    () => undiciCandidate(origin, false),
    () => undiciCandidate(origin, true),
    () => http1Candidate(origin),
  ];
  const results: Result[] = [];
  try {
    for (const scenario of SCENARIOS) {
      for (const make of makers) {
        const candidate = await make();
        try {
          const result = await measure(candidate, scenario);
          console.error(
            `${scenario.name} ${result.candidate}: ${result.requestsPerSecond.toFixed(0)} req/s`,
          );
          results.push(result);
        } finally {
          await candidate.close();
        }
      }
    }
  } finally {
    upstream.process.kill("SIGTERM");
    await upstream.process.status;
  }
  console.log(
    `\n${navigator.hardwareConcurrency} CPUs, Deno ${Deno.version.deno}, ` +
      `${TOTAL_REQUESTS} requests per run (after ${WARMUP_REQUESTS} warm-up), ` +
      `at most ${SECONDS_PER_RUN} s per run; upstream: Deno.serve in another process`,
  );
  printTable(results);
}

if (import.meta.main) await main();
