/**
 * Prometheus metrics: counters, gauges and histograms with labels, rendered
 * in the text exposition format by {@link MetricsRegistry.render}.
 *
 * Hot paths resolve a labelled child once (at build or reload time) and then
 * only add to a number: `const hits = requests.labels({ route: "api" }); hits.inc();`.
 *
 * @module
 */

type Labels = Record<string, string>;

function labelKey(names: readonly string[], labels: Labels): string {
  return names.map((name) => {
    const value = labels[name];
    if (value === undefined) throw new Error(`missing label "${name}"`);
    return `${name}="${
      value.replaceAll("\\", "\\\\").replaceAll('"', '\\"').replaceAll("\n", "\\n")
    }"`;
  }).join(",");
}

function formatValue(value: number): string {
  if (Number.isNaN(value)) return "NaN";
  if (value === Infinity) return "+Inf";
  if (value === -Infinity) return "-Inf";
  return String(value);
}

abstract class Metric<Child> {
  protected readonly children = new Map<string, Child>();
  constructor(
    readonly name: string,
    readonly help: string,
    readonly labelNames: readonly string[],
  ) {}

  protected abstract createChild(): Child;

  /** The child for these label values, created on first use. */
  labels(labels: Labels = {}): Child {
    const key = labelKey(this.labelNames, labels);
    let child = this.children.get(key);
    if (!child) {
      child = this.createChild();
      this.children.set(key, child);
    }
    return child;
  }

  /** Forgets every child, for metrics rebuilt from scratch at each scrape. */
  reset(): void {
    this.children.clear();
  }

  abstract render(): string;
}

/** A counter child: only goes up. */
export class CounterValue {
  value = 0;
  /** Adds `amount` (default 1). */
  inc(amount = 1): void {
    this.value += amount;
  }
}

/** A gauge child: any value. */
export class GaugeValue {
  value = 0;
  /** Sets the value. */
  set(value: number): void {
    this.value = value;
  }
  /** Adds `amount` (default 1). */
  inc(amount = 1): void {
    this.value += amount;
  }
  /** Subtracts `amount` (default 1). */
  dec(amount = 1): void {
    this.value -= amount;
  }
}

/** A histogram child: observations counted into cumulative buckets. */
export class HistogramValue {
  readonly counts: number[];
  sum = 0;
  count = 0;
  constructor(readonly buckets: readonly number[]) {
    this.counts = new Array(buckets.length).fill(0);
  }
  /** Records one observation. */
  observe(value: number): void {
    this.sum += value;
    this.count++;
    const i = this.buckets.findIndex((upper) => value <= upper);
    if (i >= 0) this.counts[i]++;
  }
}

/** A metric whose children are single values: counters and gauges. */
abstract class ValueMetric<Child extends { value: number }> extends Metric<Child> {
  protected abstract readonly type: "counter" | "gauge";
  render(): string {
    const lines = [`# HELP ${this.name} ${this.help}`, `# TYPE ${this.name} ${this.type}`];
    for (const [key, child] of this.children) {
      lines.push(`${this.name}${key ? `{${key}}` : ""} ${formatValue(child.value)}`);
    }
    return lines.join("\n");
  }
}

class Counter extends ValueMetric<CounterValue> {
  protected readonly type = "counter";
  protected createChild(): CounterValue {
    return new CounterValue();
  }
}

class Gauge extends ValueMetric<GaugeValue> {
  protected readonly type = "gauge";
  protected createChild(): GaugeValue {
    return new GaugeValue();
  }
}

class Histogram extends Metric<HistogramValue> {
  constructor(
    name: string,
    help: string,
    labelNames: readonly string[],
    readonly buckets: number[],
  ) {
    super(name, help, labelNames);
  }
  protected createChild(): HistogramValue {
    return new HistogramValue(this.buckets);
  }
  render(): string {
    const lines = [`# HELP ${this.name} ${this.help}`, `# TYPE ${this.name} histogram`];
    for (const [key, child] of this.children) {
      const prefix = key ? `${key},` : "";
      let cumulative = 0;
      child.buckets.forEach((upper, i) => {
        cumulative += child.counts[i];
        lines.push(`${this.name}_bucket{${prefix}le="${upper}"} ${cumulative}`);
      });
      lines.push(`${this.name}_bucket{${prefix}le="+Inf"} ${child.count}`);
      const labels = key ? `{${key}}` : "";
      lines.push(`${this.name}_sum${labels} ${formatValue(child.sum)}`);
      lines.push(`${this.name}_count${labels} ${child.count}`);
    }
    return lines.join("\n");
  }
}

/** Latency buckets in seconds, from 1 ms to 30 s. */
export const LATENCY_BUCKETS = [
  0.001,
  0.0025,
  0.005,
  0.01,
  0.025,
  0.05,
  0.1,
  0.25,
  0.5,
  1,
  2.5,
  5,
  10,
  30,
];

/**
 * A set of metrics rendered together. One registry lives for the whole
 * process, so counters keep counting across config reloads.
 *
 * @example
 * ```ts
 * import { MetricsRegistry } from "./metrics.ts";
 * const registry = new MetricsRegistry();
 * const requests = registry.counter("requests_total", "Requests served.", ["route"]);
 * requests.labels({ route: "api" }).inc();
 * registry.render(); // "# HELP requests_total Requests served.\n..."
 * ```
 */
export class MetricsRegistry {
  readonly #metrics = new Map<string, Metric<unknown>>();
  readonly #collectors: (() => void)[] = [];

  /** Registers (or returns the existing) counter. */
  counter(name: string, help: string, labelNames: readonly string[] = []): Counter {
    return this.#register(name, () => new Counter(name, help, labelNames)) as Counter;
  }

  /** Registers (or returns the existing) gauge. */
  gauge(name: string, help: string, labelNames: readonly string[] = []): Gauge {
    return this.#register(name, () => new Gauge(name, help, labelNames)) as Gauge;
  }

  /** Registers (or returns the existing) histogram. */
  histogram(
    name: string,
    help: string,
    labelNames: readonly string[] = [],
    buckets: number[] = LATENCY_BUCKETS,
  ): Histogram {
    return this.#register(name, () => new Histogram(name, help, labelNames, buckets)) as Histogram;
  }

  /** Adds a function that refreshes gauges just before each render. */
  collect(collector: () => void): void {
    this.#collectors.push(collector);
  }

  /** The Prometheus text exposition of every metric. */
  render(): string {
    for (const collector of this.#collectors) collector();
    return [...this.#metrics.values()].map((metric) => metric.render()).join("\n") + "\n";
  }

  #register(name: string, create: () => Metric<unknown>): Metric<unknown> {
    const created = create();
    const metric = this.#metrics.get(name);
    if (!metric) {
      this.#metrics.set(name, created);
      return created;
    }
    if (
      metric.constructor !== created.constructor ||
      metric.labelNames.join() !== created.labelNames.join()
    ) {
      throw new Error(`metric "${name}" is already registered with another type or labels`);
    }
    return metric;
  }
}
