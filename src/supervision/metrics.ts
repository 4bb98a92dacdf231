/**
 * The metrics every supervised part shares, whatever its kind: one set of
 * names, labelled `kind` (`plugin`, `worker`, `model`) and `name`.
 *
 * @module
 */

import type {
  CounterValue,
  GaugeValue,
  HistogramValue,
  MetricsRegistry,
} from "../observability/metrics.ts";

/** The kinds of supervised part. */
export type PartKind = "plugin" | "worker" | "model";

/** One part's metric values. */
export interface PartMetricValues {
  calls: CounterValue;
  errors: CounterValue;
  /** Seconds from handing a call to the part to its answer. */
  duration: HistogramValue;
  restarts: CounterValue;
  inFlight: GaugeValue;
  queued: GaugeValue;
}

/**
 * The supervision metrics of a registry (registered once, found again by
 * every module that asks).
 *
 * @example
 * ```ts
 * import { MetricsRegistry } from "../observability/metrics.ts";
 * import { SupervisionMetrics } from "./metrics.ts";
 * const metrics = new SupervisionMetrics(new MetricsRegistry());
 * metrics.of("worker", "orders").calls.inc();
 * ```
 */
export class SupervisionMetrics {
  readonly #calls;
  readonly #errors;
  readonly #duration;
  readonly #restarts;
  readonly #inFlight;
  readonly #queued;

  constructor(registry: MetricsRegistry) {
    const labels = ["kind", "name"];
    this.#calls = registry.counter(
      "gateway_supervised_calls_total",
      "Calls handed to plugins, language workers and models, by kind and name.",
      labels,
    );
    this.#errors = registry.counter(
      "gateway_supervised_errors_total",
      "Calls that failed (threw, timed out, overloaded, unavailable, lost with their process).",
      labels,
    );
    this.#duration = registry.histogram(
      "gateway_supervised_call_seconds",
      "Time from handing a call to a plugin, worker or model to its answer.",
      labels,
    );
    this.#restarts = registry.counter(
      "gateway_supervised_restarts_total",
      "Plugin Workers, worker instances and inference Workers restarted or replaced.",
      labels,
    );
    this.#inFlight = registry.gauge(
      "gateway_supervised_in_flight",
      "Calls running in a plugin, worker or model now.",
      labels,
    );
    this.#queued = registry.gauge(
      "gateway_supervised_queued",
      "Calls waiting for a free slot of a plugin, worker or model.",
      labels,
    );
  }

  /** The values labelled with `kind` and `name`. */
  of(kind: PartKind, name: string): PartMetricValues {
    const labels = { kind, name };
    return {
      calls: this.#calls.labels(labels),
      errors: this.#errors.labels(labels),
      duration: this.#duration.labels(labels),
      restarts: this.#restarts.labels(labels),
      inFlight: this.#inFlight.labels(labels),
      queued: this.#queued.labels(labels),
    };
  }
}
