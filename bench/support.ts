/**
 * What the benchmark scripts share: starting and stopping the servers they
 * measure (each its own process, all stopped on exit or interrupt), reading a
 * process's resident memory, driving load with `wrk`, printing a table and
 * writing the results under `.bench/`.
 *
 * ```ts
 * import { runBench, start, stop, wrk } from "./support.ts";
 * await runBench(async () => {
 *   const { child } = await start(["deno", "run", "-A", "server.ts"], {
 *     url: "http://127.0.0.1:8000/",
 *     logFile: "/tmp/server.log",
 *   });
 *   console.log(await wrk("http://127.0.0.1:8000/", { threads: 1, connections: 50, seconds: 3 }));
 *   await stop(child);
 * });
 * ```
 *
 * @module
 */

import { join } from "node:path";

/** Where the scripts write their results: `.bench/` at the repository root. */
export const RESULTS_DIR = join(import.meta.dirname!, "..", ".bench");

/** Processes started through this module and not yet stopped. */
const running = new Set<Deno.ChildProcess>();

/**
 * Resolves after `ms` milliseconds.
 *
 * @example
 * ```ts
 * import { delay } from "./support.ts";
 * await delay(1000);
 * ```
 */
export const delay = (ms: number): Promise<void> =>
  new Promise((resolve) => setTimeout(resolve, ms));

/**
 * The middle value (the upper one of the two middles for an even count).
 *
 * @example
 * ```ts
 * import { median } from "./support.ts";
 * median([3, 1, 2]); // 2
 * ```
 */
export const median = (values: number[]): number =>
  values.toSorted((a, b) => a - b)[values.length >> 1];

/**
 * Whether `command` exists on PATH (its exit code does not matter).
 *
 * @example
 * ```ts
 * import { installed } from "./support.ts";
 * if (!await installed("wrk")) console.log("apt-get install wrk");
 * ```
 */
export async function installed(command: string): Promise<boolean> {
  try {
    await new Deno.Command(command, { args: ["-v"], stdout: "null", stderr: "null" }).output();
    return true;
  } catch (error) {
    if (error instanceof Deno.errors.NotFound) return false;
    throw error;
  }
}

/**
 * Spawns `argv` with its output in `logFile`; `exec` keeps the child's pid
 * the server's (so that /proc/<pid> is the server's own).
 *
 * @example
 * ```ts
 * import { spawn, stop } from "./support.ts";
 * const child = spawn(["sleep", "60"], "/tmp/sleep.log");
 * await stop(child);
 * ```
 */
export function spawn(argv: string[], logFile: string): Deno.ChildProcess {
  const child = new Deno.Command("/bin/sh", {
    args: ["-c", 'exec "$@" >"$0" 2>&1', logFile, ...argv],
    stdin: "null",
  }).spawn();
  running.add(child);
  return child;
}

/**
 * SIGTERM, then SIGKILL after 5 s; resolves once the process is gone.
 *
 * @example
 * ```ts
 * import { spawn, stop } from "./support.ts";
 * await stop(spawn(["sleep", "60"], "/tmp/sleep.log"));
 * ```
 */
export async function stop(child: Deno.ChildProcess): Promise<void> {
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

/** Where {@link start} finds a server ready, and where it keeps its output. */
export interface StartOptions {
  /** Polled until it answers 200. */
  url: string;
  /** The server's stdout and stderr. */
  logFile: string;
}

/**
 * Starts `argv` and polls `url` until it answers 200 (30 s at most); returns
 * the child and the milliseconds from spawn to that answer. A server that
 * exits or never answers is stopped and the error shows the end of its log.
 *
 * @example
 * ```ts
 * import { start, stop } from "./support.ts";
 * const { child, startupMs } = await start(["deno", "run", "-A", "server.ts"], {
 *   url: "http://127.0.0.1:8000/",
 *   logFile: "/tmp/server.log",
 * });
 * console.log(`ready in ${startupMs} ms`);
 * await stop(child);
 * ```
 */
export async function start(
  argv: string[],
  options: StartOptions,
): Promise<{ child: Deno.ChildProcess; startupMs: number }> {
  const began = performance.now();
  const child = spawn(argv, options.logFile);
  let exited = false;
  child.status.then(() => exited = true);
  while (!exited && performance.now() - began < 30_000) {
    try {
      const response = await fetch(options.url);
      await response.body?.cancel();
      if (response.status === 200) return { child, startupMs: performance.now() - began };
    } catch { /* not listening yet */ }
    await delay(5);
  }
  await stop(child);
  const log = await Deno.readTextFile(options.logFile).catch(() => "");
  throw new Error(`${argv.join(" ")} never answered 200 at ${options.url}:\n${log.slice(-2000)}`);
}

/**
 * Resident memory of a process in MiB (one decimal), from /proc.
 *
 * @example
 * ```ts
 * import { rssMiB } from "./support.ts";
 * console.log(`${await rssMiB(Deno.pid)} MiB`);
 * ```
 */
export async function rssMiB(pid: number): Promise<number> {
  const status = await Deno.readTextFile(`/proc/${pid}/status`);
  return Math.round(Number(/^VmRSS:\s+(\d+) kB/m.exec(status)![1]) / 102.4) / 10;
}

/** How hard {@link wrk} loads a server. */
export interface LoadOptions {
  threads: number;
  connections: number;
  seconds: number;
}

/** wrk's figures for one run. */
export interface Load {
  rps: number;
  p50Ms: number;
  p99Ms: number;
  /** Non-2xx responses plus socket errors (connect, read, write, timeout). */
  errors: number;
}

/**
 * Runs `wrk --latency` against `url` and parses its report.
 *
 * @example
 * ```ts
 * import { wrk } from "./support.ts";
 * const { rps, p50Ms, p99Ms } = await wrk("http://127.0.0.1:8000/", {
 *   threads: 1,
 *   connections: 50,
 *   seconds: 10,
 * });
 * ```
 */
export async function wrk(url: string, load: LoadOptions): Promise<Load> {
  const child = new Deno.Command("wrk", {
    args: [
      `-t${load.threads}`,
      `-c${load.connections}`,
      `-d${load.seconds}s`,
      "--latency",
      url,
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

/**
 * Prints rows of cells as aligned columns: the first left-aligned, the others
 * right-aligned. The first row is the header.
 *
 * @example
 * ```ts
 * import { printTable } from "./support.ts";
 * printTable([["server", "rps"], ["hello", "52000"]]);
 * ```
 */
export function printTable(lines: string[][]): void {
  const widths = lines[0].map((_, i) => Math.max(...lines.map((line) => line[i].length)));
  for (const line of lines) {
    console.log(
      line.map((text, i) => i ? text.padStart(widths[i]) : text.padEnd(widths[i]))
        .join("  "),
    );
  }
}

/**
 * Writes `results` as indented JSON to `.bench/<name>.json` and says so.
 *
 * @example
 * ```ts
 * import { writeResults } from "./support.ts";
 * await writeResults("http", { date: new Date().toISOString(), rows: [] });
 * ```
 */
export async function writeResults(name: string, results: unknown): Promise<void> {
  const file = join(RESULTS_DIR, `${name}.json`);
  await Deno.mkdir(RESULTS_DIR, { recursive: true });
  await Deno.writeTextFile(file, JSON.stringify(results, null, 2) + "\n");
  console.log(`\nwrote ${file}`);
}

/**
 * Runs a benchmark's `main`, then stops every process started here and runs
 * `cleanUp` (removing its temporary files), also on SIGINT or SIGTERM (then
 * exiting with 130).
 *
 * @example
 * ```ts
 * import { runBench } from "./support.ts";
 * const dir = await Deno.makeTempDir();
 * await runBench(
 *   async () => console.log("measuring"),
 *   () => Deno.remove(dir, { recursive: true }),
 * );
 * ```
 */
export async function runBench(
  main: () => Promise<void>,
  cleanUp: () => Promise<void> = async () => {},
): Promise<void> {
  const finish = async () => {
    await Promise.all([...running].map(stop));
    await cleanUp().catch(() => {});
  };
  for (const signal of ["SIGINT", "SIGTERM"] as const) {
    Deno.addSignalListener(signal, () => finish().finally(() => Deno.exit(130)));
  }
  try {
    await main();
  } finally {
    await finish();
  }
}
