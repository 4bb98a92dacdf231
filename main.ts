/**
 * The `gateway` command line.
 *
 * ```sh
 * gateway run [--config config.json]     serve (SIGHUP or a file change reloads, SIGTERM stops)
 * gateway start|stop|restart             the gateway as a background service (pid and log file)
 * gateway status [--json]                running or not, pid, uptime, config hash, problems
 * gateway logs [-f]                      the background service's log
 * gateway service install|uninstall      a systemd unit that runs it
 * gateway check [--config config.json]   validate; every problem listed, exit 1 when any
 * gateway schema                         the config's JSON Schema, for editors
 * gateway reload                         make a running gateway re-read its config
 * gateway init [DIR]                     a starter config, plugin and worker
 * gateway plugin new NAME [--dir plugins] write a commented plugin to start from
 * gateway passwd                         a password hash for mqtt.users (password on stdin)
 * gateway version
 * ```
 *
 * @module
 */

import { parseArgs } from "node:util";
import { Buffer } from "node:buffer";
import { resolve } from "node:path";
import { ConfigError } from "./src/config/load.ts";
import { parseDuration, parseSize } from "./src/config/units.ts";
import { checkGatewayConfig } from "./src/sections.ts";
import { Gateway } from "./src/gateway.ts";
import { flushLogs } from "./src/observability/log.ts";
import { VERSION } from "./src/version.ts";
import { writePluginTemplate } from "./src/plugins/template.ts";
import { hashPassword } from "./src/mqtt/auth.ts";
import { encodeHex } from "./src/util/hex.ts";
import { restartDaemon, startDaemon, stopDaemon } from "./src/cli/daemon.ts";
import { configJsonSchema, initProject } from "./src/cli/init.ts";
import { adminCall, locate } from "./src/cli/installation.ts";
import { keepRotated, printLog } from "./src/cli/log_file.ts";
import { selfCommand } from "./src/cli/self.ts";
import {
  installService,
  SYSTEM_UNIT_DIR,
  systemdUnit,
  uninstallService,
} from "./src/cli/service.ts";
import { showStatus } from "./src/cli/status.ts";

const DEFAULT_CONFIG = "config/config.json";
const DEFAULT_TIMEOUT = "30s";
const DEFAULT_LOG_SIZE = "10MB";
const DEFAULT_NOFILE = "65536";

const HELP: Record<string, string> = {
  "": `gateway ${VERSION}: an edge gateway in one binary

Usage: gateway <command> [options]

Commands:
  run       serve with a config (default ${DEFAULT_CONFIG}), in the foreground
  start     start it in the background (pid and log file in the data directory)
  stop      stop it gracefully (SIGTERM, then SIGKILL after a timeout)
  restart   stop, then start
  status    whether it runs: pid, uptime, config hash, problems
  logs      print (or follow, -f) the background gateway's log
  service   'service install|uninstall': a systemd unit that runs it
  check     validate a config and list every problem
  schema    print the config's JSON Schema
  reload    make a running gateway re-read its config
  init      'init [DIR]': write a starter config, plugin and worker
  plugin    'plugin new NAME': write a plugin to start from
  passwd    print a password hash for mqtt.users
  token     make an API key and the digest the api-key plugin takes
  version   print the version

Run 'gateway <command> --help' for a command's options.`,
  run: `Usage: gateway run [--config FILE] [--log-file LOG --log-size SIZE]

Serves with FILE (default ${DEFAULT_CONFIG}) in the foreground. The config is reloaded
when the file changes, on SIGHUP, on 'gateway reload' and on POST /reload; a config that
fails is refused and the running one keeps serving. SIGTERM or SIGINT stop gracefully.
--log-file names the file stdout and stderr are appended to (as 'gateway start' runs
it), rotated when larger than --log-size (default ${DEFAULT_LOG_SIZE}).`,
  start:
    `Usage: gateway start [--config FILE] [--timeout ${DEFAULT_TIMEOUT}] [--log-size ${DEFAULT_LOG_SIZE}]

Validates FILE, then runs 'gateway run' in the background: pid file DATA/gateway.pid,
output appended to DATA/gateway.log (DATA is storage.dataDir), rotated to gateway.log.1
(up to .3) when larger than --log-size. Refuses when the pid file names a running
gateway; removes a stale pid file and stale Unix socket files of the listeners. Waits
up to --timeout for the admin API's /readyz; when the gateway exits or is not ready in
time, prints why (its /status problems and the log's last lines), leaves nothing
running and exits 1.`,
  restart:
    `Usage: gateway restart [--config FILE] [--timeout ${DEFAULT_TIMEOUT}] [--log-size ${DEFAULT_LOG_SIZE}]

'gateway stop', then 'gateway start'.`,
  logs: `Usage: gateway logs [--config FILE] [-f] [-n LINES]

Prints the last LINES (default 100) lines of DATA/gateway.log, the output of the gateway
'gateway start' runs; with -f, then follows it until interrupted.`,
  service: `Usage: gateway service install|uninstall [--config FILE] [--name gateway] [--user USER]
                       [--nofile ${DEFAULT_NOFILE}] [--unit-dir ${SYSTEM_UNIT_DIR}] [--dry-run]

install writes UNIT-DIR/NAME.service, a systemd unit running this gateway ('run --config'
with FILE's absolute path) with Restart=on-failure, ExecReload sending SIGHUP and
LimitNOFILE=NOFILE (the connection budget is derived from it), and runs 'systemctl
daemon-reload' when systemctl exists. --dry-run prints the unit instead. uninstall
disables and stops the unit and removes its file.`,
  init: `Usage: gateway init [DIR]

Writes a starter project into DIR (default: the current directory): config.json (a web
listener on 127.0.0.1:8080, routes to a plugin function and a worker function),
config.schema.json (its JSON Schema, for editors), plugins/hello.ts (a commented plugin),
workers/hello.py with the Python SDK beside it (in the config when python3 is on PATH),
and a .gitignore for the data directory. Refuses when any of these files exists.`,
  check: `Usage: gateway check [--config FILE]

Validates FILE (default ${DEFAULT_CONFIG}) as 'run' would, without serving: JSON syntax,
schema, includes, env: secrets, TLS files, static roots. Prints every problem as
'file:line:column: json.path: message' and exits 1 when there is any. Also checks
that the plugins, functions and workers the config names exist (plugins from the
plugins directory, their functions from a no-permission probe of each plugin).`,
  schema: `Usage: gateway schema

Prints the JSON Schema of the config document. Point "$schema" at it for editor help.`,
  reload: `Usage: gateway reload [--config FILE] [--admin URL] [--token TOKEN]

Asks the gateway serving FILE to reload it. The admin address and token are read from
FILE (or its data directory) unless --admin and --token are given. Exits 1 with the
reasons when the new config is refused.`,
  status: `Usage: gateway status [--config FILE] [--json] [--admin URL] [--token TOKEN]

Says whether the gateway of FILE runs (its pid file and admin API): pid, uptime, version,
config file and hash, listeners, and its problems (a refused reload, plugins and workers
not running, failed models, unhealthy upstream targets, MQTT bridges not connected).
--json prints the admin API's whole /status instead: routes, upstream target health and
breaker state, each language worker with its instances (pid, state, restarts, calls in
flight, calls, errors, p50/p99). Exit 0 running, 3 not running.`,
  stop:
    `Usage: gateway stop [--config FILE] [--timeout ${DEFAULT_TIMEOUT}] | [--admin URL --token TOKEN]

Sends SIGTERM to the gateway the pid file names: it stops accepting, lets requests in
flight finish and stops its modules. Still there after --timeout, it is killed with
SIGKILL. Exit 0 stopped (or not running), 1 killed, 4 not allowed to signal it.
With --admin, asks that gateway's admin API to stop instead, without waiting.`,
  plugin: `Usage: gateway plugin new NAME [--dir DIR]

Writes DIR/NAME.ts (DIR defaults to plugins), a commented plugin with every hook, and
DIR/_sdk/plugin.ts, the SDK's types, so an editor checks the plugin. Refuses to
overwrite an existing plugin.`,
  passwd: `Usage: gateway passwd

Reads a password (typed without echo on a terminal, else the first line of stdin) and
prints its PBKDF2-SHA256 hash, the form mqtt.users[].password takes:
  echo -n 's3cret' | gateway passwd`,
  token: `Usage: gateway token [NAME]

Makes a random API key (32 bytes, base64url, prefixed "gw_") and prints it with its
SHA-256 digest. Give the key to the client; put the digest in the config, where the
api-key plugin takes it in place of the key:
  "plugins": { "settings": { "api-key": { "keys": { "NAME": "sha256:…" } } } }`,
  version: `Usage: gateway version`,
};

function fail(lines: string[], code = 1): never {
  for (const line of lines) console.error(line);
  Deno.exit(code);
}

function problemsOf(error: unknown): string[] {
  return error instanceof ConfigError ? error.problems : [(error as Error).message];
}

async function run(configPath: string, log?: { file: string; size: number }): Promise<void> {
  if (log) keepRotated(log.file, log.size);
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
    const { config, file, hash } = await checkGatewayConfig(configPath);
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
        timeout: { type: "string", default: DEFAULT_TIMEOUT },
        "log-file": { type: "string" },
        "log-size": { type: "string", default: DEFAULT_LOG_SIZE },
        json: { type: "boolean" },
        follow: { type: "boolean", short: "f" },
        lines: { type: "string", short: "n", default: "100" },
        name: { type: "string", default: "gateway" },
        user: { type: "string" },
        nofile: { type: "string", default: DEFAULT_NOFILE },
        "unit-dir": { type: "string", default: SYSTEM_UNIT_DIR },
        "dry-run": { type: "boolean" },
        help: { type: "boolean", short: "h" },
      },
      strict: true,
      allowPositionals: ["plugin", "service", "init", "token"].includes(command),
    });
  } catch (error) {
    fail(
      [`gateway ${command}: ${(error as Error).message}`, `Run 'gateway ${command} --help'.`],
      2,
    );
  }
  const { values, positionals } = parsed;
  const number = (flag: string, value: number | undefined): number =>
    value ??
      fail([`gateway ${command}: --${flag}: not a ${flag === "timeout" ? "duration" : "size"}`], 2);
  const timeoutMs = number("timeout", parseDuration(values.timeout));
  const logSize = number("log-size", parseSize(values["log-size"]));
  const count = (flag: "lines" | "nofile"): number =>
    /^[1-9]\d*$/.test(values[flag]) ? Number(values[flag]) : fail([
      `gateway ${command}: --${flag}: not a positive whole number`,
    ], 2);
  if (command === "help" || command === "--help" || command === "-h") console.log(HELP[""]);
  else if (!(command in HELP)) fail([`gateway: unknown command "${command}"`, HELP[""]], 2);
  else if (values.help) console.log(HELP[command]);
  else if (command === "run") {
    const logFile = values["log-file"];
    await run(values.config, logFile ? { file: logFile, size: logSize } : undefined);
  } else if (command === "start") {
    Deno.exit(await startDaemon(values.config, { timeoutMs, logSize }));
  } else if (command === "restart") {
    Deno.exit(await restartDaemon(values.config, { timeoutMs, logSize }));
  } else if (command === "stop" && !values.admin) {
    Deno.exit(await stopDaemon(values.config, { timeoutMs }));
  } else if (command === "status") {
    Deno.exit(await showStatus(values.config, values, values.json ?? false));
  } else if (command === "logs") {
    const { logFile } = await locate(values.config, {});
    await printLog(logFile, count("lines"), values.follow ?? false).catch((error) =>
      fail([`gateway logs: ${logFile}: ${(error as Error).message}`])
    );
  } else if (command === "service") {
    const [action, extra] = positionals;
    if (!["install", "uninstall"].includes(action) || extra) fail([HELP.service], 2);
    const unit = {
      name: values.name,
      configFile: resolve(values.config),
      command: selfCommand(),
      nofile: count("nofile"),
      user: values.user,
    };
    try {
      if (values["dry-run"] && action === "install") {
        console.log(systemdUnit(unit));
      } else if (action === "install") {
        console.log(`wrote ${await installService(unit, values["unit-dir"])}`);
      } else console.log(`removed ${await uninstallService(values.name, values["unit-dir"])}`);
    } catch (error) {
      fail([`gateway service ${action}: ${(error as Error).message}`]);
    }
  } else if (command === "init") {
    if (positionals.length > 1) fail([HELP.init], 2);
    try {
      const { files, withWorker } = await initProject(positionals[0] ?? ".");
      for (const file of files) console.log(`wrote ${file}`);
      if (!withWorker) {
        console.log('python3 is not on PATH: the example worker is not in config.json ("workers")');
      }
    } catch (error) {
      fail([`gateway init: ${(error as Error).message}`]);
    }
  } else if (command === "check") await check(values.config);
  else if (command === "schema") console.log(JSON.stringify(configJsonSchema(), null, 2));
  else if (command === "plugin") {
    const [action, name] = positionals;
    if (action !== "new" || !name || positionals.length !== 2) fail([HELP.plugin], 2);
    try {
      console.log(`wrote ${await writePluginTemplate(values.dir, name)}`);
    } catch (error) {
      fail([`gateway plugin new: ${(error as Error).message}`]);
    }
  } else if (command === "token") {
    const name = positionals[0] ?? "client";
    const key = `gw_${
      Buffer.from(crypto.getRandomValues(new Uint8Array(32))).toString("base64url")
    }`;
    const digest = await crypto.subtle.digest("SHA-256", new TextEncoder().encode(key));
    console.log(`key:    ${key}`);
    console.log(`config: "keys": { ${JSON.stringify(name)}: "sha256:${encodeHex(digest)}" }`);
  } else if (command === "passwd") {
    const password = await readPassword();
    if (password === "") fail(["gateway passwd: the password is empty"]);
    console.log(await hashPassword(password));
  } else if (command === "version") console.log(`gateway ${VERSION} (deno ${Deno.version.deno})`);
  else {
    // reload, or stop through --admin
    try {
      const body = await adminCall(await locate(values.config, values), "POST", `/${command}`);
      if (command === "stop") console.log("stopping");
      else console.log(`${body.changed ? "reloaded" : "unchanged"} (config ${body.hash})`);
    } catch (error) {
      fail([`gateway ${command}: ${(error as Error).message}`]);
    }
  }
}
