/**
 * Durations and byte sizes as users write them in the config: a number
 * (milliseconds, bytes) or a string with a unit ("250ms", "5s", "2m", "1h";
 * "512", "64KB", "10MB", "1GB").
 *
 * @module
 */

import { z } from "zod";

const DURATION_UNITS: Record<string, number> = { ms: 1, s: 1000, m: 60_000, h: 3_600_000 };
const SIZE_UNITS: Record<string, number> = {
  "": 1,
  b: 1,
  kb: 1024,
  mb: 1024 ** 2,
  gb: 1024 ** 3,
};

/**
 * Parses a duration to milliseconds, or returns undefined when it is malformed.
 *
 * @example
 * ```ts
 * import { parseDuration } from "./units.ts";
 * parseDuration("1.5s"); // 1500
 * parseDuration(250); // 250
 * ```
 */
export function parseDuration(value: number | string): number | undefined {
  if (typeof value === "number") return value >= 0 ? value : undefined;
  const match = /^(\d+(?:\.\d+)?)\s*(ms|s|m|h)$/i.exec(value.trim());
  return match ? Number(match[1]) * DURATION_UNITS[match[2].toLowerCase()] : undefined;
}

/**
 * Parses a byte size, or returns undefined when it is malformed.
 *
 * @example
 * ```ts
 * import { parseSize } from "./units.ts";
 * parseSize("10MB"); // 10485760
 * parseSize(512); // 512
 * ```
 */
export function parseSize(value: number | string): number | undefined {
  if (typeof value === "number") return Number.isInteger(value) && value >= 0 ? value : undefined;
  const match = /^(\d+(?:\.\d+)?)\s*(b|kb|mb|gb)?$/i.exec(value.trim());
  return match
    ? Math.floor(Number(match[1]) * SIZE_UNITS[(match[2] ?? "").toLowerCase()])
    : undefined;
}

/** A duration field: milliseconds as a number, or a string such as `"5s"`. Parses to milliseconds. */
export const Duration = z.union([z.number(), z.string()]).transform((value, ctx) => {
  const ms = parseDuration(value);
  if (ms === undefined) {
    ctx.addIssue({
      code: "custom",
      message: `invalid duration ${
        JSON.stringify(value)
      } (use milliseconds or "250ms", "5s", "2m", "1h")`,
    });
    return z.NEVER;
  }
  return ms;
});

/** A byte-size field: bytes as a number, or a string such as `"10MB"`. Parses to bytes. */
export const Size = z.union([z.number(), z.string()]).transform((value, ctx) => {
  const bytes = parseSize(value);
  if (bytes === undefined) {
    ctx.addIssue({
      code: "custom",
      message: `invalid size ${JSON.stringify(value)} (use bytes or "64KB", "10MB", "1GB")`,
    });
    return z.NEVER;
  }
  return bytes;
});
