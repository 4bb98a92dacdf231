/**
 * Owns the one list of runtime flags, {@link RUNTIME_FLAGS}, so that
 * `deno task start`, the tests and the compiled binary run with the same
 * permissions and unstable features.
 *
 * ```sh
 * deno run -A build.ts compile          # dist/gateway (deno task build)
 * deno run -A build.ts start [args]     # the gateway from source (deno task start)
 * deno run -A build.ts test [args]      # the test suite (deno task test)
 * deno run -A build.ts bench [names]    # the benchmarks (deno task bench)
 * ```
 *
 * @module
 */

import { existsSync } from "node:fs";
import { join } from "node:path";

/**
 * Unstable Deno features the gateway uses. `no-legacy-abort` makes a served
 * request's `signal` abort only when the client goes away, which is what the
 * proxy passes on to upstream requests.
 */
export const UNSTABLE_FEATURES = ["net", "worker-options", "kv", "no-legacy-abort"];

/**
 * Permissions and unstable flags for every way the gateway runs. The gateway
 * reads its config, data directory and plugins, serves and proxies the network,
 * reads `env:` secrets and spawns language workers; plugins run in Workers whose
 * permissions are narrowed further (worker-options).
 */
export const RUNTIME_FLAGS: readonly string[] = [
  "--allow-net",
  "--allow-read",
  "--allow-write",
  "--allow-env",
  "--allow-run",
  "--allow-sys",
  ...UNSTABLE_FEATURES.map((feature) => `--unstable-${feature}`),
];

const ROOT = import.meta.dirname ?? ".";
const OUTPUT = join(ROOT, "dist", Deno.build.os === "windows" ? "gateway.exe" : "gateway");

/**
 * The argv that starts the gateway from source with the runtime flags:
 * the default of the tests' `GATEWAY_CMD`.
 *
 * @example
 * ```ts
 * import { gatewayCommand } from "./build.ts";
 * const [cmd, ...args] = gatewayCommand();
 * new Deno.Command(cmd, { args: [...args, "version"] });
 * ```
 */
export function gatewayCommand(): string[] {
  return [Deno.execPath(), "run", ...RUNTIME_FLAGS, join(ROOT, "main.ts")];
}

/** Runs a child with inherited stdio, passing SIGINT/SIGTERM/SIGHUP on; returns its exit code. */
async function runInherited(argv: string[]): Promise<number> {
  const child = new Deno.Command(argv[0], { args: argv.slice(1) }).spawn();
  const signals: Deno.Signal[] = Deno.build.os === "windows"
    ? ["SIGINT"]
    : ["SIGINT", "SIGTERM", "SIGHUP"];
  const forwarders = signals.map((signal) => {
    const forward = () => {
      try {
        child.kill(signal);
      } catch { /* already exited */ }
    };
    Deno.addSignalListener(signal, forward);
    return () => Deno.removeSignalListener(signal, forward);
  });
  const status = await child.status;
  for (const remove of forwarders) remove();
  return status.code;
}

/** Where `deno compile` will find its denort runtime without downloading, if anywhere. */
function localDenort(): string | undefined {
  const fromEnv = Deno.env.get("DENORT_BIN");
  if (fromEnv) return existsSync(fromEnv) ? fromEnv : undefined;
  const denoDir = Deno.env.get("DENO_DIR") ??
    join(Deno.env.get("XDG_CACHE_HOME") ?? join(Deno.env.get("HOME") ?? "", ".cache"), "deno");
  const zip = join(
    denoDir,
    "dl",
    "release",
    `v${Deno.version.deno}`,
    `denort-${Deno.build.target}.zip`,
  );
  return existsSync(zip) ? zip : undefined;
}

const NO_DENORT = `
deno compile could not get its runtime (denort ${Deno.version.deno} for ${Deno.build.target}).
deno compile joins the gateway's code to a prebuilt runtime, denort, which it downloads from
Deno's release host when it is not cached. This machine has no cached copy and cannot reach that
host. Provide one of: DENORT_BIN=/path/to/denort (a denort ${Deno.version.deno} binary for this
platform), a DENO_DIR whose cache holds dl/release/v${Deno.version.deno}/denort-${Deno.build.target}.zip
(copy it from a machine that has compiled once), or run this on a machine with normal network
access. Until then, run the gateway from source with \`deno task start\`.`.trim();

async function compile(): Promise<number> {
  const denort = localDenort();
  console.error(
    denort
      ? `using denort from ${denort}`
      : "no local denort: deno compile will try to download it",
  );
  const args = [
    "compile",
    ...RUNTIME_FLAGS,
    "--exclude-unused-npm",
    // Started with new Worker(new URL(...)), which deno compile does not follow.
    "--include",
    join(ROOT, "src", "models", "inference_worker.ts"),
    "--include",
    join(ROOT, "src", "plugins", "runtime.ts"),
    // Read at run time by `gateway plugin new`.
    "--include",
    join(ROOT, "sdk", "plugin.ts"),
    "--exclude",
    join(ROOT, "node_modules"),
    "--output",
    OUTPUT,
    join(ROOT, "main.ts"),
  ];
  const result = await new Deno.Command(Deno.execPath(), {
    args,
    stdout: "inherit",
    stderr: "piped",
  }).output();
  const stderr = new TextDecoder().decode(result.stderr);
  await Deno.stderr.write(result.stderr);
  if (result.success) {
    console.error(`built ${OUTPUT}`);
    return 0;
  }
  if (!denort && /denort|download|dns|connect|network|tcp/i.test(stderr)) console.error(NO_DENORT);
  return result.code || 1;
}

if (import.meta.main) {
  const [command = "compile", ...rest] = Deno.args;
  const run = (script: string[]) => runInherited([Deno.execPath(), ...script]);
  let code: number;
  switch (command) {
    case "compile":
      code = await compile();
      break;
    case "start":
      code = await runInherited([...gatewayCommand(), "run", ...rest]);
      break;
    case "test":
      code = await run(["test", ...RUNTIME_FLAGS, ...(rest.length ? rest : ["tests/"])]);
      break;
    case "bench":
      code = await run(["run", ...RUNTIME_FLAGS, join(ROOT, "bench", "main.ts"), ...rest]);
      break;
    default:
      console.error(`build.ts: unknown command "${command}" (compile, start, test, bench)`);
      code = 2;
  }
  Deno.exit(code);
}
