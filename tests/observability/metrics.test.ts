/**
 * The Prometheus text exposition, byte for byte: counters, gauges,
 * histograms, label escaping, collectors, and registration by name.
 */

import { assert, assertEquals } from "../helpers/assert.ts";
import {
  HistogramValue,
  LATENCY_BUCKETS,
  MetricsRegistry,
} from "../../src/observability/metrics.ts";

/** Returns the error `fn` throws, or fails. */
function thrown(fn: () => unknown): Error {
  try {
    fn();
  } catch (error) {
    return error as Error;
  }
  throw new Error("expected an error");
}

Deno.test("an empty registry renders a single newline", () => {
  assertEquals(new MetricsRegistry().render(), "\n");
});

Deno.test("counter: HELP, TYPE and one line per label set, in creation order", () => {
  const registry = new MetricsRegistry();
  const requests = registry.counter("requests_total", "Requests served.", ["route", "status"]);
  requests.labels({ route: "api", status: "200" }).inc();
  requests.labels({ route: "api", status: "200" }).inc(2);
  requests.labels({ route: "web", status: "404" }).inc(0.5);
  assertEquals(
    registry.render(),
    [
      "# HELP requests_total Requests served.",
      "# TYPE requests_total counter",
      'requests_total{route="api",status="200"} 3',
      'requests_total{route="web",status="404"} 0.5',
      "",
    ].join("\n"),
  );
});

Deno.test("a metric without labels renders without braces", () => {
  const registry = new MetricsRegistry();
  registry.counter("up_total", "Starts.").labels().inc();
  registry.gauge("temperature", "Degrees.").labels({}).set(-3.5);
  assertEquals(
    registry.render(),
    [
      "# HELP up_total Starts.",
      "# TYPE up_total counter",
      "up_total 1",
      "# HELP temperature Degrees.",
      "# TYPE temperature gauge",
      "temperature -3.5",
      "",
    ].join("\n"),
  );
});

Deno.test("gauge: set, inc and dec; NaN and infinities in Prometheus spelling", () => {
  const registry = new MetricsRegistry();
  const gauge = registry.gauge("in_flight", "Requests running.", ["listener"]);
  const web = gauge.labels({ listener: "web" });
  web.set(5);
  web.inc();
  web.inc(2);
  web.dec();
  web.dec(0.5);
  gauge.labels({ listener: "nan" }).set(Number.NaN);
  gauge.labels({ listener: "up" }).set(Number.POSITIVE_INFINITY);
  gauge.labels({ listener: "down" }).set(Number.NEGATIVE_INFINITY);
  assertEquals(
    registry.render(),
    [
      "# HELP in_flight Requests running.",
      "# TYPE in_flight gauge",
      'in_flight{listener="web"} 6.5',
      'in_flight{listener="nan"} NaN',
      'in_flight{listener="up"} +Inf',
      'in_flight{listener="down"} -Inf',
      "",
    ].join("\n"),
  );
});

Deno.test("histogram: cumulative buckets, +Inf, _sum and _count, with labels", () => {
  const registry = new MetricsRegistry();
  const latency = registry.histogram("latency_seconds", "Latency.", ["route"], [1, 5, 10]);
  const api = latency.labels({ route: "api" });
  for (const value of [0.5, 1, 3, 20]) api.observe(value);
  latency.labels({ route: "idle" });
  assertEquals(
    registry.render(),
    [
      "# HELP latency_seconds Latency.",
      "# TYPE latency_seconds histogram",
      'latency_seconds_bucket{route="api",le="1"} 2',
      'latency_seconds_bucket{route="api",le="5"} 3',
      'latency_seconds_bucket{route="api",le="10"} 3',
      'latency_seconds_bucket{route="api",le="+Inf"} 4',
      'latency_seconds_sum{route="api"} 24.5',
      'latency_seconds_count{route="api"} 4',
      'latency_seconds_bucket{route="idle",le="1"} 0',
      'latency_seconds_bucket{route="idle",le="5"} 0',
      'latency_seconds_bucket{route="idle",le="10"} 0',
      'latency_seconds_bucket{route="idle",le="+Inf"} 0',
      'latency_seconds_sum{route="idle"} 0',
      'latency_seconds_count{route="idle"} 0',
      "",
    ].join("\n"),
  );
});

Deno.test("histogram without labels; default buckets are the latency buckets", () => {
  const registry = new MetricsRegistry();
  const h = registry.histogram("job_seconds", "Jobs.", [], [0.25, 2.5]);
  h.labels().observe(0.25);
  h.labels().observe(1);
  assertEquals(
    registry.render(),
    [
      "# HELP job_seconds Jobs.",
      "# TYPE job_seconds histogram",
      'job_seconds_bucket{le="0.25"} 1',
      'job_seconds_bucket{le="2.5"} 2',
      'job_seconds_bucket{le="+Inf"} 2',
      "job_seconds_sum 1.25",
      "job_seconds_count 2",
      "",
    ].join("\n"),
  );
  const child = registry.histogram("default_seconds", "Default.").labels();
  assertEquals(child.buckets, LATENCY_BUCKETS);
  child.observe(0.003);
  assertEquals(child.counts.filter((n) => n > 0).length, 1);
  assertEquals(child.counts[LATENCY_BUCKETS.indexOf(0.005)], 1);
});

Deno.test("HistogramValue counts a value above every bucket only in +Inf", () => {
  const value = new HistogramValue([1, 2]);
  value.observe(3);
  assertEquals([value.counts, value.count, value.sum], [[0, 0], 1, 3]);
});

Deno.test('label values escape \\, " and newline', () => {
  const registry = new MetricsRegistry();
  registry.counter("odd_total", "Odd labels.", ["v"]).labels({ v: 'say "hi"\\path\nnext' }).inc();
  assertEquals(
    registry.render().split("\n")[2],
    'odd_total{v="say \\"hi\\"\\\\path\\nnext"} 1',
  );
});

Deno.test("labels follow the declared order, and the same values give the same child", () => {
  const registry = new MetricsRegistry();
  const counter = registry.counter("pairs_total", "Pairs.", ["a", "b"]);
  const one = counter.labels({ b: "2", a: "1" });
  assert(one === counter.labels({ a: "1", b: "2" }), "same child");
  assert(one !== counter.labels({ a: "1", b: "3" }), "different child");
  one.inc();
  assertEquals(registry.render().split("\n")[2], 'pairs_total{a="1",b="2"} 1');
});

Deno.test("a missing label throws naming it", () => {
  const registry = new MetricsRegistry();
  const counter = registry.counter("c_total", "C.", ["route", "status"]);
  assertEquals(thrown(() => counter.labels({ route: "x" })).message, 'missing label "status"');
  const histogram = registry.histogram("h", "H.", ["route"]);
  assertEquals(thrown(() => histogram.labels()).message, 'missing label "route"');
  assertEquals(registry.render().split("\n").filter((l) => !l.startsWith("#")), [""]);
});

Deno.test("collectors run before every render", () => {
  const registry = new MetricsRegistry();
  const gauge = registry.gauge("memory_bytes", "Memory.");
  let runs = 0;
  registry.collect(() => {
    runs++;
    gauge.labels().set(runs * 100);
  });
  assertEquals(runs, 0, "not at registration");
  assert(registry.render().includes("\nmemory_bytes 100\n"));
  assert(registry.render().includes("\nmemory_bytes 200\n"));
  assertEquals(runs, 2);
});

Deno.test("reset forgets every child", () => {
  const registry = new MetricsRegistry();
  const gauge = registry.gauge("targets", "Targets.", ["name"]);
  gauge.labels({ name: "a" }).set(1);
  registry.collect(() => {
    gauge.reset();
    gauge.labels({ name: "b" }).set(2);
  });
  assertEquals(
    registry.render(),
    '# HELP targets Targets.\n# TYPE targets gauge\ntargets{name="b"} 2\n',
  );
});

Deno.test("registering a name again returns the same metric, rendered once", () => {
  const registry = new MetricsRegistry();
  const first = registry.counter("hits_total", "Hits.", ["route"]);
  const second = registry.counter("hits_total", "Other help.", ["route"]);
  assert(first === second, "same counter");
  first.labels({ route: "a" }).inc();
  second.labels({ route: "a" }).inc();
  assert(registry.gauge("g", "G.") === registry.gauge("g", "G."), "same gauge");
  assert(registry.histogram("h", "H.") === registry.histogram("h", "H."), "same histogram");
  const text = registry.render();
  assertEquals(text.match(/# HELP hits_total/g)?.length, 1);
  assert(text.includes("# HELP hits_total Hits.\n"), "the first help wins");
  assert(text.includes('hits_total{route="a"} 2\n'), text);
});
