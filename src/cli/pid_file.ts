/**
 * The gateway's pid file (`<dataDir>/gateway.pid`): which process it names,
 * and whether that process still runs. A pid file left by a crash or a reboot
 * is stale: its process is gone, or the file is older than the system's boot
 * (the pid may since belong to another program).
 *
 * @module
 */

/** What a pid file says. */
export type PidFileState =
  | { state: "none" }
  | { state: "live"; pid: number }
  | { state: "stale"; pid: number };

/**
 * Whether a process `pid` is running: a signal that changes nothing
 * (SIGCONT) reaches it. (`/proc` would say more, but Deno lets only
 * `--allow-all` read it.)
 *
 * @example
 * ```ts
 * import { processAlive } from "./pid_file.ts";
 * processAlive(Deno.pid); // true
 * ```
 */
export function processAlive(pid: number): boolean {
  try {
    Deno.kill(pid, "SIGCONT");
    return true;
  } catch {
    return false;
  }
}

/**
 * Reads `file`: none, a running process's pid, or a stale pid.
 *
 * @example
 * ```ts
 * import { readPidFile } from "./pid_file.ts";
 * const found = await readPidFile("data/gateway.pid");
 * if (found.state === "live") console.log(`running as ${found.pid}`);
 * ```
 */
export async function readPidFile(file: string): Promise<PidFileState> {
  let text: string;
  let written: number;
  try {
    text = await Deno.readTextFile(file);
    written = (await Deno.stat(file)).mtime?.getTime() ?? Date.now();
  } catch {
    return { state: "none" };
  }
  const pid = Number(/^\s*(\d+)/.exec(text)?.[1]);
  if (!Number.isInteger(pid) || pid <= 0) return { state: "none" };
  const bootedAt = Date.now() - Deno.osUptime() * 1000;
  return written > bootedAt && processAlive(pid) ? { state: "live", pid } : { state: "stale", pid };
}
