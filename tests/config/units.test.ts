/**
 * Durations and sizes as written in the config: numbers, units, decimals,
 * case, and the messages the zod fields give for what they refuse.
 */

import { assertEquals } from "../helpers/assert.ts";
import { Duration, parseDuration, parseSize, Size } from "../../src/config/units.ts";

Deno.test("parseDuration: numbers are milliseconds, negatives and NaN are refused", () => {
  assertEquals(parseDuration(0), 0);
  assertEquals(parseDuration(250), 250);
  assertEquals(parseDuration(1.5), 1.5);
  assertEquals(parseDuration(-1), undefined);
  assertEquals(parseDuration(Number.NaN), undefined);
});

Deno.test("parseDuration: every unit, decimals and surrounding whitespace", () => {
  assertEquals(parseDuration("250ms"), 250);
  assertEquals(parseDuration("5s"), 5000);
  assertEquals(parseDuration("2m"), 120_000);
  assertEquals(parseDuration("1h"), 3_600_000);
  assertEquals(parseDuration("1.5s"), 1500);
  assertEquals(parseDuration("0.25h"), 900_000);
  assertEquals(parseDuration("0ms"), 0);
  assertEquals(parseDuration("  5 s  "), 5000);
});

Deno.test("parseDuration: garbage, negatives and bare numbers are refused; units ignore case", () => {
  for (
    const bad of [
      "",
      "5",
      "-5s",
      "5x",
      "s",
      ".5s",
      "5.s",
      "1e3ms",
      "5 seconds",
      "5sec",
      "1h30m",
      "abc",
    ]
  ) {
    assertEquals(parseDuration(bad), undefined, JSON.stringify(bad));
  }
  assertEquals(parseDuration("5S"), 5000);
  assertEquals(parseDuration("5MS"), 5);
});

Deno.test("parseSize: numbers are whole non-negative bytes", () => {
  assertEquals(parseSize(0), 0);
  assertEquals(parseSize(512), 512);
  assertEquals(parseSize(1.5), undefined);
  assertEquals(parseSize(-1), undefined);
  assertEquals(parseSize(Number.POSITIVE_INFINITY), undefined);
  assertEquals(parseSize(Number.NaN), undefined);
});

Deno.test("parseSize: units in any case, binary multiples, decimals rounded down", () => {
  assertEquals(parseSize("512"), 512);
  assertEquals(parseSize("512b"), 512);
  assertEquals(parseSize("512B"), 512);
  assertEquals(parseSize("64KB"), 64 * 1024);
  assertEquals(parseSize("64kb"), 64 * 1024);
  assertEquals(parseSize("64kB"), 64 * 1024);
  assertEquals(parseSize("10MB"), 10 * 1024 ** 2);
  assertEquals(parseSize("1GB"), 1024 ** 3);
  assertEquals(parseSize("1.5KB"), 1536);
  assertEquals(parseSize("0.5"), 0);
  assertEquals(parseSize("1.0009KB"), 1024);
  assertEquals(parseSize(" 2 mb "), 2 * 1024 ** 2);
});

Deno.test("parseSize: garbage, negatives and unknown units are refused", () => {
  for (const bad of ["", "-1", "-1KB", "1k", "1KiB", "1TB", "KB", ".5KB", "1e3", "ten", "1 2"]) {
    assertEquals(parseSize(bad), undefined, JSON.stringify(bad));
  }
});

Deno.test("Duration field: parses to milliseconds", () => {
  assertEquals(Duration.parse("2m"), 120_000);
  assertEquals(Duration.parse(40), 40);
});

Deno.test("Duration field: refusals quote the value and show the accepted forms", () => {
  const text = Duration.safeParse("1x");
  assertEquals(text.success, false);
  assertEquals(
    text.error?.issues.map((issue) => issue.message),
    ['invalid duration "1x" (use milliseconds or "250ms", "5s", "2m", "1h")'],
  );
  const negative = Duration.safeParse(-5);
  assertEquals(
    negative.error?.issues.map((issue) => issue.message),
    ['invalid duration -5 (use milliseconds or "250ms", "5s", "2m", "1h")'],
  );
  assertEquals(Duration.safeParse(true).success, false, "neither number nor string");
});

Deno.test("Size field: parses to bytes; refusals quote the value and show the accepted forms", () => {
  assertEquals(Size.parse("64KB"), 65_536);
  assertEquals(Size.parse(10), 10);
  assertEquals(
    Size.safeParse("10 megs").error?.issues.map((issue) => issue.message),
    ['invalid size "10 megs" (use bytes or "64KB", "10MB", "1GB")'],
  );
  assertEquals(
    Size.safeParse(2.5).error?.issues.map((issue) => issue.message),
    ['invalid size 2.5 (use bytes or "64KB", "10MB", "1GB")'],
  );
  assertEquals(Size.safeParse(null).success, false);
});
