/**
 * Starts the gateway the way a user does, as its own process, for
 * integration tests. The command is `GATEWAY_CMD` (split on spaces) when set,
 * so the same suite runs against a compiled binary; otherwise `deno run` with
 * the runtime flags from build.ts.
 *
 * @module
 */

import { join } from "node:path";
import { gatewayCommand } from "../../build.ts";

/** The admin token the helper writes into every test config. */
export const ADMIN_TOKEN = "test-admin-token-0123456789";

/**
 * A free TCP port on 127.0.0.1 (bound, read, released). Another process may
 * take it before the test binds it: prefer port 0 in the config and read the
 * bound port back ({@link GatewayProcess.port}, {@link GatewayProcess.adminUrl}).
 *
 * @example
 * ```ts
 * import { freePort } from "./gateway.ts";
 * const port = freePort();
 * ```
 */
export function freePort(): number {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const port = (listener.addr as Deno.NetAddr).port;
  listener.close();
  return port;
}

/**
 * The argv that starts the gateway: `GATEWAY_CMD` split on spaces, or
 * `deno run` with the runtime flags.
 *
 * @example
 * ```ts
 * import { gatewayArgv } from "./gateway.ts";
 * const [cmd, ...args] = gatewayArgv();
 * new Deno.Command(cmd, { args: [...args, "version"] });
 * ```
 */
export function gatewayArgv(): string[] {
  const custom = Deno.env.get("GATEWAY_CMD")?.trim();
  return custom ? custom.split(/\s+/) : gatewayCommand();
}

/**
 * A gateway process started by a test ({@link startGateway}): its output
 * lines, its admin API and the ports its listeners bound.
 *
 * @example
 * ```ts
 * import { startGateway } from "./gateway.ts";
 * await using gw = await startGateway({
 *   listeners: { web: { type: "http", host: "127.0.0.1", port: 0 } },
 *   routes: [{ target: { respond: { body: "hi" } } }],
 * });
 * await fetch(`http://127.0.0.1:${await gw.port("web")}/`);
 * ```
 */
export class GatewayProcess {
  readonly lines: string[] = [];
  readonly #decoder = new TextDecoder();
  readonly #pumps: Promise<void>[];
  readonly #exited: Promise<Deno.CommandStatus>;

  readonly #adminPort: number;

  /** `adminPort` 0: the admin API binds any free port, which its log line reports. */
  constructor(
    readonly child: Deno.ChildProcess,
    readonly dir: string,
    readonly configFile: string,
    adminPort: number,
  ) {
    this.#adminPort = adminPort;
    this.#pumps = [this.#pump(child.stdout), this.#pump(child.stderr)];
    this.#exited = child.status;
  }

  /**
   * The admin API's URL. With port 0 in the config, the port it bound, from its
   * `admin API serving on <url>` log line; throws until that line is out.
   */
  get adminUrl(): string {
    if (this.#adminPort !== 0) return `http://127.0.0.1:${this.#adminPort}`;
    for (const line of this.lines) {
      const url = line.match(/admin API\W+serving on\W+(https?:\/\/[\w.:[\]-]+)/)?.[1];
      if (url) return url;
    }
    throw new Error(`the admin API has not logged its address (is the log level info?):
${this.output}`);
  }

  /** The port listener `name` bound (port 0 in the config), from `GET /status`. */
  async port(name: string): Promise<number> {
    const status = await (await this.admin("/status")).json();
    const found = status.listeners?.find((listener: { name: string }) => listener.name === name);
    if (typeof found?.port !== "number") {
      throw new Error(`no listener "${name}" in /status: ${JSON.stringify(status.listeners)}`);
    }
    return found.port;
  }

  async #pump(stream: ReadableStream<Uint8Array>): Promise<void> {
    let pending = "";
    for await (const chunk of stream) {
      pending += this.#decoder.decode(chunk, { stream: true });
      const parts = pending.split("\n");
      pending = parts.pop()!;
      this.lines.push(...parts);
    }
    if (pending) this.lines.push(pending);
  }

  /** All output so far, one string. */
  get output(): string {
    return this.lines.join("\n");
  }

  /** Resolves with the exit status once the process and its output are done. */
  async exited(): Promise<Deno.CommandStatus> {
    const status = await this.#exited;
    await Promise.all(this.#pumps);
    return status;
  }

  /** Calls the admin API with the test token. */
  admin(path: string, init: RequestInit = {}): Promise<Response> {
    return fetch(`${this.adminUrl}${path}`, {
      ...init,
      headers: { authorization: `Bearer ${ADMIN_TOKEN}`, ...init.headers },
    });
  }

  /** Waits until an output line matches, or throws with the output after `timeoutMs`. */
  async waitForLine(pattern: RegExp, timeoutMs = 15_000): Promise<string> {
    const deadline = Date.now() + timeoutMs;
    while (Date.now() < deadline) {
      const line = this.lines.find((l) => pattern.test(l));
      if (line) return line;
      await new Promise((r) => setTimeout(r, 25));
    }
    throw new Error(`no output line matched ${pattern}:\n${this.output}`);
  }

  /** Rewrites the config file (the gateway notices and reloads). */
  async writeConfig(config: unknown): Promise<void> {
    const text = typeof config === "string" ? config : JSON.stringify(config, null, 2);
    await Deno.writeTextFile(`${this.configFile}.tmp`, text);
    await Deno.rename(`${this.configFile}.tmp`, this.configFile);
  }

  /** Sends SIGTERM and waits for a graceful exit; SIGKILL if it takes longer than 20 s. */
  async stop(): Promise<Deno.CommandStatus> {
    try {
      this.child.kill("SIGTERM");
    } catch { /* already exited */ }
    const timer = setTimeout(() => {
      try {
        this.child.kill("SIGKILL");
      } catch { /* exited */ }
    }, 20_000);
    const status = await this.exited();
    clearTimeout(timer);
    await Deno.remove(this.dir, { recursive: true }).catch(() => {});
    return status;
  }

  async [Symbol.asyncDispose](): Promise<void> {
    await this.stop();
  }
}

/** Options for {@link startGateway}. */
export interface StartOptions {
  /** Extra files written into the gateway's directory before start (name → content). */
  files?: Record<string, string>;
  /** Extra environment variables. */
  env?: Record<string, string>;
  /** Do not wait for readiness (for tests of start-up failures). */
  noWait?: boolean;
  /** A command the gateway runs under, such as `["prlimit", "--nofile=96:96"]`. */
  prefix?: string[];
  /**
   * False: the gateway writes no coverage profile under `deno task test
   * --coverage` (which hands `DENO_COVERAGE_DIR` to every Deno process). A
   * gateway that starts hundreds of Workers would write one profile each.
   */
  coverage?: boolean;
}

/**
 * Writes `config` (admin section filled in with port 0 and the test token,
 * JSON log format) into a temporary directory and starts the gateway on it.
 * Waits for `/readyz` unless `noWait`. A rewritten config keeps the admin
 * section as written (`admin.port` 0) so that the admin API stays where it is.
 *
 * @example
 * ```ts
 * import { startGateway } from "./gateway.ts";
 * await using gw = await startGateway({ listeners: {}, routes: [] });
 * ```
 */
export async function startGateway(
  config: Record<string, unknown>,
  options: StartOptions = {},
): Promise<GatewayProcess> {
  const dir = await Deno.makeTempDir({ prefix: "gateway-test-" });
  for (const [name, content] of Object.entries(options.files ?? {})) {
    await Deno.mkdir(join(dir, name, ".."), { recursive: true });
    await Deno.writeTextFile(join(dir, name), content);
  }
  const admin = { host: "127.0.0.1", port: 0, token: ADMIN_TOKEN, ...(config.admin ?? {}) };
  const full = {
    ...config,
    admin,
    log: { level: "info", format: "json", access: true, ...(config.log ?? {}) },
  };
  const configFile = join(dir, "config.json");
  await Deno.writeTextFile(configFile, JSON.stringify(full, null, 2));
  const [cmd, ...args] = [...options.prefix ?? [], ...gatewayArgv()];
  const env = { ...Deno.env.toObject(), ...options.env };
  if (options.coverage === false) delete env.DENO_COVERAGE_DIR;
  const child = new Deno.Command(cmd, {
    args: [...args, "run", "--config", configFile],
    cwd: dir,
    clearEnv: true,
    env,
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  const gateway = new GatewayProcess(child, dir, configFile, admin.port as number);
  if (options.noWait) return gateway;
  const deadline = Date.now() + 30_000;
  let exited = false;
  gateway.exited().then(() => exited = true);
  while (Date.now() < deadline && !exited) {
    try {
      const res = await fetch(`${gateway.adminUrl}/readyz`); // throws until the address is logged
      await res.body?.cancel();
      if (res.ok) return gateway;
    } catch { /* not listening yet */ }
    await new Promise((r) => setTimeout(r, 50));
  }
  await gateway.stop();
  throw new Error(`the gateway did not become ready:\n${gateway.output}`);
}
