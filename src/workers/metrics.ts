/**
 * The Prometheus metrics of language workers, labelled by worker:
 * calls, errors, call duration, restarts (counted here) and calls in flight
 * (a gauge the supervisor refreshes at each scrape).
 *
 * @module
 */

import type { CounterValue, HistogramValue, MetricsRegistry } from "../observability/metrics.ts";

/** One worker's metric values. */
export interface WorkerMetricValues {
  calls: CounterValue;
  errors: CounterValue;
  /** Seconds from sending a call to its result. */
  duration: HistogramValue;
  restarts: CounterValue;
}

/**
 * The worker metrics of a registry.
 *
 * @example
 * ```ts
 * import { MetricsRegistry } from "../observability/metrics.ts";
 * import { WorkerMetrics } from "./metrics.ts";
 * const metrics = new WorkerMetrics(new MetricsRegistry());
 * metrics.of("orders").calls.inc();
 * ```
 */
export class WorkerMetrics {
  readonly #calls;
  readonly #errors;
  readonly #duration;
  readonly #restarts;
  /** Calls in flight per worker; set by the supervisor's collector. */
  readonly inFlight;

  constructor(registry: MetricsRegistry) {
    this.#calls = registry.counter(
      "gateway_worker_calls_total",
      "Function calls sent to language workers.",
      ["worker"],
    );
    this.#errors = registry.counter(
      "gateway_worker_errors_total",
      "Worker calls that failed (raised, timed out, or lost with their instance).",
      ["worker"],
    );
    this.#duration = registry.histogram(
      "gateway_worker_call_duration_seconds",
      "Time from sending a call to a worker to its result.",
      ["worker"],
    );
    this.#restarts = registry.counter(
      "gateway_worker_restarts_total",
      "Worker instances restarted after an exit or missed heartbeats.",
      ["worker"],
    );
    this.inFlight = registry.gauge(
      "gateway_worker_in_flight",
      "Calls running in a worker's instances now.",
      ["worker"],
    );
  }

  /** The values labelled with `worker`. */
  of(worker: string): WorkerMetricValues {
    const labels = { worker };
    return {
      calls: this.#calls.labels(labels),
      errors: this.#errors.labels(labels),
      duration: this.#duration.labels(labels),
      restarts: this.#restarts.labels(labels),
    };
  }
}
