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
  maxBodySize: Size.optional().describe(
    "413 above this; 10MB when unset for targets that read the whole body " +
      "(function, topic, model) and for plugins that read it; none for proxied routes",
  ),
  maxHeaderSize: Size.optional().describe("431 above this many bytes of header names and values"),
  maxHeaderCount: z.number().int().positive().optional().describe("431 above this many headers"),
});

/**
 * The process-wide request limits (`security.limits`): every route's
 * defaults, and the budget of body bytes held in memory at once.
 */
export const SecurityLimitsConfig = LimitsConfig.extend({
  maxBufferedBytes: Size.default(64 * 1024 * 1024).describe(
    "request-body bytes held in memory at once, across all requests; 503 with Retry-After above",
  ),
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
/** The process-wide request limits, validated. */
export type SecurityLimitsConfig = z.output<typeof SecurityLimitsConfig>;
/** Rate limits, validated. */
export type RateLimitConfig = z.output<typeof RateLimitConfig>;
/** CORS settings, validated. */
export type CorsConfig = z.output<typeof CorsConfig>;
