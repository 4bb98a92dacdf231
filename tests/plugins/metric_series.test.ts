/**
 * The metric-series cap through the real gateway process: a plugin that
 * creates series without bound stops at `plugins.maxMetricSeries` (1,000 by
 * default), the rest are dropped and counted, and `/metrics` stays small.
 */

import { assert, assertEquals, assertStringIncludes } from "../helpers/assert.ts";
import { freePort, startGateway } from "../helpers/gateway.ts";

/** Creates `count` series of one counter, one label value each, starting at `from`. */
const NOISY = `export default {
  name: "noisy",
  functions: {
    spam: (args, ctx) => {
      const from = Number(args.query.from ?? 0);
      const counter = ctx.metrics.counter("spam_total", "One series per id.");
      for (let i = from; i < from + Number(args.query.count); i++) {
        counter.inc(1, { id: String(i) });
      }
      return { sent: Number(args.query.count) };
    },
  },
};
`;

const QUIET = `export default {
  name: "quiet",
  functions: {
    tick: (_args, ctx) => {
      ctx.metrics.counter("ticks_total").inc();
      return { ok: true };
    },
  },
};
`;

function lines(metrics: string, prefix: string): string[] {
  return metrics.split("\n").filter((line) => line.startsWith(prefix));
}

Deno.test("plugin metrics: a plugin creating 5,000 series stops at 1,000; the drop is counted and other plugins keep their own budget", async () => {
  const port = freePort();
  await using gw = await startGateway({
    listeners: { web: { type: "http", port } },
    routes: [
      { match: { path: "/spam" }, target: { function: { name: "noisy.spam" } } },
      { match: { path: "/tick" }, target: { function: { name: "quiet.tick" } } },
    ],
  }, { files: { "plugins/noisy.ts": NOISY, "plugins/quiet.ts": QUIET } });
  const base = `http://127.0.0.1:${port}`;
  const empty = (await (await gw.admin("/metrics")).text()).length;
  // The reply follows the plugin's metric updates on the same channel: they are applied by then.
  assertEquals(await (await fetch(`${base}/spam?count=5000`)).json(), { sent: 5000 });
  // A series that exists keeps counting past the cap.
  assertEquals(await (await fetch(`${base}/spam?from=0&count=1`)).json(), { sent: 1 });
  assertEquals((await fetch(`${base}/tick`)).status, 200);
  const metrics = await (await gw.admin("/metrics")).text();
  assertEquals(lines(metrics, "gateway_plugin_spam_total{").length, 1000);
  assertStringIncludes(metrics, 'gateway_plugin_spam_total{id="0",plugin="noisy"} 2\n');
  assertStringIncludes(metrics, 'gateway_plugin_spam_total{id="999",plugin="noisy"} 1\n');
  assert(!metrics.includes('{id="1000",plugin="noisy"}'), "the 1,001st series is dropped");
  assertStringIncludes(
    metrics,
    'gateway_plugin_metric_series_dropped_total{plugin="noisy"} 4000\n',
  );
  assertStringIncludes(metrics, 'gateway_plugin_ticks_total{plugin="quiet"} 1\n');
  // 1,000 series of ~50 bytes: /metrics grew by tens of KB, not by 5,000 series' worth.
  const grown = metrics.length - empty;
  assert(grown < 100_000, `/metrics grew by ${grown} bytes`);
});

Deno.test("plugin metrics: plugins.maxMetricSeries sets the cap, for every kind of metric", async () => {
  const port = freePort();
  const timed = `export default {
  name: "timed",
  functions: {
    observe: (args, ctx) => {
      for (let i = 0; i < 50; i++) ctx.metrics.histogram("took_seconds").observe(0.1, { step: String(i) });
      for (let i = 0; i < 50; i++) ctx.metrics.gauge("level").set(i, { step: String(i) });
      return { ok: true };
    },
  },
};
`;
  await using gw = await startGateway({
    listeners: { web: { type: "http", port } },
    plugins: { maxMetricSeries: 10 },
    routes: [{ match: { path: "/observe" }, target: { function: { name: "timed.observe" } } }],
  }, { files: { "plugins/timed.ts": timed } });
  assertEquals(await (await fetch(`http://127.0.0.1:${port}/observe`)).json(), { ok: true });
  const metrics = await (await gw.admin("/metrics")).text();
  assertEquals(lines(metrics, "gateway_plugin_took_seconds_count{").length, 10);
  assertEquals(lines(metrics, "gateway_plugin_level{").length, 0);
  assertStringIncludes(metrics, 'gateway_plugin_metric_series_dropped_total{plugin="timed"} 90\n');
});
