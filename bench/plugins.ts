/**
 * Plugin benchmark, through the real gateway process on loopback, in one run:
 *
 * 1. Hook cost: one gateway serves the same `respond` route three times, with
 *    0 (the baseline: no plugin stage at all), 1 and 3 sandboxed no-op
 *    plugins (an `onRequest` that returns nothing). wrk loads each after a
 *    warm-up (rps, p50, p99, ratios to the baseline), and a sequential client
 *    (one keep-alive connection, one request at a time, the cases
 *    interleaved) gives the unloaded median, since wrk's p50 at 50
 *    connections is mostly queueing. Added latency per hook is
 *    `(p50 with n − p50 with 0) / n`.
 * 2. Hot reload: a fresh gateway with `plugins.debounce` set to
 *    {@link DEBOUNCE_MS} ms; each save writes a new version of a plugin whose
 *    `onResponse` stamps its version in a header, and a tight request loop
 *    times how long until the new version answers. The figure is that time
 *    minus the debounce, median over {@link SAVES} saves.
 * 3. Memory: another fresh gateway, RSS (/proc/<pid>/status VmRSS) after the
 *    first `POST /plugins/:name/reload` and after {@link RELOADS} of them,
 *    with the main isolate's used JS heap from /metrics beside it (what the
 *    host itself keeps, apart from the native memory of Workers come and gone).
 *
 * The save is timed from when the write of the file returns; the sequential
 * client runs in this process over one keep-alive connection (Deno's fetch).
 *
 * Prints the figures and writes them to `.bench/plugins.json`.
 *
 * ```sh
 * deno task bench plugins                  # via bench/main.ts
 * BENCH_SECONDS=3 deno task bench plugins  # shorter wrk runs (default 10 s)
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
  start,
  stop,
  writeResults,
  wrk,
} from "./support.ts";

const LOAD = { threads: 1, connections: 50, seconds: Number(Deno.env.get("BENCH_SECONDS") ?? 10) };
const WARMUP_SECONDS = 3;
/** Plugin counts on the measured route; 0 is the baseline. */
const COUNTS = [0, 1, 3];
/** Sequential requests per case, after as many again per case to warm up. */
const SEQUENTIAL = 2000;
const DEBOUNCE_MS = 50;
const SAVES = 20;
const RELOADS = 1000;
/** A save that has not served after this long fails the run. */
const SAVE_TIMEOUT_MS = 10_000;
const ADMIN_TOKEN = "bench-admin-token-0123456789";
const GOAL_HOOK_US = 25;
const GOAL_RELOAD_MS = 100;

const NOOP = (name: string) => `export default { name: "${name}", onRequest() {} };\n`;
const STAMP = (version: number) =>
  `export default {
  name: "stamp",
  version: "1.0.${version}",
  onResponse(res) {
    return { headers: { ...res.headers, "x-version": "${version}" } };
  },
};
`;

/** A gateway started in its own directory, with its config and plugins there. */
interface Gateway {
  child: Deno.ChildProcess;
  dir: string;
  port: number;
  admin(path: string, init?: RequestInit): Promise<Response>;
}

/** One row of the hook-cost table. */
interface HookRow extends Partial<Load> {
  plugins: number;
  /** Sequential client: median and p99 of single-request round trips, µs. */
  sequentialP50Us: number;
  sequentialP99Us: number;
}

/** Per plugin, the host's own p50 and p99 of its recent hook round trips (GET /plugins), ms. */
type HostHookTimes = Record<string, { p50Ms: number; p99Ms: number }>;

const dir = await Deno.makeTempDir({ prefix: "bench-plugins-" });
const noopNames = Array.from({ length: Math.max(...COUNTS) }, (_, i) => `noop-${i + 1}`);
const pathOf = (plugins: number) => `/plugins-${plugins}`;

/**
 * Writes `plugins` (name → source) and a config with `routes` into
 * `dir/name`, starts the gateway there and waits until `probe` answers 200.
 */
async function startGateway(
  name: string,
  plugins: Record<string, string>,
  routes: Record<string, unknown>[],
  probe: string,
): Promise<Gateway> {
  const home = join(dir, name);
  await Deno.mkdir(join(home, "plugins"), { recursive: true });
  for (const [plugin, source] of Object.entries(plugins)) {
    await Deno.writeTextFile(join(home, "plugins", `${plugin}.ts`), source);
  }
  const port = freePort();
  const adminPort = freePort();
  const config = {
    listeners: { web: { type: "http", host: "127.0.0.1", port } },
    routes,
    plugins: { dir: "plugins", debounce: DEBOUNCE_MS },
    admin: { host: "127.0.0.1", port: adminPort, token: ADMIN_TOKEN },
    log: { level: "info", format: "json", access: false },
  };
  const file = join(home, "config.json");
  await Deno.writeTextFile(file, JSON.stringify(config, null, 2));
  const { child } = await start([...gatewayArgv(), "run", "--config", file], {
    url: `http://127.0.0.1:${port}${probe}`,
    logFile: join(home, "gateway.log"),
  });
  return {
    child,
    dir: home,
    port,
    admin: (path, init = {}) =>
      fetch(`http://127.0.0.1:${adminPort}${path}`, {
        ...init,
        headers: { authorization: `Bearer ${ADMIN_TOKEN}`, ...init.headers },
      }),
  };
}

const micros = (ms: number) => Math.round(ms * 1000);

/** The `q` quantile (0..1) of `values`. */
function quantile(values: number[], q: number): number {
  const sorted = values.toSorted((a, b) => a - b);
  return sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))];
}

/**
 * One request at a time over one keep-alive connection, the cases
 * interleaved so that drift in the machine's load hits them alike; returns
 * the round trips in ms per case.
 */
async function sequentialTimes(port: number, count: number): Promise<Map<number, number[]>> {
  const times = new Map(COUNTS.map((n) => [n, [] as number[]]));
  for (let i = 0; i < 2 * count; i++) {
    for (const n of COUNTS) {
      const began = performance.now();
      const response = await fetch(`http://127.0.0.1:${port}${pathOf(n)}`);
      await response.arrayBuffer();
      const ms = performance.now() - began;
      if (response.status !== 200) throw new Error(`${pathOf(n)} answered ${response.status}`);
      if (i >= count) times.get(n)!.push(ms);
    }
  }
  return times;
}

/** The host's hook timings of the no-op plugins, over each one's latest 1024 hooks. */
async function hostHookTimes(gateway: Gateway): Promise<HostHookTimes> {
  const plugins = await (await gateway.admin("/plugins")).json() as {
    name: string;
    p50: number;
    p99: number;
  }[];
  return Object.fromEntries(
    plugins.filter((p) => noopNames.includes(p.name))
      .map((p) => [p.name, { p50Ms: p.p50, p99Ms: p.p99 }]),
  );
}

/**
 * Part 1: rps, p50, p99 and sequential round trips with 0, 1 and 3 no-op
 * plugins, and the host's own hook timings after the wrk runs (the last one
 * being with 3 plugins) and after the sequential one.
 */
async function hookCost(
  hasWrk: boolean,
): Promise<{ rows: HookRow[]; hostAfterWrk?: HostHookTimes; hostSequential: HostHookTimes }> {
  const gateway = await startGateway(
    "hooks",
    Object.fromEntries(noopNames.map((name) => [name, NOOP(name)])),
    COUNTS.map((n) => ({
      name: `plugins-${n}`,
      match: { path: pathOf(n) },
      ...(n > 0 ? { plugins: noopNames.slice(0, n) } : {}),
      target: { respond: { body: "Hello, world!\n" } },
    })),
    pathOf(Math.max(...COUNTS)),
  );
  try {
    const loads = new Map<number, Load>();
    if (hasWrk) {
      for (const n of COUNTS) {
        const url = `http://127.0.0.1:${gateway.port}${pathOf(n)}`;
        await wrk(url, { ...LOAD, seconds: WARMUP_SECONDS });
        loads.set(n, await wrk(url, LOAD));
      }
    }
    const hostAfterWrk = hasWrk ? await hostHookTimes(gateway) : undefined;
    const sequential = await sequentialTimes(gateway.port, SEQUENTIAL);
    const rows = COUNTS.map((n) => ({
      plugins: n,
      ...loads.get(n),
      sequentialP50Us: micros(median(sequential.get(n)!)),
      sequentialP99Us: micros(quantile(sequential.get(n)!, 0.99)),
    }));
    return { rows, hostAfterWrk, hostSequential: await hostHookTimes(gateway) };
  } finally {
    await stop(gateway.child);
  }
}

/** Part 2: ms from each save until its version answers, minus the debounce. */
async function saveToServe(): Promise<{ times: number[]; polls: number; failures: number }> {
  const gateway = await startGateway(
    "reload",
    { stamp: STAMP(0) },
    [{ match: { path: "/*" }, plugins: ["stamp"], target: { respond: { body: "ok" } } }],
    "/",
  );
  const file = join(gateway.dir, "plugins", "stamp.ts");
  const url = `http://127.0.0.1:${gateway.port}/`;
  const times: number[] = [];
  let polls = 0;
  let failures = 0;
  try {
    for (let version = 1; version <= SAVES; version++) {
      await Deno.writeTextFile(file, STAMP(version));
      const saved = performance.now();
      while (true) {
        const response = await fetch(url);
        await response.arrayBuffer();
        polls++;
        if (response.status !== 200) failures++;
        if (response.headers.get("x-version") === String(version)) break;
        if (performance.now() - saved > SAVE_TIMEOUT_MS) {
          const log = await Deno.readTextFile(join(gateway.dir, "gateway.log"));
          throw new Error(`version ${version} not served after ${SAVE_TIMEOUT_MS} ms:\n${log}`);
        }
      }
      times.push(Math.round((performance.now() - saved - DEBOUNCE_MS) * 10) / 10);
      // Let the replaced version drain and end before the next save.
      await delay(250);
    }
    return { times, polls, failures };
  } finally {
    await stop(gateway.child);
  }
}

/** The gateway's RSS (from /proc) and its main isolate's used JS heap (from /metrics), MiB. */
interface Memory {
  rssMiB: number;
  heapUsedMiB: number;
}

async function memoryOf(gateway: Gateway): Promise<Memory> {
  const metrics = await (await gateway.admin("/metrics")).text();
  const heap = /^gateway_process_memory_bytes\{kind="heap_used"\} (\d+)/m.exec(metrics);
  if (!heap) throw new Error('/metrics has no gateway_process_memory_bytes{kind="heap_used"}');
  return {
    rssMiB: await rssMiB(gateway.child.pid),
    heapUsedMiB: Math.round(Number(heap[1]) / 2 ** 20 * 10) / 10,
  };
}

/**
 * Part 3: memory at start, after the first admin reload, after {@link RELOADS}
 * and 2 s later; and how long each `POST /plugins/:name/reload` took.
 */
async function reloadMemory() {
  const gateway = await startGateway(
    "memory",
    { stamp: STAMP(0) },
    [{ match: { path: "/*" }, plugins: ["stamp"], target: { respond: { body: "ok" } } }],
    "/",
  );
  const reloadMs: number[] = [];
  const reload = async () => {
    const began = performance.now();
    const response = await gateway.admin("/plugins/stamp/reload", { method: "POST" });
    await response.arrayBuffer();
    if (response.status !== 200) throw new Error(`reload answered ${response.status}`);
    reloadMs.push(performance.now() - began);
  };
  try {
    const start = await memoryOf(gateway);
    await reload();
    const first = await memoryOf(gateway);
    for (let i = 1; i < RELOADS; i++) await reload();
    const last = await memoryOf(gateway);
    // Replaced versions drain and end in the background.
    await delay(2000);
    const settled = await memoryOf(gateway);
    const check = await fetch(`http://127.0.0.1:${gateway.port}/`);
    await check.arrayBuffer();
    if (check.headers.get("x-version") !== "0") {
      throw new Error(`after ${RELOADS} reloads the route answered ${check.status} unstamped`);
    }
    return {
      start,
      first,
      last,
      settled,
      reloadMedianMs: Math.round(median(reloadMs) * 10) / 10,
      reloadP99Ms: Math.round(quantile(reloadMs, 0.99) * 10) / 10,
    };
  } finally {
    await stop(gateway.child);
  }
}

function printHooks(rows: HookRow[]): void {
  const baseline = rows.find((row) => row.plugins === 0)!;
  const cell = (value: number | undefined, digits: number) =>
    value === undefined ? "-" : value.toFixed(digits);
  const ratio = (value: number | undefined, base: number | undefined) =>
    value === undefined || !base ? "-" : (value / base).toFixed(2);
  printTable([
    [
      "respond route",
      "rps",
      "÷ base",
      "p50 ms",
      "÷ base",
      "p99 ms",
      "errors",
      "seq p50 µs",
      "seq p99 µs",
    ],
    ...rows.map((row) => [
      row.plugins === 0
        ? "0 plugins (baseline)"
        : `${row.plugins} no-op plugin${row.plugins > 1 ? "s" : ""}`,
      cell(row.rps, 0),
      ratio(row.rps, baseline.rps),
      cell(row.p50Ms, 2),
      ratio(row.p50Ms, baseline.p50Ms),
      cell(row.p99Ms, 2),
      cell(row.errors, 0),
      String(row.sequentialP50Us),
      String(row.sequentialP99Us),
    ]),
  ]);
}

/** `(p50 with n − p50 with none) / n` in µs, for wrk and for the sequential client. */
function perHook(rows: HookRow[]) {
  const baseline = rows.find((row) => row.plugins === 0)!;
  return rows.filter((row) => row.plugins > 0).map((row) => ({
    plugins: row.plugins,
    wrkUs: row.p50Ms === undefined || baseline.p50Ms === undefined
      ? undefined
      : Math.round((row.p50Ms - baseline.p50Ms) * 1000 / row.plugins),
    sequentialUs: Math.round((row.sequentialP50Us - baseline.sequentialP50Us) / row.plugins),
  }));
}

async function main(): Promise<void> {
  const hasWrk = await installed("wrk");
  if (!hasWrk) console.log("wrk is not installed (apt-get install wrk): no load columns");
  console.log(
    `load: wrk -t${LOAD.threads} -c${LOAD.connections} -d${LOAD.seconds}s --latency ` +
      `after a ${WARMUP_SECONDS} s warm-up; sequential: ${SEQUENTIAL} fetches per case over ` +
      `keep-alive after ${SEQUENTIAL} to warm up; ${navigator.hardwareConcurrency} CPUs; ` +
      `deno ${Deno.version.deno}; gateway: ${gatewayArgv().join(" ")}\n`,
  );

  const { rows, hostAfterWrk, hostSequential } = await hookCost(hasWrk);
  printHooks(rows);
  const hooks = perHook(rows);
  for (const { plugins, wrkUs, sequentialUs } of hooks) {
    const verdict = (us: number | undefined) =>
      us === undefined ? "n/a" : `${us} µs (${us <= GOAL_HOOK_US ? "met" : "over"})`;
    console.log(
      `added per hook at p50 with ${plugins}: sequential ${verdict(sequentialUs)}, ` +
        `wrk -c${LOAD.connections} ${verdict(wrkUs)}; goal ≤ ${GOAL_HOOK_US} µs`,
    );
  }
  const describe = (times: HostHookTimes | undefined) =>
    times
      ? Object.entries(times).map(([name, q]) => `${name} ${q.p50Ms}/${q.p99Ms}`).join(", ")
      : "n/a";
  console.log(
    `host-measured hook round trip, p50/p99 ms (GET /plugins): after wrk with 3 plugins ` +
      `${describe(hostAfterWrk)}; sequential ${describe(hostSequential)}`,
  );

  const saves = await saveToServe();
  const saveMedian = median(saves.times);
  console.log(
    `\nsave → new version serving, minus the ${DEBOUNCE_MS} ms debounce (plugins.debounce), ` +
      `median of ${SAVES}: ${saveMedian} ms (goal ≤ ${GOAL_RELOAD_MS} ms: ` +
      `${saveMedian <= GOAL_RELOAD_MS ? "met" : "over"}); min ${Math.min(...saves.times)}, ` +
      `max ${Math.max(...saves.times)}; ${saves.polls} polls, ${saves.failures} non-200`,
  );

  const memory = await reloadMemory();
  const shown = (m: Memory) => `RSS ${m.rssMiB} MiB (JS heap ${m.heapUsedMiB})`;
  console.log(
    `\nat start ${shown(memory.start)}; after the first reload ${shown(memory.first)}; ` +
      `after ${RELOADS} reloads ${shown(memory.last)}, RSS × ${
        (memory.last.rssMiB / memory.first.rssMiB).toFixed(2)
      }; 2 s later ${shown(memory.settled)}`,
  );
  console.log(
    `POST /plugins/stamp/reload: median ${memory.reloadMedianMs} ms, p99 ${memory.reloadP99Ms} ms`,
  );

  await writeResults("plugins", {
    date: new Date().toISOString(),
    deno: Deno.version.deno,
    cpus: navigator.hardwareConcurrency,
    gateway: gatewayArgv().join(" "),
    load: hasWrk ? { tool: "wrk", ...LOAD, warmupSeconds: WARMUP_SECONDS } : null,
    sequential: { requests: SEQUENTIAL, warmup: SEQUENTIAL },
    hooks: { rows, perHookP50Us: hooks, goalUs: GOAL_HOOK_US, hostAfterWrk, hostSequential },
    saveToServe: {
      debounceMs: DEBOUNCE_MS,
      saves: SAVES,
      msAfterDebounce: saves.times,
      medianMs: saveMedian,
      polls: saves.polls,
      failures: saves.failures,
      goalMs: GOAL_RELOAD_MS,
    },
    reloadMemory: { reloads: RELOADS, ...memory },
  });
}

await runBench(main, () => Deno.remove(dir, { recursive: true }));
