/**
 * What a supervised part has done: calls, errors, recent durations, restarts
 * and its latest error, kept once for the status shape every kind shows and
 * counted in the shared metrics.
 *
 * @module
 */

import { LatencyWindow } from "../observability/latency.ts";
import type { PartMetricValues } from "./metrics.ts";

/** Where a supervised part stands. */
export type PartState = "starting" | "running" | "backoff" | "failed" | "stopped";

/** The latest problem of a part. */
export interface PartProblem {
  message: string;
  /** `file:line:column` in the part's source, when known (plugins). */
  at?: string;
  /** When it happened (ISO 8601). */
  time: string;
}

/** The status every supervised part shows, whatever its kind. */
export interface PartStatus {
  state: PartState | string;
  restarts: number;
  lastError: PartProblem | null;
  inFlight: number;
  queue: number;
  calls: number;
  errors: number;
  /** Milliseconds, over the latest calls; null before the first. */
  p50: number | null;
  p99: number | null;
}

/**
 * The counts and timings of one part.
 *
 * @example
 * ```ts
 * import { MetricsRegistry } from "../observability/metrics.ts";
 * import { SupervisionMetrics } from "./metrics.ts";
 * import { CallStats } from "./stats.ts";
 * const stats = new CallStats(new SupervisionMetrics(new MetricsRegistry()).of("model", "add"));
 * stats.record(2.5);
 * stats.record(4, new Error("bad input"));
 * stats.status("running", 0, 0).errors; // 1
 * ```
 */
export class CallStats {
  readonly durations = new LatencyWindow();
  errors = 0;
  restarts = 0;
  lastError?: PartProblem;

  constructor(readonly metrics: PartMetricValues) {}

  /** Records one call's outcome: its duration in ms, and its error when it failed. */
  record(ms: number, error?: unknown): void {
    this.durations.add(ms);
    this.metrics.calls.inc();
    this.metrics.duration.observe(ms / 1000);
    if (error === undefined) return;
    this.errors++;
    this.metrics.errors.inc();
    this.problem(error instanceof Error ? error.message : String(error));
  }

  /** Keeps `message` (and where, when known) as the latest error. */
  problem(message: string, at?: string): void {
    this.lastError = { message, ...(at ? { at } : {}), time: new Date().toISOString() };
  }

  /** Counts one restart (or replacement); `why` becomes the latest error. */
  restarted(why: string): void {
    this.restarts++;
    this.problem(why);
    this.metrics.restarts.inc();
  }

  /** The shared status shape, with what only the part knows. */
  status(state: PartStatus["state"], inFlight: number, queue: number): PartStatus {
    return {
      state,
      restarts: this.restarts,
      lastError: this.lastError ?? null,
      inFlight,
      queue,
      calls: this.durations.total,
      errors: this.errors,
      p50: this.durations.quantile(0.5),
      p99: this.durations.quantile(0.99),
    };
  }
}
