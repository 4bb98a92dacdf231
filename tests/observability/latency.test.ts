import { assertEquals } from "../helpers/assert.ts";
import { LatencyWindow } from "../../src/observability/latency.ts";

Deno.test("latency window: nearest-rank quantiles over the last samples only", () => {
  const window = new LatencyWindow(4);
  assertEquals(window.quantile(0.5), null);
  for (const ms of [1, 2, 3, 100]) window.add(ms);
  assertEquals(window.quantile(0.5), 2);
  assertEquals(window.quantile(0.99), 100);
  for (const ms of [5, 5, 5, 5]) window.add(ms);
  assertEquals(window.quantile(0.99), 5, "the old samples are gone");
  assertEquals(window.total, 8);
  window.add(0.12345);
  assertEquals(window.quantile(0), 0.123, "rounded to µs");
});
