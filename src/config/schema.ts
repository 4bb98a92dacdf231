/**
 * The zod schemas of the gateway's one JSON config document. They are the
 * single source of truth: `gateway check` validates with them, `gateway schema`
 * prints them as JSON Schema, and every module takes its typed slice from
 * {@link GatewayConfig}.
 *
 * Objects are strict: an unknown key is an error, because in a config file it
 * is almost always a typo.
 *
 * @module
 */

import { z } from "zod";
import { Duration, Size } from "./units.ts";

const Name = z.string().regex(
  /^[A-Za-z0-9_][A-Za-z0-9_.-]*$/,
  "names use letters, digits, '_', '.' and '-'",
);
const Port = z.number().int().min(0).max(65535);
const Method = z.string().regex(/^[A-Za-z]+$/).transform((m) => m.toUpperCase());

/** TLS certificate and key files (PEM), relative to the config file. */
export const TlsConfig = z.strictObject({
  cert: z.string().describe("PEM certificate chain file"),
  key: z.string().describe("PEM private key file"),
});

/** An HTTP or HTTPS listener. */
export const HttpListenerConfig = z.strictObject({
  type: z.literal("http"),
  host: z.string().default("127.0.0.1"),
  port: Port,
  tls: TlsConfig.optional(),
  drainTimeout: Duration.default(10_000).describe(
    "how long in-flight requests may take to finish when the listener stops",
  ),
});

/** Any listener; more protocols join this union as they are added. */
export const ListenerConfig = z.discriminatedUnion("type", [HttpListenerConfig]);

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

/** Cross-origin resource sharing for a route. */
export const CorsConfig = z.strictObject({
  origins: z.array(z.string()).min(1).default(["*"]),
  methods: z.array(Method).optional(),
  headers: z.array(z.string()).optional().describe("allowed request headers"),
  exposeHeaders: z.array(z.string()).optional(),
  credentials: z.boolean().default(false),
  maxAge: z.number().int().nonnegative().optional().describe("seconds"),
});

/** Proxy to a named upstream. */
export const UpstreamTargetConfig = z.strictObject({
  upstream: Name,
  stripPrefix: z.string().optional().describe("removed from the start of the path before proxying"),
  preserveHost: z.boolean().default(false).describe("send the client's Host header upstream"),
});

/** Serve files from a directory. */
export const StaticTargetConfig = z.strictObject({
  root: z.string().describe("directory, relative to the config file"),
  index: z.string().default("index.html"),
  stripPrefix: z.string().optional(),
});

/** A fixed response, for health endpoints and tests. */
export const RespondTargetConfig = z.strictObject({
  status: z.number().int().min(200).max(599).default(200),
  headers: z.record(z.string(), z.string()).default({}),
  body: z.union([z.string(), z.record(z.string(), z.unknown()), z.array(z.unknown())]).optional()
    .describe("a string is sent as text/plain, an object or array as JSON"),
}).refine((respond) => respond.body === undefined || ![204, 205, 304].includes(respond.status), {
  message: "a response with status 204, 205 or 304 has no body",
  path: ["body"],
});

/** Where a route sends a request: exactly one of the fields. */
export const TargetConfig = z.strictObject({
  upstream: UpstreamTargetConfig.shape.upstream.optional(),
  stripPrefix: UpstreamTargetConfig.shape.stripPrefix,
  preserveHost: z.boolean().optional(),
  static: StaticTargetConfig.optional(),
  respond: RespondTargetConfig.optional(),
}).superRefine((target, ctx) => {
  const kinds = (["upstream", "static", "respond"] as const).filter((k) => target[k] !== undefined);
  if (kinds.length !== 1) {
    ctx.addIssue({
      code: "custom",
      message: kinds.length === 0
        ? "a target needs one of: upstream, static, respond"
        : `a target has exactly one of upstream, static, respond (found ${kinds.join(", ")})`,
    });
  }
});

/** What a request must look like for a route to take it. */
export const MatchConfig = z.strictObject({
  path: z.string().startsWith("/").default("/*").describe(
    "'/users/:id', '/files/*', '/v:major{[0-9]+}/*'",
  ),
  methods: z.array(Method).optional().describe("any method when absent"),
  host: z.string().optional().describe("'example.com' or '*.example.com'"),
  headers: z.record(z.string(), z.string()).optional().describe(
    "exact values; '*' only requires presence",
  ),
});

/** One route: a match, a target, and the limits that guard it. */
export const RouteConfig = z.strictObject({
  name: Name.optional().describe("used in logs and metrics; defaults to routes[i]"),
  listeners: z.array(Name).optional().describe("listener names; all HTTP listeners when absent"),
  priority: z.number().int().default(0).describe("higher runs first; then the more specific match"),
  match: MatchConfig.default({ path: "/*" }),
  target: TargetConfig,
  rateLimit: RateLimitConfig.optional(),
  limits: LimitsConfig.optional(),
  cors: CorsConfig.optional(),
});

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
  }).default({ connect: 5000, response: 60_000 }),
  retries: z.number().int().min(0).max(10).default(1).describe(
    "extra attempts on another target, for idempotent methods only",
  ),
  healthCheck: HealthCheckConfig.optional(),
  passive: PassiveHealthConfig.default({ failures: 3, ejectFor: 30_000 }),
  breaker: BreakerConfig.optional(),
});

/**
 * Whether a listen address is reachable only from this machine.
 *
 * @example
 * ```ts
 * import { isLoopback } from "./schema.ts";
 * isLoopback("127.0.0.1"); // true
 * isLoopback("0.0.0.0"); // false
 * ```
 */
export function isLoopback(host: string): boolean {
  return host === "localhost" || host === "::1" || /^127\.\d+\.\d+\.\d+$/.test(host);
}

/** The admin API listener. */
export const AdminConfig = z.strictObject({
  enabled: z.boolean().default(true),
  host: z.string().default("127.0.0.1"),
  port: Port.default(9901),
  token: z.string().min(16, "an admin token has at least 16 characters").optional().describe(
    "bearer token; when absent on loopback one is generated into the data directory",
  ),
}).superRefine((admin, ctx) => {
  if (admin.enabled && admin.token === undefined && !isLoopback(admin.host)) {
    ctx.addIssue({
      code: "custom",
      path: ["token"],
      message:
        `a token is required when the admin API listens on ${admin.host}, which is not loopback`,
    });
  }
});

/** Logging. */
export const LogConfig = z.strictObject({
  level: z.enum(["debug", "info", "warning", "error"]).default("info"),
  format: z.enum(["auto", "json", "text"]).default("auto").describe(
    "auto: readable text on a terminal, JSON lines otherwise",
  ),
  access: z.boolean().default(true).describe("one log line per request"),
});

/** Process-wide security defaults; routes may override limits and rate limits. */
export const SecurityConfig = z.strictObject({
  limits: LimitsConfig.default({}),
  rateLimit: RateLimitConfig.optional(),
  trustProxy: z.boolean().default(false).describe(
    "take the client address from X-Forwarded-For set by a proxy in front",
  ),
});

/** Where the gateway keeps state. */
export const StorageConfig = z.strictObject({
  dataDir: z.string().default("data").describe("relative to the config file"),
});

/** The whole config document. */
export const GatewayConfig = z.strictObject({
  $schema: z.string().optional(),
  listeners: z.record(Name, ListenerConfig).default({}),
  routes: z.array(RouteConfig).default([]),
  upstreams: z.record(Name, UpstreamConfig).default({}),
  admin: AdminConfig.default({ enabled: true, host: "127.0.0.1", port: 9901 }),
  log: LogConfig.default({ level: "info", format: "auto", access: true }),
  security: SecurityConfig.default({ limits: {}, trustProxy: false }),
  storage: StorageConfig.default({ dataDir: "data" }),
}).superRefine((config, ctx) => {
  config.routes.forEach((route, i) => {
    for (const [j, name] of (route.listeners ?? []).entries()) {
      if (!config.listeners[name]) {
        ctx.addIssue({
          code: "custom",
          path: ["routes", i, "listeners", j],
          message: `unknown listener "${name}"`,
        });
      }
    }
    const upstream = route.target.upstream;
    if (upstream !== undefined && !config.upstreams[upstream]) {
      ctx.addIssue({
        code: "custom",
        path: ["routes", i, "target", "upstream"],
        message: `unknown upstream "${upstream}"`,
      });
    }
  });
  const seen = new Map<string, string>();
  for (const [name, listener] of Object.entries(config.listeners)) {
    const address = `${listener.host}:${listener.port}`;
    const other = seen.get(address);
    if (other && listener.port !== 0) {
      ctx.addIssue({
        code: "custom",
        path: ["listeners", name, "port"],
        message: `listener "${name}" uses ${address}, already used by listener "${other}"`,
      });
    }
    seen.set(address, name);
  }
});

/** The validated config, with defaults applied and units parsed. */
export type GatewayConfig = z.output<typeof GatewayConfig>;
/** One HTTP listener's validated config. */
export type HttpListenerConfig = z.output<typeof HttpListenerConfig>;
/** One route's validated config. */
export type RouteConfig = z.output<typeof RouteConfig>;
/** One upstream's validated config. */
export type UpstreamConfig = z.output<typeof UpstreamConfig>;
/** Request size limits, validated. */
export type LimitsConfig = z.output<typeof LimitsConfig>;
/** Rate limits, validated. */
export type RateLimitConfig = z.output<typeof RateLimitConfig>;
/** CORS settings, validated. */
export type CorsConfig = z.output<typeof CorsConfig>;
/** Static target settings, validated. */
export type StaticTargetConfig = z.output<typeof StaticTargetConfig>;
/** Respond target settings, validated. */
export type RespondTargetConfig = z.output<typeof RespondTargetConfig>;
