/**
 * The config of one language worker: an entry of the `workers` section.
 * Paths (`cwd`, a relative `command[0]` with a slash, `watch` globs) are
 * made absolute against the config file, and the program must exist.
 *
 * @module
 */

import { join, resolve } from "node:path";
import { z } from "zod";
import { directoryProblem } from "../config/paths.ts";
import type { ConfigSection } from "../config/section.ts";
import { Duration, Size } from "../config/units.ts";

/**
 * One worker: the process to start, how many, and how it is supervised.
 *
 * @example
 * ```ts
 * import { WorkerConfig } from "./config.ts";
 * const worker = WorkerConfig.parse({ name: "orders", command: ["python3", "orders.py"] });
 * worker.instances; // 1
 * ```
 */
export const WorkerConfig = z.strictObject({
  name: z.string().regex(/^[A-Za-z0-9_-]+$/, "worker names use letters, digits, '_' and '-'")
    .describe("the owner of its functions: 'worker:<name>.<function>' and fn/<name>/<function>"),
  command: z.array(z.string().min(1)).min(1).describe(
    'argv, e.g. ["python3", "workers/orders.py"]; run in cwd',
  ),
  cwd: z.string().optional().describe(
    "working directory, relative to the config file (default: the config file's directory)",
  ),
  env: z.record(z.string(), z.string()).meta({ secret: true }).default({}).describe(
    "extra environment variables ('env:NAME' reads the gateway's); GATEWAY_* are set by the gateway",
  ),
  instances: z.number().int().min(1).max(256).default(1),
  concurrency: z.number().int().min(1).max(100_000).default(16).describe(
    "calls in flight per instance at most (the SDK may declare fewer in its hello)",
  ),
  watch: z.array(z.string().min(1)).default([]).describe(
    "globs relative to cwd ('**/*.py'); a change restarts the instances one by one",
  ),
  restart: z.enum(["always", "on-failure", "never"]).default("always").describe(
    "on-failure: only after a non-zero exit, a signal or missed heartbeats",
  ),
  startTimeout: Duration.default(10_000).describe("from spawn until the worker's hello"),
  stopTimeout: Duration.default(5000).describe(
    "after 'stop' before SIGTERM, and after SIGTERM before SIGKILL",
  ),
  heartbeat: Duration.default(5000).describe(
    "ping interval; an instance silent for 3 intervals is killed and restarted",
  ),
  maxFrame: Size.default(16 * 1024 * 1024).describe(
    "largest frame either side may send; a larger one drops the instance's connection",
  ),
  queue: z.number().int().min(0).default(1024).describe(
    "calls waiting for a free instance at most; more are refused 'overloaded' (503)",
  ),
});

/** One worker's validated config. */
export type WorkerConfig = z.output<typeof WorkerConfig>;

/** The `workers` section: names are unique (checked even when other entries are invalid). */
export const WorkersConfig = z.array(WorkerConfig).superRefine((workers, ctx) => {
  const first = new Map<unknown, number>();
  workers.forEach((worker, i) => {
    const name = (worker as Partial<WorkerConfig> | undefined)?.name;
    const earlier = first.get(name);
    if (earlier === undefined) first.set(name, i);
    else {
      ctx.addIssue({
        code: "custom",
        path: [i, "name"],
        message: `worker "${name}" is already defined by workers[${earlier}]`,
      });
    }
  });
}, { when: () => true });

/** Whether `program` (a path, or a name looked up in `path`) is an executable file. */
async function findProgram(program: string, path: string): Promise<boolean> {
  const candidates = program.includes("/")
    ? [program]
    : path.split(":").filter(Boolean).map((dir) => join(dir, program));
  for (const candidate of candidates) {
    const info = await Deno.stat(candidate).catch(() => undefined);
    if (info?.isFile && (info.mode === null || (info.mode & 0o111) !== 0)) return true;
  }
  return false;
}

/**
 * The `workers` section: names define the name kind `worker` (a function
 * owner); `cwd` must be a directory and the program must exist.
 */
export const workersSection = {
  schema: WorkersConfig.default([]).describe("language workers (Python, PHP, Node, ...)"),
  defines: {
    worker: (workers) =>
      workers.flatMap((worker, i) => [{ name: worker.name, path: ["workers", i] }]),
  },
  async resolve(workers, { dir, env, report }) {
    for (const [i, worker] of workers.entries()) {
      const cwd = worker.cwd = resolve(dir, worker.cwd ?? ".");
      const program = worker.command[0];
      if (program.includes("/")) worker.command[0] = resolve(cwd, program);
      worker.watch = worker.watch.map((glob) => resolve(cwd, glob));
      const problem = await directoryProblem(cwd);
      if (problem) report(["workers", i, "cwd"], problem);
      else if (!await findProgram(worker.command[0], worker.env.PATH ?? env("PATH") ?? "")) {
        report(
          ["workers", i, "command"],
          program.includes("/")
            ? `"${worker.command[0]}" does not exist or is not executable`
            : `"${program}" was not found on PATH (is it installed?)`,
        );
      }
    }
  },
} satisfies ConfigSection<z.ZodDefault<typeof WorkersConfig>>;

/** The validated `workers` section. */
export type WorkersConfig = z.output<typeof WorkersConfig>;
