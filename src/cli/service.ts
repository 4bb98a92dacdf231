/**
 * `gateway service install|uninstall`: a systemd unit that runs
 * `gateway run --config <file>` in the foreground, restarts it when it fails,
 * reloads it with SIGHUP and gives it enough file descriptors for its
 * connection budget (which is derived from the descriptor limit).
 *
 * @module
 */

import { join } from "node:path";

/** Where systemd reads the units an administrator installs. */
export const SYSTEM_UNIT_DIR = "/etc/systemd/system";

/** What the unit runs. */
export interface UnitOptions {
  /** The unit's name without `.service`. */
  name: string;
  /** The config file, absolute. */
  configFile: string;
  /** The absolute argv before `run` (the binary, or deno with its flags and main.ts). */
  command: string[];
  /** `LimitNOFILE`: the descriptor limit the connection budget is derived from. */
  nofile: number;
  /** The user the service runs as; root when absent. */
  user?: string;
}

/** One `ExecStart` word, quoted for systemd when it needs it (`%` and `$` escaped). */
function unitWord(word: string): string {
  const escaped = word.replaceAll("%", "%%").replaceAll("$", "$$$$");
  return /^[\w@%+=:,./-]+$/.test(escaped)
    ? escaped
    : `"${escaped.replaceAll("\\", "\\\\").replaceAll('"', '\\"')}"`;
}

/**
 * The unit file's text.
 *
 * @example
 * ```ts
 * import { systemdUnit } from "./service.ts";
 * const unit = systemdUnit({
 *   name: "gateway",
 *   configFile: "/etc/gateway/config.json",
 *   command: ["/usr/local/bin/gateway"],
 *   nofile: 65536,
 * });
 * unit.includes("ExecStart=/usr/local/bin/gateway run --config /etc/gateway/config.json"); // true
 * ```
 */
export function systemdUnit(options: UnitOptions): string {
  const exec = [...options.command, "run", "--config", options.configFile].map(unitWord).join(" ");
  return `[Unit]
Description=gateway (${options.configFile})
After=network-online.target
Wants=network-online.target

[Service]
Type=simple
ExecStart=${exec}
ExecReload=/bin/kill -HUP $MAINPID
WorkingDirectory=${unitWord(join(options.configFile, ".."))}
${options.user ? `User=${options.user}\n` : ""}Restart=on-failure
RestartSec=2s
# SIGTERM to the gateway alone: it drains, then stops its language workers itself.
KillMode=mixed
TimeoutStopSec=60s
LimitNOFILE=${options.nofile}

[Install]
WantedBy=multi-user.target
`;
}

/** Runs `systemctl` when it exists; false when it does not. */
async function systemctl(args: string[]): Promise<boolean> {
  try {
    const result = await new Deno.Command("systemctl", { args, stdout: "inherit" }).output();
    if (!result.success) {
      console.error(
        `systemctl ${args.join(" ")}: ${new TextDecoder().decode(result.stderr).trim()}`,
      );
    }
    return true;
  } catch (error) {
    if (error instanceof Deno.errors.NotFound) return false;
    throw error;
  }
}

/**
 * Writes `<unitDir>/<name>.service` and, in the system unit directory, has
 * systemd read it (when `systemctl` exists). Returns the unit file's path.
 *
 * @example
 * ```ts
 * import { installService } from "./service.ts";
 * const dir = await Deno.makeTempDir();
 * await installService({
 *   name: "gateway",
 *   configFile: "/etc/gateway/config.json",
 *   command: ["/usr/local/bin/gateway"],
 *   nofile: 65536,
 * }, dir);
 * ```
 */
export async function installService(options: UnitOptions, unitDir: string): Promise<string> {
  const file = join(unitDir, `${options.name}.service`);
  await Deno.writeTextFile(file, systemdUnit(options));
  if (unitDir === SYSTEM_UNIT_DIR && await systemctl(["daemon-reload"])) {
    console.log(`systemd reloaded; start it with: systemctl enable --now ${options.name}`);
  }
  return file;
}

/**
 * Stops and disables the unit (system unit directory, when `systemctl`
 * exists) and removes its file. Returns the removed file's path.
 *
 * @example
 * ```ts
 * import { uninstallService } from "./service.ts";
 * await uninstallService("gateway", await Deno.makeTempDir()).catch(() => {});
 * ```
 */
export async function uninstallService(name: string, unitDir: string): Promise<string> {
  const file = join(unitDir, `${name}.service`);
  await Deno.lstat(file);
  if (unitDir === SYSTEM_UNIT_DIR) await systemctl(["disable", "--now", `${name}.service`]);
  await Deno.remove(file);
  if (unitDir === SYSTEM_UNIT_DIR) await systemctl(["daemon-reload"]);
  return file;
}
