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
 * A free TCP port on 127.0.0.1 (bound, read, released).
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

/** The argv that starts the gateway. */
export function gatewayArgv(): string[] {
  const custom = Deno.env.get("GATEWAY_CMD")?.trim();
  return custom ? custom.split(/\s+/) : gatewayCommand();
}

/** A gateway process started by a test. */
export class GatewayProcess {
  readonly lines: string[] = [];
  readonly #decoder = new TextDecoder();
  readonly #pumps: Promise<void>[];
  readonly #exited: Promise<Deno.CommandStatus>;

  constructor(
    readonly child: Deno.ChildProcess,
    readonly dir: string,
    readonly configFile: string,
    readonly adminUrl: string,
  ) {
    this.#pumps = [this.#pump(child.stdout), this.#pump(child.stderr)];
    this.#exited = child.status;
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
}

/**
 * Writes `config` (admin section filled in with a free port and the test
 * token, JSON log format) into a temporary directory and starts the gateway on
 * it. Waits for `/readyz` unless `noWait`.
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
  const adminPort = freePort();
  const full = {
    ...config,
    admin: { host: "127.0.0.1", port: adminPort, token: ADMIN_TOKEN, ...(config.admin ?? {}) },
    log: { level: "info", format: "json", access: true, ...(config.log ?? {}) },
  };
  const configFile = join(dir, "config.json");
  await Deno.writeTextFile(configFile, JSON.stringify(full, null, 2));
  const [cmd, ...args] = [...options.prefix ?? [], ...gatewayArgv()];
  const child = new Deno.Command(cmd, {
    args: [...args, "run", "--config", configFile],
    cwd: dir,
    env: options.env,
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  const gateway = new GatewayProcess(child, dir, configFile, `http://127.0.0.1:${adminPort}`);
  if (options.noWait) return gateway;
  const deadline = Date.now() + 30_000;
  let exited = false;
  gateway.exited().then(() => exited = true);
  while (Date.now() < deadline && !exited) {
    try {
      const res = await fetch(`${gateway.adminUrl}/readyz`);
      await res.body?.cancel();
      if (res.ok) return gateway;
    } catch { /* not listening yet */ }
    await new Promise((r) => setTimeout(r, 50));
  }
  await gateway.stop();
  throw new Error(`the gateway did not become ready:\n${gateway.output}`);
}
