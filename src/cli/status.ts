/**
 * `gateway status`: whether the gateway runs (its pid file and admin API),
 * its pid, uptime and config hash, and the problems its `/status` shows.
 * Exit codes as LSB init scripts have them: 0 running, 3 not running.
 *
 * @module
 */

import { adminCall, type AdminFlags, locate } from "./installation.ts";
import { readPidFile } from "./pid_file.ts";

/** The exit codes of `gateway status`. */
export const STATUS_EXIT = { running: 0, notRunning: 3 } as const;

interface Part {
  name: string;
  state: string;
  lastError?: { message: string } | null;
}

/**
 * The problems a `/status` document shows, one line each: a refused reload,
 * plugins and workers not running, models that failed, unhealthy upstream
 * targets, MQTT bridges not connected.
 *
 * @example
 * ```ts
 * import { statusProblems } from "./status.ts";
 * statusProblems({ lastReloadError: "config.json: routes: expected an array" });
 * // ["config reload refused: config.json: routes: expected an array"]
 * ```
 */
export function statusProblems(status: Record<string, unknown>): string[] {
  const problems: string[] = [];
  if (typeof status.lastReloadError === "string") {
    problems.push(`config reload refused: ${status.lastReloadError}`);
  }
  const parts = (kind: string, list: unknown) => {
    for (const part of Array.isArray(list) ? list as Part[] : []) {
      if (part.state === "running") continue;
      const why = part.lastError?.message ? `: ${part.lastError.message}` : "";
      problems.push(`${kind} ${part.name}: ${part.state}${why}`);
    }
  };
  parts("plugin", status.plugins);
  parts("worker", (status.workers as { workers?: unknown } | undefined)?.workers);
  const models = status.models as { failed?: string[] } | undefined;
  for (const name of models?.failed ?? []) problems.push(`model ${name}: failed`);
  const upstreams = (status.upstreams ?? {}) as Record<
    string,
    { targets: { url: string; healthy: boolean; breaker: string }[] }
  >;
  for (const [name, upstream] of Object.entries(upstreams)) {
    for (const target of upstream.targets ?? []) {
      if (target.healthy) continue;
      problems.push(`upstream ${name}: ${target.url} unhealthy (breaker ${target.breaker})`);
    }
  }
  const bridges = (status.mqtt as { bridges?: Record<string, string> } | undefined)?.bridges;
  for (const [name, state] of Object.entries(bridges ?? {})) {
    if (state !== "connected") problems.push(`mqtt bridge ${name}: ${state}`);
  }
  return problems;
}

/**
 * A duration in seconds as people say it: `3d 4h`, `2h 5m`, `5m 3s`, `42s`.
 *
 * @example
 * ```ts
 * import { formatUptime } from "./status.ts";
 * formatUptime(3723); // "1h 2m"
 * ```
 */
export function formatUptime(seconds: number): string {
  const units: [string, number][] = [["d", 86_400], ["h", 3600], ["m", 60], ["s", 1]];
  const parts: string[] = [];
  let rest = Math.max(0, Math.round(seconds));
  for (const [unit, size] of units) {
    const count = Math.floor(rest / size);
    rest -= count * size;
    if (count > 0 || (unit === "s" && parts.length === 0)) parts.push(`${count}${unit}`);
  }
  return parts.slice(0, 2).join(" ");
}

/** The lines `gateway status` prints for a running gateway's `/status`. */
function describe(status: Record<string, unknown>): string[] {
  const listeners = (status.listeners as { name: string; type: string; url?: string }[] ?? [])
    .map((listener) => `${listener.name} ${listener.url ?? listener.type}`);
  const problems = statusProblems(status);
  return [
    `running: pid ${status.pid}, up ${
      formatUptime(Number(status.uptimeSeconds))
    }, gateway ${status.version}`,
    `config: ${status.configFile} (hash ${status.configHash})`,
    `listeners: ${listeners.join(", ") || "none"}`,
    problems.length === 0 ? "problems: none" : "problems:",
    ...problems.map((problem) => `  ${problem}`),
  ];
}

/**
 * `gateway status`: prints whether the gateway of `configPath` runs and how
 * it is (with `json`, the admin API's `/status` document); returns
 * {@link STATUS_EXIT}.
 *
 * @example
 * ```ts
 * import { showStatus } from "./status.ts";
 * const code = await showStatus("config/config.json", {}, false); // 3 when it is not running
 * ```
 */
export async function showStatus(
  configPath: string,
  flags: AdminFlags,
  json: boolean,
): Promise<number> {
  const gateway = await locate(configPath, flags);
  const found = flags.admin ? undefined : await readPidFile(gateway.pidFile);
  let status: Record<string, unknown> | undefined;
  let adminProblem = "the admin API is disabled";
  if (gateway.adminEnabled && found?.state !== "stale") {
    try {
      status = await adminCall(gateway, "GET", "/status");
    } catch (error) {
      adminProblem = `admin API: ${(error as Error).message}`;
    }
  }
  if (status) {
    console.log(json ? JSON.stringify(status, null, 2) : describe(status).join("\n"));
    return STATUS_EXIT.running;
  }
  if (found?.state === "live") {
    console.log(`running: pid ${found.pid}\nproblems:\n  ${adminProblem}`);
    return STATUS_EXIT.running;
  }
  console.log(
    found?.state === "stale"
      ? `not running (a stale pid file ${gateway.pidFile} names pid ${found.pid}, which is gone)`
      : `not running${gateway.adminEnabled ? ` (${adminProblem})` : ""}`,
  );
  return STATUS_EXIT.notRunning;
}
