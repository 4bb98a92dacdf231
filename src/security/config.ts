/**
 * The `security` section: process-wide request limits and rate limits (a
 * route may override them), and the proxies whose forwarded client address
 * is believed. The old boolean `trustProxy` is refused with a message: it
 * believed any peer's `X-Forwarded-For`.
 *
 * @module
 */

import { z } from "zod";
import type { ConfigSection } from "../config/section.ts";
import { RateLimitConfig, SecurityLimitsConfig } from "../pipeline/config.ts";
import { isAddressRange } from "./trusted_proxies.ts";

/** Process-wide security defaults; routes may override limits and rate limits. */
export const SecurityConfig = z.strictObject({
  limits: SecurityLimitsConfig.prefault({}),
  rateLimit: RateLimitConfig.optional(),
  trustedProxies: z.array(
    z.string().refine(isAddressRange, "expected an IP address or CIDR range, like 10.0.0.0/8"),
  ).default([]).describe(
    "addresses/CIDRs of proxies in front whose X-Forwarded-For gives the client address",
  ),
  trustProxy: z.never({
    error: "trustProxy was replaced by trustedProxies: list the addresses or CIDR ranges " +
      'of the proxies in front (e.g. ["127.0.0.1", "10.0.0.0/8"]), or [] to trust none',
  }).optional().describe("removed: use trustedProxies"),
});

/** The validated `security` section. */
export type SecurityConfig = z.output<typeof SecurityConfig>;

/** The `security` section. */
export const securitySection = {
  schema: SecurityConfig.prefault({}),
} satisfies ConfigSection;
