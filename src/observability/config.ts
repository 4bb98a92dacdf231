/**
 * The `log` section.
 *
 * @module
 */

import { z } from "zod";
import type { ConfigSection } from "../config/section.ts";

/** Logging. */
export const LogConfig = z.strictObject({
  level: z.enum(["debug", "info", "warning", "error"]).default("info"),
  format: z.enum(["auto", "json", "text"]).default("auto").describe(
    "auto: readable text on a terminal, JSON lines otherwise",
  ),
  access: z.boolean().default(true).describe("one log line per request"),
});

/** The validated `log` section. */
export type LogConfig = z.output<typeof LogConfig>;

/** The `log` section. */
export const logSection = { schema: LogConfig.prefault({}) } satisfies ConfigSection;
