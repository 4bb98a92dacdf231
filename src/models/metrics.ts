/**
 * The inference metrics in the gateway's Prometheus registry: runs, run
 * durations, batch sizes, cache hits and misses, OCR pages, and the shared
 * supervision metrics (kind `model`).
 *
 * @module
 */

import type { MetricsRegistry } from "../observability/metrics.ts";
import { SupervisionMetrics } from "../supervision/metrics.ts";

/**
 * Registers (or finds) the inference metrics.
 *
 * @example
 * ```ts
 * import { MetricsRegistry } from "../observability/metrics.ts";
 * import { modelMetrics } from "./metrics.ts";
 * const metrics = modelMetrics(new MetricsRegistry());
 * metrics.runs.labels({ model: "add", result: "ok" }).inc();
 * ```
 */
export function modelMetrics(registry: MetricsRegistry) {
  return {
    runs: registry.counter(
      "gateway_model_runs_total",
      "Model runs, by model and result (ok, error); cache hits are not runs.",
      ["model", "result"],
    ),
    duration: registry.histogram(
      "gateway_model_run_seconds",
      "Time of one model run as the caller sees it (queue, batch window and inference).",
      ["model"],
    ),
    batchSize: registry.histogram(
      "gateway_model_batch_size",
      "Requests joined into one run, for models with maxBatch > 1.",
      ["model"],
      [1, 2, 4, 8, 16, 32, 64, 128],
    ),
    cache: registry.counter(
      "gateway_model_cache_total",
      "Result cache lookups, by model and result (hit, miss).",
      ["model", "result"],
    ),
    ocrPages: registry.counter(
      "gateway_ocr_pages_total",
      "Pages read by OCR, by result (ok, rejected, error).",
      ["result"],
    ),
    ocrDuration: registry.histogram("gateway_ocr_page_seconds", "Time to read one page.", []),
    supervision: new SupervisionMetrics(registry),
  };
}

/** The inference metrics. */
export type ModelMetrics = ReturnType<typeof modelMetrics>;
