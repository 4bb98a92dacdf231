/**
 * Settings of the request pipeline's own stages: size limits, rate limits
 * and CORS, set per route and as defaults in the `security` section.
 *
 * @module
 */

import { z } from "zod";
import { Method } from "../config/fields.ts";
import { Duration, Size } from "../config/units.ts";

/** Token-bucket settings: `rate` tokens per `per`, holding at most `burst`. */
export const TokenBucketConfig = z.strictObject({
  rate: z.number().positive(),
  per: Duration.default(1000),
  burst: z.number().int().positive().optional().describe("bucket size; defaults to rate"),
});

/** Request rate limits: per client IP, and for the route as a whole. */
export const RateLimitConfig = z.strictObject({
  perClient: TokenBucketConfig.optional(),
  total: TokenBucketConfig.optional(),
});

/** Request size limits. */
export const LimitsConfig = z.strictObject({
  maxBodySize: Size.optional().describe("413 above this"),
  maxHeaderSize: Size.optional().describe("431 above this many bytes of header names and values"),
  maxHeaderCount: z.number().int().positive().optional().describe("431 above this many headers"),
});

/**
 * Cross-origin resource sharing for a route. `credentials: true` needs a list
 * of origins: with `"*"` the config is refused.
 */
export const CorsConfig = z.strictObject({
  origins: z.array(z.string()).min(1).default(["*"]),
  methods: z.array(Method).optional(),
  headers: z.array(z.string()).optional().describe("allowed request headers"),
  exposeHeaders: z.array(z.string()).optional(),
  credentials: z.boolean().default(false),
  maxAge: z.number().int().nonnegative().optional().describe("seconds"),
}).refine((cors) => !(cors.credentials && cors.origins.includes("*")), {
  path: ["credentials"],
  message: 'credentials: true with origins ["*"] would let every website send ' +
    "credentialed requests and read the answers: list the allowed origins instead",
});

/** Request size limits, validated. */
export type LimitsConfig = z.output<typeof LimitsConfig>;
/** Rate limits, validated. */
export type RateLimitConfig = z.output<typeof RateLimitConfig>;
/** CORS settings, validated. */
export type CorsConfig = z.output<typeof CorsConfig>;
