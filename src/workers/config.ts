/**
 * The config of one language worker: an entry of the `workers` section.
 * Paths (`cwd`, a relative `command[0]` with a slash, `watch` globs) are
 * resolved against the config file by `src/config/load.ts`.
 *
 * @module
 */

import { z } from "zod";
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
  env: z.record(z.string(), z.string()).default({}).describe(
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
