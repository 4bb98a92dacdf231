/**
 * Where a gateway's pid file, log file and admin API are, read from its config
 * file as far as it reads: `gateway stop`, `status`, `logs` and `reload` must
 * work while the config on disk is broken or names `env:` secrets this shell
 * lacks.
 *
 * @module
 */

import { join, resolve } from "node:path";
import { AdminConfig } from "../admin/config.ts";
import { localAdminToken } from "../admin/secrets.ts";
import { StorageConfig } from "../storage/config.ts";

/** `--admin URL` and `--token TOKEN`, when given. */
export interface AdminFlags {
  admin?: string;
  token?: string;
}

/** A gateway's files and admin API, located from its config file. */
export interface Installation {
  /** The config file, absolute. */
  configFile: string;
  /** The data directory, absolute. */
  dataDir: string;
  /** `<dataDir>/gateway.pid`, written by the gateway once it serves. */
  pidFile: string;
  /** `<dataDir>/gateway.log`, where `gateway start` sends the daemon's output. */
  logFile: string;
  /** False when the config disables the admin API (and no `--admin` is given). */
  adminEnabled: boolean;
  /** The admin API's base URL; with port 0 in the config, the one the log file last names. */
  adminUrl?: string;
  /** Whether {@link adminUrl} is read from the log (port 0 in the config). */
  adminUrlFromLog: boolean;
  token: string;
}

/**
 * The admin URL the log names last (`admin API serving on <url>`), if any.
 *
 * @example
 * ```ts
 * import { adminUrlInLog } from "./installation.ts";
 * adminUrlInLog('{"message":"admin API serving on http://127.0.0.1:41234"}'); // "http://127.0.0.1:41234"
 * ```
 */
export function adminUrlInLog(log: string): string | undefined {
  const urls = [...log.matchAll(/admin API\W+serving on\W+(https?:\/\/[\w.:[\]-]+)/g)];
  return urls.at(-1)?.[1];
}

/**
 * Locates the gateway of `configPath`. A config that does not read yields the
 * defaults (data directory `data` beside it, admin API on 127.0.0.1:9901).
 *
 * @example
 * ```ts
 * import { locate } from "./installation.ts";
 * const gateway = await locate("config/config.json", {});
 * gateway.pidFile; // ".../config/data/gateway.pid"
 * ```
 */
export async function locate(configPath: string, flags: AdminFlags): Promise<Installation> {
  const configFile = resolve(configPath);
  let raw: Record<string, unknown> = {};
  try {
    raw = JSON.parse(await Deno.readTextFile(configFile));
  } catch {
    // a broken or missing config still has the default paths and admin address
  }
  const admin = AdminConfig.safeParse(raw.admin ?? {}).data ?? AdminConfig.parse({});
  const storage = StorageConfig.safeParse(raw.storage ?? {}).data ?? StorageConfig.parse({});
  const dataDir = resolve(configFile, "..", storage.dataDir);
  const logFile = join(dataDir, "gateway.log");
  let adminUrl = flags.admin?.replace(/\/$/, "");
  const adminUrlFromLog = !adminUrl && admin.port === 0;
  if (adminUrlFromLog) {
    adminUrl = adminUrlInLog(await Deno.readTextFile(logFile).catch(() => ""));
  } else if (!adminUrl) {
    const host = admin.host === "0.0.0.0" ? "127.0.0.1" : admin.host === "::" ? "::1" : admin.host;
    adminUrl = `http://${host.includes(":") ? `[${host}]` : host}:${admin.port}`;
  }
  let token = flags.token ?? admin.token;
  const envName = token?.startsWith("env:") ? token.slice(4) : undefined;
  if (envName) token = Deno.env.get(envName);
  token ??= await localAdminToken(dataDir).catch(() => "");
  return {
    configFile,
    dataDir,
    pidFile: join(dataDir, "gateway.pid"),
    logFile,
    adminEnabled: flags.admin !== undefined || admin.enabled,
    adminUrl,
    adminUrlFromLog,
    token,
  };
}

/**
 * Calls the admin API: the parsed JSON body, or a thrown Error naming the
 * address when nothing answers, or the status and message when it refuses.
 *
 * @example
 * ```ts
 * import { adminCall, locate } from "./installation.ts";
 * const status = await adminCall(await locate("config/config.json", {}), "GET", "/status");
 * ```
 */
export async function adminCall(
  gateway: Installation,
  method: "GET" | "POST",
  path: string,
): Promise<Record<string, unknown>> {
  if (!gateway.adminUrl) {
    throw new Error("the admin API listens on port 0 and the log file names no address");
  }
  let response: Response;
  try {
    response = await fetch(`${gateway.adminUrl}${path}`, {
      method,
      headers: { authorization: `Bearer ${gateway.token}` },
    });
  } catch (error) {
    throw new Error(`no gateway answers at ${gateway.adminUrl}: ${(error as Error).message}`);
  }
  const body = await response.json().catch(() => ({}));
  if (!response.ok) {
    const message = body?.error?.problems?.join("\n") ?? body?.error?.message ??
      response.statusText;
    throw new Error(`${response.status}: ${message}`);
  }
  return body;
}
