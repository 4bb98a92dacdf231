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
  messageRate: z.strictObject({
    perSecond: z.number().nonnegative().default(1000).describe(
      "messages (frames, datagrams) a second one connection may send on average; 0 = no limit",
    ),
    burst: z.number().int().positive().default(2000).describe(
      "messages one connection may send at once above that rate",
    ),
  }).prefault({}).describe(
    "a token bucket per connection; messages over it are dropped and counted " +
      "(gateway_connection_frames_dropped_total)",
  ),
});

/** Connection limits, validated. */
export type ConnectionLimitsConfig = z.output<typeof ConnectionLimitsConfig>;
