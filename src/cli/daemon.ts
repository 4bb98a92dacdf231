/**
 * `gateway start`, `stop` and `restart`: the gateway as a background
 * service, with a pid file and a log file in its data directory.
 *
 * Deno cannot fork, so `start` spawns `gateway run` (the same executable and
 * flags, {@link selfCommand}) as a detached child whose stdout and stderr
 * `/bin/sh` opens on the log file before it execs the gateway; the child's pid
 * is the gateway's. The pid file says `<pid> starting` until the gateway has
 * bound every listener and started every module, when it writes its pid alone.
 *
 * @module
 */

import { dirname } from "node:path";
import { ConfigError } from "../config/load.ts";
import { claimSocketPath } from "../listeners/unix_socket.ts";
import { loadGatewayConfig } from "../sections.ts";
import { adminCall, adminUrlInLog, type Installation, locate } from "./installation.ts";
import { lastLines, rotateLog } from "./log_file.ts";
import { processAlive, readPidFile } from "./pid_file.ts";
import { selfCommand } from "./self.ts";
import { statusProblems } from "./status.ts";

/** How `gateway start` runs the daemon. */
export interface StartOptions {
  /** How long to wait for `/readyz` (milliseconds). */
  timeoutMs: number;
  /** The log file's size at which it is rotated (bytes). */
  logSize: number;
}

/** How `gateway stop` stops it. */
export interface StopOptions {
  /** How long the drain may take before SIGKILL (milliseconds). */
  timeoutMs: number;
}

/** The exit codes of `gateway stop`. */
export const STOP_EXIT = { stopped: 0, killed: 1, cannotSignal: 4 } as const;

const POLL_MS = 100;
const TAIL_LINES = 20;

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

/** Whether a file or socket is at `path`. */
const exists = (path: string) => Deno.lstat(path).then(() => true, () => false);

/** What the log file holds from byte `offset` on. */
async function logSince(file: string, offset: number): Promise<string> {
  const bytes = await Deno.readFile(file).catch(() => new Uint8Array());
  return new TextDecoder().decode(bytes.subarray(offset));
}

/** Waits until `pid` is gone or `timeoutMs` passed; true when it is gone. */
async function waitGone(pid: number, timeoutMs: number): Promise<boolean> {
  const deadline = Date.now() + timeoutMs;
  while (processAlive(pid)) {
    if (Date.now() >= deadline) return false;
    await sleep(POLL_MS);
  }
  return true;
}

/** Removes the pid file when it still names `pid`. */
async function removePidFile(file: string, pid: number): Promise<void> {
  const text = await Deno.readTextFile(file).catch(() => "");
  if (Number(/^\s*(\d+)/.exec(text)?.[1]) === pid) await Deno.remove(file).catch(() => {});
}

/**
 * Refuses when the pid file names a live gateway; removes a stale pid file and
 * the stale Unix socket files of the config's listeners. Returns the lines to
 * print on refusal, or undefined to go on.
 */
async function clearTheWay(
  gateway: Installation,
  unixSockets: [string, string][],
): Promise<string[] | undefined> {
  const found = await readPidFile(gateway.pidFile);
  if (found.state === "live") {
    return [
      `gateway start: already running (pid ${found.pid}, pid file ${gateway.pidFile}); ` +
      "'gateway restart' restarts it",
    ];
  }
  if (found.state === "stale") {
    await Deno.remove(gateway.pidFile);
    console.log(`removed a stale pid file (pid ${found.pid} is not running)`);
  }
  for (const [label, path] of unixSockets) {
    const existed = await exists(path);
    try {
      await claimSocketPath(path, label);
    } catch (error) {
      return [`gateway start: ${(error as Error).message}`];
    }
    if (existed) console.log(`removed a stale socket file ${path} (${label})`);
  }
}

/**
 * `gateway start`: validates the config, starts the daemon and waits until it
 * is ready. On failure (a bad config, a port in use, not ready in time) says
 * what failed, leaves no daemon behind and returns 1.
 *
 * @example
 * ```ts
 * import { startDaemon } from "./daemon.ts";
 * const code = await startDaemon("config/config.json", { timeoutMs: 30_000, logSize: 10 << 20 });
 * ```
 */
export async function startDaemon(configPath: string, options: StartOptions): Promise<number> {
  let unixSockets: [string, string][];
  try {
    const { config } = await loadGatewayConfig(configPath);
    unixSockets = Object.entries(config.listeners).flatMap(([name, listener]) =>
      listener.type === "unix" ? [[`listener "${name}"`, listener.path] as [string, string]] : []
    );
  } catch (error) {
    const problems = error instanceof ConfigError ? error.problems : [(error as Error).message];
    for (const line of [...problems, "gateway start: not started: the config has problems"]) {
      console.error(line);
    }
    return 1;
  }
  let gateway = await locate(configPath, {});
  await Deno.mkdir(gateway.dataDir, { recursive: true });
  // The admin token the gateway generates into a new data directory, made now.
  if (!gateway.token) gateway = await locate(configPath, {});
  const refusal = await clearTheWay(gateway, unixSockets);
  if (refusal) {
    for (const line of refusal) console.error(line);
    return 1;
  }
  await rotateLog(gateway.logFile, options.logSize);
  const offset = await Deno.stat(gateway.logFile).then((info) => info.size, () => 0);
  const argv = [
    ...selfCommand(),
    ...["run", "--config", gateway.configFile],
    ...["--log-file", gateway.logFile, "--log-size", String(options.logSize)],
  ];
  const child = new Deno.Command("/bin/sh", {
    args: ["-c", 'exec "$@" >>"$0" 2>&1', gateway.logFile, ...argv],
    cwd: dirname(gateway.configFile),
    stdin: "null",
    stdout: "null",
    stderr: "null",
    detached: true,
  }).spawn();
  child.unref();
  const pid = child.pid;
  await Deno.writeTextFile(gateway.pidFile, `${pid} starting\n`);
  let exit: Deno.CommandStatus | undefined;
  child.status.then((status) => exit = status);

  const deadline = Date.now() + options.timeoutMs;
  let adminUrl = gateway.adminUrlFromLog ? undefined : gateway.adminUrl;
  while (Date.now() < deadline && !exit) {
    if (gateway.adminUrlFromLog) adminUrl = adminUrlInLog(await logSince(gateway.logFile, offset));
    const pidText = await Deno.readTextFile(gateway.pidFile).catch(() => "");
    if (!pidText.includes("starting") && processAlive(pid)) {
      const ready = !gateway.adminEnabled || await fetch(`${adminUrl}/readyz`).then(
        async (response) => (await response.body?.cancel(), response.ok),
        () => false,
      );
      if (ready) {
        console.log(
          `gateway started (pid ${pid}); log ${gateway.logFile}` +
            (gateway.adminEnabled ? `; admin API ${adminUrl}` : ""),
        );
        return 0;
      }
    }
    await sleep(POLL_MS);
  }

  const lines: string[] = [];
  if (exit) {
    lines.push(
      `gateway start: the gateway (pid ${pid}) exited while starting (exit code ${exit.code})`,
    );
  } else {
    lines.push(
      `gateway start: not ready after ${options.timeoutMs / 1000}s; stopping it (pid ${pid})`,
    );
    if (adminUrl) {
      const problems = await adminCall({ ...gateway, adminUrl }, "GET", "/status").then(
        statusProblems,
        (error) => [`admin API: ${(error as Error).message}`],
      );
      lines.push(...problems.map((problem) => `  ${problem}`));
    }
    try {
      Deno.kill(pid, "SIGTERM");
      if (!await waitGone(pid, 5000)) Deno.kill(pid, "SIGKILL");
    } catch { /* it exited meanwhile */ }
    await waitGone(pid, 5000);
  }
  const tail = lastLines(await logSince(gateway.logFile, offset), TAIL_LINES).trimEnd();
  lines.push(tail ? `the log (${gateway.logFile}) ends with:\n${tail}` : "the log is empty");
  await removePidFile(gateway.pidFile, pid);
  for (const line of lines) console.error(line);
  return 1;
}

/**
 * `gateway stop`: SIGTERM to the pid file's gateway, which stops accepting and
 * drains; SIGKILL when it is still there after `timeoutMs`. Returns
 * {@link STOP_EXIT}: 0 stopped after draining (or not running), 1 killed, 4
 * not allowed to signal it.
 *
 * @example
 * ```ts
 * import { stopDaemon } from "./daemon.ts";
 * const code = await stopDaemon("config/config.json", { timeoutMs: 30_000 });
 * ```
 */
export async function stopDaemon(configPath: string, options: StopOptions): Promise<number> {
  const gateway = await locate(configPath, {});
  const found = await readPidFile(gateway.pidFile);
  if (found.state !== "live") {
    if (found.state === "stale") await Deno.remove(gateway.pidFile).catch(() => {});
    console.log(
      found.state === "stale"
        ? `not running (removed a stale pid file: pid ${found.pid} is not running)`
        : "not running",
    );
    return STOP_EXIT.stopped;
  }
  try {
    Deno.kill(found.pid, "SIGTERM");
  } catch (error) {
    console.error(`gateway stop: cannot signal pid ${found.pid}: ${(error as Error).message}`);
    return STOP_EXIT.cannotSignal;
  }
  if (await waitGone(found.pid, options.timeoutMs)) {
    console.log(`stopped (pid ${found.pid})`);
    return STOP_EXIT.stopped;
  }
  try {
    Deno.kill(found.pid, "SIGKILL");
  } catch { /* it exited just now */ }
  await waitGone(found.pid, 5000);
  await removePidFile(gateway.pidFile, found.pid);
  console.error(
    `gateway stop: pid ${found.pid} did not stop within ${
      options.timeoutMs / 1000
    }s; killed it (SIGKILL)`,
  );
  return STOP_EXIT.killed;
}

/**
 * `gateway restart`: stop (when running), then start.
 *
 * @example
 * ```ts
 * import { restartDaemon } from "./daemon.ts";
 * const code = await restartDaemon("config/config.json", { timeoutMs: 30_000, logSize: 10 << 20 });
 * ```
 */
export async function restartDaemon(configPath: string, options: StartOptions): Promise<number> {
  const stopped = await stopDaemon(configPath, options);
  return stopped === STOP_EXIT.cannotSignal ? stopped : await startDaemon(configPath, options);
}
