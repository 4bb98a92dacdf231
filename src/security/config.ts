/**
 * The `security` section: process-wide request limits and rate limits (a
 * route may override them), and whether to trust a proxy's forwarded
 * address.
 *
 * @module
 */

import { z } from "zod";
import type { ConfigSection } from "../config/section.ts";
import { LimitsConfig, RateLimitConfig } from "../pipeline/config.ts";

/** Process-wide security defaults; routes may override limits and rate limits. */
export const SecurityConfig = z.strictObject({
  limits: LimitsConfig.prefault({}),
  rateLimit: RateLimitConfig.optional(),
  trustProxy: z.boolean().default(false).describe(
    "take the client address from X-Forwarded-For set by a proxy in front",
  ),
});

/** The validated `security` section. */
export type SecurityConfig = z.output<typeof SecurityConfig>;

/** The `security` section. */
export const securitySection = {
  schema: SecurityConfig.prefault({}),
} satisfies ConfigSection;
