/**
 * The `gateway` command line.
 *
 * ```sh
 * gateway run [--config config.json]     serve (SIGHUP or a file change reloads, SIGTERM stops)
 * gateway check [--config config.json]   validate; every problem listed, exit 1 when any
 * gateway schema                         the config's JSON Schema, for editors
 * gateway reload|status|stop             talk to a running gateway's admin API
 * gateway plugin new NAME [--dir plugins] write a commented plugin to start from
 * gateway passwd                         a password hash for mqtt.users (password on stdin)
 * gateway version
 * ```
 *
 * @module
 */

import { parseArgs } from "node:util";
import { join, resolve } from "node:path";
import { z } from "zod";
import { ConfigError } from "./src/config/load.ts";
import { AdminConfig } from "./src/admin/config.ts";
import { GatewayConfig, loadGatewayConfig } from "./src/sections.ts";
import { StorageConfig } from "./src/storage/config.ts";
import { Gateway } from "./src/gateway.ts";
import { localAdminToken } from "./src/admin/secrets.ts";
import { flushLogs } from "./src/observability/log.ts";
import { VERSION } from "./src/version.ts";
import { writePluginTemplate } from "./src/plugins/template.ts";
import { hashPassword } from "./src/mqtt/auth.ts";

const DEFAULT_CONFIG = "config/config.json";

const HELP: Record<string, string> = {
  "": `gateway ${VERSION}: an edge gateway in one binary

Usage: gateway <command> [options]

Commands:
  run       serve with a config (default ${DEFAULT_CONFIG})
  check     validate a config and list every problem
  schema    print the config's JSON Schema
  reload    make a running gateway re-read its config
  status    show a running gateway's listeners, routes, upstreams and workers
  stop      stop a running gateway gracefully
  plugin    'plugin new NAME': write a plugin to start from
  passwd    print a password hash for mqtt.users
  version   print the version

Run 'gateway <command> --help' for a command's options.`,
  run: `Usage: gateway run [--config FILE]

Serves with FILE (default ${DEFAULT_CONFIG}). The config is reloaded when the file
changes, on SIGHUP, on 'gateway reload' and on POST /reload; a config that fails is
refused and the running one keeps serving. SIGTERM or SIGINT stop gracefully.`,
  check: `Usage: gateway check [--config FILE]

Validates FILE (default ${DEFAULT_CONFIG}) as 'run' would, without serving: JSON syntax,
schema, includes, env: secrets, TLS files, static roots. Prints every problem as
'file: json.path: message' and exits 1 when there is any.`,
  schema: `Usage: gateway schema

Prints the JSON Schema of the config document. Point "$schema" at it for editor help.`,
  reload: `Usage: gateway reload [--config FILE] [--admin URL] [--token TOKEN]

Asks the gateway serving FILE to reload it. The admin address and token are read from
FILE (or its data directory) unless --admin and --token are given. Exits 1 with the
reasons when the new config is refused.`,
  status: `Usage: gateway status [--config FILE] [--admin URL] [--token TOKEN]

Prints the running gateway's status: version, uptime, config hash, listeners, routes,
upstream target health and breaker state, and each language worker with its instances
(pid, state, restarts, calls in flight, calls, errors, p50/p99).`,
  stop: `Usage: gateway stop [--config FILE] [--admin URL] [--token TOKEN]

Asks the running gateway to stop gracefully.`,
  plugin: `Usage: gateway plugin new NAME [--dir DIR]

Writes DIR/NAME.ts (DIR defaults to plugins), a commented plugin with every hook, and
DIR/_sdk/plugin.ts, the SDK's types, so an editor checks the plugin. Refuses to
overwrite an existing plugin.`,
  passwd: `Usage: gateway passwd

Reads a password (typed without echo on a terminal, else the first line of stdin) and
prints its PBKDF2-SHA256 hash, the form mqtt.users[].password takes:
  echo -n 's3cret' | gateway passwd`,
  version: `Usage: gateway version`,
};

function fail(lines: string[], code = 1): never {
  for (const line of lines) console.error(line);
  Deno.exit(code);
}

function problemsOf(error: unknown): string[] {
  return error instanceof ConfigError ? error.problems : [(error as Error).message];
}

async function run(configPath: string): Promise<void> {
  const gateway = new Gateway(configPath);
  try {
    await gateway.start();
  } catch (error) {
    await gateway.stop();
    await flushLogs();
    fail([...problemsOf(error), "gateway: not started"]);
  }
  const stop = () => void gateway.stop();
  Deno.addSignalListener("SIGINT", stop);
  Deno.addSignalListener("SIGTERM", stop);
  Deno.addSignalListener("SIGHUP", () => void gateway.reload().catch(() => {}));
  await gateway.finished;
  await flushLogs();
  Deno.exit(0);
}

async function check(configPath: string): Promise<void> {
  try {
    const { config, file, hash } = await loadGatewayConfig(configPath);
    console.log(
      `${file}: OK (${
        Object.keys(config.listeners).length
      } listeners, ${config.routes.length} routes, ` +
        `${Object.keys(config.upstreams).length} upstreams; hash ${hash})`,
    );
  } catch (error) {
    fail(problemsOf(error));
  }
}

/** The admin API's address and token, from flags or from the config file as far as it reads. */
/** The password for `gateway passwd`: typed without echo on a terminal, else stdin's first line. */
async function readPassword(): Promise<string> {
  const terminal = Deno.stdin.isTerminal();
  if (terminal) {
    await Deno.stderr.write(new TextEncoder().encode("password: "));
    Deno.stdin.setRaw(true);
  }
  const bytes: number[] = [];
  const buffer = new Uint8Array(256);
  try {
    reading: for (let n; (n = await Deno.stdin.read(buffer)) !== null;) {
      for (const byte of buffer.subarray(0, n)) {
        if (byte === 0x0a || byte === 0x0d) break reading;
        if (terminal && byte === 0x03) fail(["", "gateway passwd: cancelled"], 130);
        bytes.push(byte);
      }
    }
  } finally {
    if (terminal) {
      Deno.stdin.setRaw(false);
      console.error();
    }
  }
  return new TextDecoder().decode(new Uint8Array(bytes));
}

async function adminEndpoint(
  configPath: string,
  flags: { admin?: string; token?: string },
): Promise<{ url: string; token: string }> {
  let raw: Record<string, unknown> = {};
  try {
    raw = JSON.parse(await Deno.readTextFile(configPath));
  } catch {
    // a broken or missing config still has the default admin address
  }
  const admin = AdminConfig.safeParse(raw.admin ?? {}).data ??
    AdminConfig.parse({});
  const storage = StorageConfig.safeParse(raw.storage ?? {}).data ?? StorageConfig.parse({});
  const host = admin.host === "0.0.0.0" ? "127.0.0.1" : admin.host === "::" ? "[::1]" : admin.host;
  const url = flags.admin ??
    `http://${host.includes(":") && !host.startsWith("[") ? `[${host}]` : host}:${admin.port}`;
  let token = flags.token ?? admin.token;
  const envName = token?.startsWith("env:") ? token.slice(4) : undefined;
  if (envName) token = Deno.env.get(envName);
  token ??= await localAdminToken(join(resolve(configPath, ".."), storage.dataDir)).catch(() => "");
  return { url: url.replace(/\/$/, ""), token };
}

async function callAdmin(
  command: "reload" | "status" | "stop",
  configPath: string,
  flags: { admin?: string; token?: string },
): Promise<void> {
  const { url, token } = await adminEndpoint(configPath, flags);
  const method = command === "status" ? "GET" : "POST";
  let response: Response;
  try {
    response = await fetch(`${url}/${command}`, {
      method,
      headers: { authorization: `Bearer ${token}` },
    });
  } catch (error) {
    fail([`gateway ${command}: no gateway answers at ${url}: ${(error as Error).message}`]);
  }
  const body = await response.json().catch(() => ({}));
  if (!response.ok) {
    const message = body?.error?.problems?.join("\n") ?? body?.error?.message ??
      response.statusText;
    fail([`gateway ${command}: ${response.status}: ${message}`]);
  }
  if (command === "status") console.log(JSON.stringify(body, null, 2));
  else if (command === "reload") {
    console.log(
      body.changed ? `reloaded (config ${body.hash})` : `unchanged (config ${body.hash})`,
    );
  } else console.log("stopping");
}

if (import.meta.main) {
  const [command = "help", ...rest] = Deno.args;
  let parsed;
  try {
    parsed = parseArgs({
      args: rest,
      options: {
        config: { type: "string", short: "c", default: DEFAULT_CONFIG },
        admin: { type: "string" },
        token: { type: "string" },
        dir: { type: "string", default: "plugins" },
        help: { type: "boolean", short: "h" },
      },
      strict: true,
      allowPositionals: command === "plugin",
    });
  } catch (error) {
    fail(
      [`gateway ${command}: ${(error as Error).message}`, `Run 'gateway ${command} --help'.`],
      2,
    );
  }
  const { values, positionals } = parsed;
  if (command === "help" || command === "--help" || command === "-h") console.log(HELP[""]);
  else if (!(command in HELP)) fail([`gateway: unknown command "${command}"`, HELP[""]], 2);
  else if (values.help) console.log(HELP[command]);
  else if (command === "run") await run(values.config);
  else if (command === "check") await check(values.config);
  else if (command === "schema") {
    console.log(JSON.stringify(
      z.toJSONSchema(GatewayConfig, { io: "input", unrepresentable: "any" }),
      null,
      2,
    ));
  } else if (command === "plugin") {
    const [action, name] = positionals;
    if (action !== "new" || !name || positionals.length !== 2) fail([HELP.plugin], 2);
    try {
      console.log(`wrote ${await writePluginTemplate(values.dir, name)}`);
    } catch (error) {
      fail([`gateway plugin new: ${(error as Error).message}`]);
    }
  } else if (command === "passwd") {
    const password = await readPassword();
    if (password === "") fail(["gateway passwd: the password is empty"]);
    console.log(await hashPassword(password));
  } else if (command === "version") console.log(`gateway ${VERSION} (deno ${Deno.version.deno})`);
  else await callAdmin(command as "reload" | "status" | "stop", values.config, values);
}
