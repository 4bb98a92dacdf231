/**
 * Owns the one list of runtime flags, {@link RUNTIME_FLAGS}, so that
 * `deno task start`, the tests and the compiled binary run with the same
 * permissions and unstable features.
 *
 * ```sh
 * deno run -A build.ts compile          # dist/gateway (deno task build)
 * deno run -A build.ts start [args]     # the gateway from source (deno task start)
 * deno run -A build.ts test [args]      # the test suite (deno task test)
 * deno run -A build.ts gateway [args]   # any CLI command from source (deno task gateway)
 * deno run -A build.ts install          # a `gateway` command on PATH (deno task install)
 * deno run -A build.ts bench [names]    # the benchmarks (deno task bench)
 * deno run -A build.ts check            # fmt, lint, type check with JSDoc examples (deno task check)
 * ```
 *
 * `deno.lock` pins what the gateway runs and nothing else: `deno task` fetches
 * every package in it before any task starts. Bench- and test-only packages
 * (onnxruntime-node, undici, onnx-proto) are imported with versioned `npm:`
 * specifiers where they are used, and what reaches them (the tests, the
 * benchmarks, `check`) resolves against {@link lockCopy}, so they never enter
 * `deno.lock`. The gateway processes the tests start use `deno.lock` itself.
 *
 * @module
 */

import { existsSync, readFileSync } from "node:fs";
import { dirname, join, relative, resolve } from "node:path";

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

/** Debian packages the tests use, each with what needs it; `deno task test` installs the missing ones. */
export const TEST_PACKAGES: Readonly<Record<string, string>> = {
  "openssl": "TLS certificates for the HTTPS listener tests",
  "util-linux": "prlimit, for the file-descriptor exhaustion tests",
  "php-cli": "the PHP worker SDK's tests",
  "python3": "the Python worker SDK's tests",
  "mosquitto": "the upstream broker of the MQTT bridge tests",
  "mosquitto-clients": "mosquitto_pub and mosquitto_sub against the embedded broker",
};

/** Debian packages `deno task start` needs for the bundled config; it installs the missing ones. */
export const START_PACKAGES: Readonly<Record<string, string>> = {
  "python3": "the example worker of config/config.json",
};

/** Debian packages only the benchmarks use; `deno task bench` installs them (and the test ones). */
export const BENCH_PACKAGES: Readonly<Record<string, string>> = {
  ...TEST_PACKAGES,
  "nginx": "the reverse-proxy baseline of bench/http.ts",
  "wrk": "the HTTP load generator of bench/http.ts",
  "mosquitto": "the baseline broker of bench/mqtt.ts",
};

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

/**
 * A copy of `deno.lock` in a new temporary file, for commands that reach
 * bench- or test-only packages: they get the runtime's pins, and what they add
 * is dropped with the copy instead of entering `deno.lock`. The caller removes it.
 *
 * @example
 * ```ts
 * import { lockCopy } from "./build.ts";
 * const lock = await lockCopy();
 * new Deno.Command(Deno.execPath(), { args: ["check", `--lock=${lock}`, "bench/models.ts"] });
 * await Deno.remove(lock);
 * ```
 */
export async function lockCopy(): Promise<string> {
  const copy = await Deno.makeTempFile({ prefix: "gateway-", suffix: ".lock" });
  await Deno.copyFile(join(ROOT, "deno.lock"), copy);
  return copy;
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
    // Read at run time by `gateway plugin new` and `gateway init`.
    "--include",
    join(ROOT, "sdk", "plugin.ts"),
    "--include",
    join(ROOT, "sdk", "python", "gateway_worker.py"),
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

/** Whether `file` (or a module of `tests/` it imports) starts processes: `new Deno.Command`. */
function startsProcesses(file: string, seen = new Set<string>()): boolean {
  seen.add(file);
  const source = readFileSync(file, "utf8");
  if (/new Deno\.Command\(/.test(source)) return true;
  for (const [, specifier] of source.matchAll(/(?:from|import\()\s*"(\.\.?\/[^"]+\.ts)"/g)) {
    const imported = resolve(dirname(file), specifier);
    const inTests = !relative(join(ROOT, "tests"), imported).startsWith("..");
    if (inTests && !seen.has(imported) && startsProcesses(imported, seen)) return true;
  }
  return false;
}

/** The test files under `dir` (`*.test.ts`, `*_test.ts`), sorted. */
function testFiles(dir: string): string[] {
  const files: string[] = [];
  for (const entry of Deno.readDirSync(dir)) {
    const path = join(dir, entry.name);
    if (entry.isDirectory) files.push(...testFiles(path));
    else if (/[._]test\.ts$/.test(entry.name)) files.push(path);
  }
  return files.sort();
}

/**
 * The whole suite in two runs, each ending in Deno's summary line: files that
 * start no processes with `--parallel`, then those that start gateways, brokers
 * or workers one at a time (they contend for ports and the 2 cores of CI).
 * `--coverage=DIR` (among `flags`) collects the raw coverage of both runs, with
 * every Deno process the tests start, into `DIR/parallel` and `DIR/serial`
 * (`deno coverage DIR/parallel DIR/serial` reports it).
 */
async function testSuite(flags: string[]): Promise<number> {
  const files = testFiles(join(ROOT, "tests"));
  const serial = files.filter((file) => startsProcesses(file));
  const parallel = files.filter((file) => !serial.includes(file));
  const coverage = flags.find((flag) => flag.startsWith("--coverage="))?.slice(11);
  const others = flags.filter((flag) => !flag.startsWith("--coverage="));
  if (coverage) await Deno.remove(coverage, { recursive: true }).catch(() => {});
  const run = (name: string, extra: string[], group: string[]) =>
    runInherited([
      Deno.execPath(),
      "test",
      ...RUNTIME_FLAGS,
      ...extra,
      ...others,
      ...(coverage ? [`--coverage=${join(coverage, name)}`, "--coverage-raw-data-only"] : []),
      ...group,
    ]);
  console.error(`${parallel.length} test files in parallel, then ${serial.length} one at a time`);
  const unit = await run("parallel", ["--parallel"], parallel);
  const integration = await run("serial", [], serial);
  return unit || integration;
}

/**
 * Installs those of `packages` (name → what needs it) that are missing, with
 * `apt-get` as root or through `sudo -n`, after one line saying what, why and
 * the download size. Returns 0 when all are there; otherwise prints the
 * command to run and returns 1.
 */
async function provisionPackages(packages: Readonly<Record<string, string>>): Promise<number> {
  if (Deno.build.os !== "linux" || !existsSync("/usr/bin/dpkg-query")) return 0;
  const names = Object.keys(packages);
  const query = await new Deno.Command("dpkg-query", {
    args: ["-W", "-f=${Package} ${Status}\\n", ...names],
    stdout: "piped",
    stderr: "null",
  }).output();
  const installed = new Set(
    new TextDecoder().decode(query.stdout).split("\n")
      .filter((line) => line.endsWith(" install ok installed"))
      .map((line) => line.split(" ")[0]),
  );
  const missing = names.filter((name) => !installed.has(name));
  if (missing.length === 0) return 0;
  const apt = [
    ...(Deno.uid() === 0 ? [] : ["sudo", "-n"]),
    ...["env", "DEBIAN_FRONTEND=noninteractive", "apt-get", "-qq"],
  ];
  const install = ["install", "-y", "--no-install-recommends", "-o", "DPkg::Lock::Timeout=300"];
  let code: number;
  try {
    code = await runInherited([...apt, "update"]);
    if (code === 0) {
      // One line per file to fetch: 'URL' NAME SIZE HASH.
      const uris = await new Deno.Command(apt[0], {
        args: [...apt.slice(1), ...install, "--print-uris", ...missing],
        stdout: "piped",
        stderr: "null",
      }).output();
      const bytes = new TextDecoder().decode(uris.stdout).split("\n")
        .reduce((sum, line) => sum + (Number(line.split(" ")[2]) || 0), 0);
      const why = missing.map((name) => `${name} (${packages[name]})`).join(", ");
      console.error(
        `build.ts: installing ${why}: ${
          bytes < 1e6 ? `${Math.ceil(bytes / 1e3)} kB` : `${(bytes / 1e6).toFixed(1)} MB`
        } to download`,
      );
      code = await runInherited([...apt, ...install, ...missing]);
    }
  } catch { // no sudo
    code = 1;
  }
  if (code !== 0) {
    console.error(
      `build.ts: missing ${missing.join(" ")}; run: sudo apt-get install ${missing.join(" ")}`,
    );
  }
  return code;
}

/** `deno task check`: formatting, lint, and types including every JSDoc example. */
async function check(): Promise<number> {
  const deno = (args: string[]) => runInherited([Deno.execPath(), ...args]);
  const lock = await lockCopy();
  try {
    return await deno(["fmt", "--check"]) ||
      await deno(["lint"]) ||
      await deno([
        "check",
        "--doc",
        `--lock=${lock}`,
        ...["main.ts", "build.ts", "src", "sdk", "plugins", "tests", "bench"],
      ]);
  } finally {
    await Deno.remove(lock);
  }
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
      // The bundled config runs the example Python worker.
      code = await provisionPackages(START_PACKAGES) ||
        await runInherited([...gatewayCommand(), "run", ...rest]);
      break;
    case "gateway":
      code = await runInherited([...gatewayCommand(), ...rest]);
      break;
    case "install":
      code = await run([
        ...["install", "--global", "--force", "--name", "gateway"],
        ...["--config", join(ROOT, "deno.json"), ...RUNTIME_FLAGS, join(ROOT, "main.ts")],
      ]);
      break;
    case "test": {
      code = await provisionPackages(TEST_PACKAGES);
      if (code !== 0) break;
      const lock = `--lock=${await lockCopy()}`;
      // Named files or folders run as given; otherwise the whole suite (flags passed on).
      code = rest.some((arg) => !arg.startsWith("-") && existsSync(arg))
        ? await run(["test", ...RUNTIME_FLAGS, lock, ...rest])
        : await testSuite([lock, ...rest]);
      await Deno.remove(lock.slice("--lock=".length));
      break;
    }
    case "check":
      code = await check();
      break;
    case "bench":
      code = await provisionPackages(BENCH_PACKAGES) ||
        await run(["run", ...RUNTIME_FLAGS, join(ROOT, "bench", "main.ts"), ...rest]);
      break;
    default:
      console.error(
        `build.ts: unknown command "${command}" (compile, start, gateway, install, test, bench, check)`,
      );
      code = 2;
  }
  Deno.exit(code);
}
