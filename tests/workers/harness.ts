/**
 * Starts real worker processes through the real {@link WorkerSupervisor}
 * (in this process, on a bus of its own) for the worker tests.
 *
 * @module
 */

import { basename, join } from "node:path";
import { Bus } from "../../src/bus/bus.ts";
import { callFunction } from "../../src/functions/call.ts";
import { MetricsRegistry } from "../../src/observability/metrics.ts";
import { WorkerSupervisor } from "../../src/workers/supervisor.ts";
import { configFor } from "../helpers/config.ts";

/** The repository root: worker commands run there unless they say otherwise. */
export const ROOT: string = join(import.meta.dirname!, "..", "..");

/** The example workers' argv per runtime (the Node one needs {@link nodeBundle} first). */
export const EXAMPLES = {
  python: ["python3", join(ROOT, "examples/workers/python/worker.py")],
  php: ["php", join(ROOT, "examples/workers/php/worker.php")],
  deno: [Deno.execPath(), "run", "-A", join(ROOT, "examples/workers/node/worker.ts")],
};

const bundled = new Map<string, Promise<string>>();

/**
 * A TypeScript worker (by default the Node example) bundled into one
 * JavaScript file `<name>.mjs` (Node 20 runs no TypeScript), built once per
 * test process with `deno bundle`.
 *
 * @example
 * ```ts
 * import { nodeBundle } from "./harness.ts";
 * const command = ["node", await nodeBundle()];
 * ```
 */
export function nodeBundle(entry = join(ROOT, "examples/workers/node/worker.ts")): Promise<string> {
  let bundle = bundled.get(entry);
  if (bundle) return bundle;
  bundle = (async () => {
    const dir = await Deno.makeTempDir({ prefix: "workers-node-" });
    globalThis.addEventListener("unload", () => Deno.removeSync(dir, { recursive: true }));
    const out = join(dir, `${basename(entry, ".ts")}.mjs`);
    const { success, stderr } = await new Deno.Command(Deno.execPath(), {
      args: [
        "bundle",
        "--platform",
        "deno",
        "-o",
        out,
        entry,
      ],
      stdout: "null",
      stderr: "piped",
    }).output();
    if (!success) throw new Error(`deno bundle failed: ${new TextDecoder().decode(stderr)}`);
    return out;
  })();
  bundled.set(entry, bundle);
  return bundle;
}

const source = { listener: "test", protocol: "gateway" } as const;

/** A supervisor running some workers, and what a test needs around it. */
export interface WorkerHarness extends AsyncDisposable {
  bus: Bus;
  metrics: MetricsRegistry;
  supervisor: WorkerSupervisor;
  dir: string;
  /** Calls a function through the bus, as a route or plugin would. */
  call(ref: string, args?: unknown, timeout?: number): Promise<unknown>;
  /** The status of worker `name` as GET /workers/:name shows it. */
  status(name: string): WorkerStatus;
}

/** The parts of a worker's status the tests read. */
export interface WorkerStatus {
  state: string;
  calls: number;
  errors: number;
  restarts: number;
  lastError: { message: string } | null;
  instances: {
    pid: number;
    state: string;
    restarts: number;
    inFlight: number;
    calls: number;
    reason?: string;
    /** The process state of a running slot (`ready`, `disconnected`, ...). */
    process?: string;
    lastExit?: { code: number; signal: string | null; stoppedBy?: string; requested: boolean };
  }[];
}

/**
 * Starts `workers` (config entries; `cwd` defaults to the repository root)
 * with a fresh supervisor and data directory, as the gateway's first start
 * does (`starting: false` prepares them as a reload would).
 *
 * @example
 * ```ts
 * import { EXAMPLES, startWorkers } from "./harness.ts";
 * await using workers = await startWorkers([{ name: "python", command: EXAMPLES.python }]);
 * await workers.call("python.add", { a: 1, b: 2 }); // 3
 * ```
 */
export async function startWorkers(
  workers: Record<string, unknown>[],
  { starting = true } = {},
): Promise<WorkerHarness> {
  const dir = await Deno.makeTempDir({ prefix: "workers-test-" });
  const metrics = new MetricsRegistry();
  const bus = new Bus(metrics);
  const supervisor = new WorkerSupervisor(bus, metrics);
  try {
    const { config, context } = configFor({
      storage: { dataDir: dir },
      workers: workers.map((worker) => ({ cwd: ROOT, ...worker })),
    }, { starting });
    await (await supervisor.prepare(config, context)).commit();
  } catch (error) {
    await supervisor.stop();
    await Deno.remove(dir, { recursive: true });
    throw error;
  }
  return {
    bus,
    metrics,
    supervisor,
    dir,
    call: (ref, args = null, timeout = 10_000) => callFunction(bus, ref, args, { source, timeout }),
    status: (name) => supervisor.worker(name)!.status() as unknown as WorkerStatus,
    async [Symbol.asyncDispose]() {
      await supervisor.stop();
      await Deno.remove(dir, { recursive: true });
    },
  };
}

/**
 * Polls `check` until it returns a truthy value and returns that; throws with
 * `what` after `timeoutMs` (a liveness bound, not a speed assertion).
 *
 * @example
 * ```ts
 * import { waitFor } from "./harness.ts";
 * const started = Date.now();
 * await waitFor("50 ms to pass", () => Date.now() - started > 50);
 * ```
 */
export async function waitFor<T>(
  what: string,
  check: () => T,
  timeoutMs = 15_000,
): Promise<Exclude<T, false | null | undefined | 0 | "">> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = check();
    if (value) return value as Exclude<T, false | null | undefined | 0 | "">;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
}

/** What a {@link steadyLoad} saw. */
export interface LoadOutcome {
  ok: number;
  failures: Error[];
}

/**
 * `clients` loops each calling `call` back to back until `stop()`, counting
 * successes and keeping the failures.
 *
 * @example
 * ```ts
 * import { steadyLoad } from "./harness.ts";
 * const load = steadyLoad(() => Promise.resolve(), 4);
 * const { ok, failures } = await load.stop();
 * ```
 */
export function steadyLoad(
  call: () => Promise<unknown>,
  clients: number,
): { readonly ok: number; stop(): Promise<LoadOutcome> } {
  let running = true;
  const outcome: LoadOutcome = { ok: 0, failures: [] };
  const loops = Array.from({ length: clients }, async () => {
    while (running) {
      try {
        await call();
        outcome.ok++;
      } catch (error) {
        outcome.failures.push(error as Error);
      }
    }
  });
  return {
    get ok() {
      return outcome.ok;
    },
    async stop() {
      running = false;
      await Promise.all(loops);
      return outcome;
    },
  };
}
