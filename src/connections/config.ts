/**
 * Connection limits, shared by socket listeners and WebSocket routes.
 *
 * @module
 */

import { z } from "zod";
import { Duration } from "../config/units.ts";

/** Limits on the connections of a socket listener (or WebSocket route). */
export const ConnectionLimitsConfig = z.strictObject({
  maxConnections: z.number().int().positive().default(10_000),
  maxPerIp: z.number().int().positive().default(1000),
  idleTimeout: Duration.default(300_000).describe(
    "close after this long without traffic; 0 = never",
  ),
});

/** Connection limits, validated. */
export type ConnectionLimitsConfig = z.output<typeof ConnectionLimitsConfig>;
