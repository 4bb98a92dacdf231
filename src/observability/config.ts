/**
 * The `log` section.
 *
 * @module
 */

import { z } from "zod";
import type { ConfigSection } from "../config/section.ts";
import { DEFAULT_REDACT_QUERY } from "../admin/secrets.ts";

/** Logging. */
export const LogConfig = z.strictObject({
  level: z.enum(["debug", "info", "warning", "error"]).default("info"),
  format: z.enum(["auto", "json", "text"]).default("auto").describe(
    "auto: readable text on a terminal, JSON lines otherwise",
  ),
  access: z.union([z.boolean(), z.literal("auto")]).default("auto").describe(
    "one log line per request; auto: on for JSON logs, off for text on a terminal " +
      "(a route's accessLog: false turns it off there)",
  ),
  redactQuery: z.array(z.string().min(1)).default([...DEFAULT_REDACT_QUERY]).describe(
    "query parameters whose values the access log shows as [redacted] (names compared without case)",
  ),
});

/** The validated `log` section. */
export type LogConfig = z.output<typeof LogConfig>;

/** The `log` section. */
export const logSection = { schema: LogConfig.prefault({}) } satisfies ConfigSection;
