/**
 * Plugins' own metrics in the gateway's registry: `ctx.metrics.counter("hits")`
 * becomes `gateway_plugin_hits{plugin="<name>",...}`. Each plugin may create
 * at most `plugins.maxMetricSeries` series (a metric name with one set of
 * label values); an update that would create one more is dropped and counted
 * in `gateway_plugin_metric_series_dropped_total{plugin}`, so one plugin
 * cannot grow `/metrics` (and the gateway's memory) without bound.
 *
 * @module
 */

import { getLogger } from "@logtape/logtape";
import type { MetricsRegistry } from "../observability/metrics.ts";
import { eventWarnings } from "../observability/rate_limited_log.ts";
import type { RuntimeMessage } from "./messages.ts";

const logger = getLogger(["gateway", "plugins"]);
const DROPPED = "gateway_plugin_metric_series_dropped_total";

/** One metric update a plugin sent. */
export type MetricMessage = RuntimeMessage & { kind: "metric" };

/**
 * Writes plugins' metric updates into a registry, within each plugin's
 * series budget.
 *
 * @example
 * ```ts
 * import { PluginMetricWriter } from "./metric_writer.ts";
 * import { MetricsRegistry } from "../observability/metrics.ts";
 * const registry = new MetricsRegistry();
 * const writer = new PluginMetricWriter(registry, new Set());
 * writer.limit = 1;
 * const hit = { kind: "metric", type: "counter", name: "hits", help: "Hits.", value: 1 } as const;
 * writer.write("stamp", { ...hit, labels: { path: "/a" } });
 * writer.write("stamp", { ...hit, labels: { path: "/b" } }); // over the budget: dropped
 * registry.render().includes('gateway_plugin_metric_series_dropped_total{plugin="stamp"} 1'); // true
 * ```
 */
export class PluginMetricWriter {
  /** The series each plugin created, by plugin name; kept across its versions, as the registry keeps them. */
  readonly #series = new Map<string, Set<string>>();
  readonly #reserved: ReadonlySet<string>;
  readonly #dropped;
  /** The series budget per plugin: the host sets it from the config before each load. */
  limit = Infinity;

  /** `reserved` are the host's own metric names, which no plugin may write. */
  constructor(readonly registry: MetricsRegistry, reserved: ReadonlySet<string>) {
    this.#reserved = new Set([...reserved, DROPPED]);
    this.#dropped = registry.counter(
      DROPPED,
      "Plugin metric updates dropped because they would create a series beyond " +
        "plugins.maxMetricSeries, by plugin.",
      ["plugin"],
    );
  }

  /** Applies one update from `plugin`; one the name, the budget or the registry refuses is dropped. */
  write(plugin: string, message: MetricMessage): void {
    const metric = `gateway_plugin_${message.name.replace(/[^A-Za-z0-9_]/g, "_")}`;
    if (this.#reserved.has(metric)) {
      eventWarnings.warn(
        logger,
        `plugins/${plugin}/metric`,
        "plugin {name}: the metric name {metric} is the gateway's own",
        { name: plugin, metric },
      );
      return;
    }
    const labels: Record<string, string> = { ...message.labels, plugin };
    const names = Object.keys(labels).sort();
    const series = JSON.stringify([metric, ...names.map((name) => [name, labels[name]])]);
    let created = this.#series.get(plugin);
    if (!created) this.#series.set(plugin, created = new Set());
    if (!created.has(series) && created.size >= this.limit) {
      this.#dropped.labels({ plugin }).inc();
      eventWarnings.warn(
        logger,
        `plugins/${plugin}/metric-series`,
        "plugin {name}: metric {metric} dropped: the plugin has its {limit} series " +
          "(plugins.maxMetricSeries)",
        { name: plugin, metric, limit: this.limit },
      );
      return;
    }
    try {
      if (message.type === "counter") {
        this.registry.counter(metric, message.help, names).labels(labels).inc(message.value);
      } else if (message.type === "gauge") {
        this.registry.gauge(metric, message.help, names).labels(labels).set(message.value);
      } else {
        this.registry.histogram(metric, message.help, names).labels(labels).observe(message.value);
      }
      created.add(series);
    } catch (error) {
      eventWarnings.warn(
        logger,
        `plugins/${plugin}/metric`,
        "plugin {name}: metric {metric} dropped: {error}",
        { name: plugin, metric, error },
      );
    }
  }
}
