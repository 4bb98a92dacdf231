/**
 * The `upstreams` section: named groups of servers that routes and TCP
 * proxies send traffic to, with balancing, timeouts, retries, health checks
 * and breakers. It defines the name kind `upstream`.
 *
 * @module
 */

import { z } from "zod";
import { Name } from "../config/fields.ts";
import type { ConfigSection } from "../config/section.ts";
import { Duration } from "../config/units.ts";

/** One server behind an upstream. */
export const UpstreamTargetEntry = z.union([
  z.string(),
  z.strictObject({ url: z.string(), weight: z.number().int().min(1).max(1000).default(1) }),
]).transform((entry) => typeof entry === "string" ? { url: entry, weight: 1 } : entry)
  .refine((entry) => /^https?:\/\/[^/]+\/?$/.test(entry.url), {
    message: "target url is scheme, host and port only, such as 'http://127.0.0.1:9000'",
  });

/** Active health checks: a request every `interval` to each target. */
export const HealthCheckConfig = z.strictObject({
  path: z.string().startsWith("/").default("/"),
  interval: Duration.default(5000),
  timeout: Duration.default(2000),
  healthyThreshold: z.number().int().positive().default(2),
  unhealthyThreshold: z.number().int().positive().default(3),
  expectStatus: z.tuple([z.number().int(), z.number().int()]).default([200, 399]).describe(
    "inclusive range of healthy status codes",
  ),
});

/** Passive health: a target that fails this many requests in a row is ejected. */
export const PassiveHealthConfig = z.strictObject({
  failures: z.number().int().positive().default(3),
  ejectFor: Duration.default(30_000).describe(
    "how long an ejected target stays out when no active check brings it back sooner",
  ),
});

/** Circuit breaker per target. */
export const BreakerConfig = z.strictObject({
  failures: z.number().int().positive().default(5).describe("consecutive failures that open it"),
  openFor: Duration.default(10_000).describe("time open before one trial (half-open)"),
  halfOpenRequests: z.number().int().positive().default(1),
});

/** A named group of servers that routes proxy to. */
export const UpstreamConfig = z.strictObject({
  targets: z.array(UpstreamTargetEntry).min(1),
  balance: z.enum(["round-robin", "weighted", "least-connections"]).default("round-robin"),
  timeouts: z.strictObject({
    connect: Duration.default(5000),
    response: Duration.default(60_000).describe("until the response headers arrive"),
  }).prefault({}),
  retries: z.number().int().min(0).max(10).default(1).describe(
    "extra attempts on another target, for idempotent methods only",
  ),
  healthCheck: HealthCheckConfig.optional(),
  passive: PassiveHealthConfig.prefault({}),
  breaker: BreakerConfig.optional(),
});

/** The `upstreams` section: upstreams by name. */
export const UpstreamsConfig = z.record(Name, UpstreamConfig);

/** One upstream's validated config. */
export type UpstreamConfig = z.output<typeof UpstreamConfig>;
/** The validated `upstreams` section. */
export type UpstreamsConfig = z.output<typeof UpstreamsConfig>;

/** The `upstreams` section. */
export const upstreamsSection = {
  schema: UpstreamsConfig.default({}),
  defines: {
    upstream: (upstreams) =>
      Object.keys(upstreams).map((name) => ({ name, path: ["upstreams", name] })),
  },
} satisfies ConfigSection<z.ZodDefault<typeof UpstreamsConfig>>;
