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
import { PluginName, PluginsConfig } from "../plugins/config.ts";
import { Duration, Size } from "./units.ts";
import { compileTopicTemplate } from "../bus/topic_template.ts";
import { MqttConfig, MqttTargetConfig } from "../mqtt/config.ts";
import { WorkerConfig } from "../workers/config.ts";
import {
  InferenceConfig,
  ModelsConfig,
  ModelTargetConfig,
  OcrConfig,
  OcrTargetConfig,
} from "../models/config.ts";

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
  plugins: z.array(PluginName).optional().describe("plugins whose hooks run on every route here"),
});

/** Limits on the connections of a socket listener (or WebSocket route). */
export const ConnectionLimitsConfig = z.strictObject({
  maxConnections: z.number().int().positive().default(10_000),
  maxPerIp: z.number().int().positive().default(1000),
  idleTimeout: Duration.default(300_000).describe(
    "close after this long without traffic; 0 = never",
  ),
});

const ByteString = z.string().min(1).describe(
  "text, or hex bytes written 'hex:0d0a'",
);

/** How a byte stream is cut into frames (and how replies are framed). */
export const FramingConfig = z.discriminatedUnion("type", [
  z.strictObject({
    type: z.literal("line"),
    delimiter: ByteString.default("\n").describe("a trailing \\r before \\n is removed too"),
    maxLength: Size.default(65_536),
  }),
  z.strictObject({
    type: z.literal("length"),
    bytes: z.union([z.literal(1), z.literal(2), z.literal(4)]).default(2),
    endian: z.enum(["big", "little"]).default("big"),
    headerOffset: z.number().int().min(0).max(64).default(0).describe(
      "bytes of header before the length field, kept in the frame",
    ),
    lengthIncludesHeader: z.boolean().default(false).describe(
      "the length counts the header and the length field too",
    ),
    maxLength: Size.default(1_048_576),
  }),
  z.strictObject({
    type: z.literal("delimiter"),
    delimiter: ByteString,
    maxLength: Size.default(65_536),
  }),
  z.strictObject({ type: z.literal("fixed"), size: z.number().int().positive().max(16_777_216) }),
  z.strictObject({ type: z.literal("raw"), maxLength: Size.default(65_536) }),
]);

/** A bus topic template, checked here so that `gateway check` reports it with its path. */
const TopicTemplate = z.string().min(1).superRefine((template, ctx) => {
  try {
    compileTopicTemplate(template);
  } catch (error) {
    ctx.addIssue({ code: "custom", message: (error as Error).message });
  }
});

const TOPIC_TEMPLATE = TopicTemplate.describe(
  "placeholders: {listener}, {connectionId}, {deviceId}, {remoteAddress}; route params on WebSocket routes",
);

/** A raw TCP listener: framed messages to the bus, or an L4 proxy to an upstream. */
export const TcpListenerConfig = z.strictObject({
  type: z.literal("tcp"),
  host: z.string().default("127.0.0.1"),
  port: Port,
  mode: z.enum(["bus", "proxy"]).default("bus"),
  framing: FramingConfig.prefault({ type: "line" }),
  topic: TOPIC_TEMPLATE.default("tcp/{listener}/{connectionId}"),
  handshake: z.enum(["none", "device-id"]).default("none").describe(
    "device-id: the first frame is the device id, bound to the connection and not published",
  ),
  upstream: Name.optional().describe("proxy mode: the upstream whose targets take the bytes"),
  limits: ConnectionLimitsConfig.prefault({}),
}).refine((l) => l.mode !== "proxy" || l.upstream !== undefined, {
  message: "a proxy-mode TCP listener names an upstream",
  path: ["upstream"],
});

/** A UDP listener: each datagram to the bus, replies to its sender. */
export const UdpListenerConfig = z.strictObject({
  type: z.literal("udp"),
  host: z.string().default("127.0.0.1"),
  port: Port,
  topic: TOPIC_TEMPLATE.default("udp/{listener}/{remoteAddress}"),
  maxDatagramSize: Size.default(65_507),
  limits: ConnectionLimitsConfig.prefault({}),
});

/** A Unix-socket listener: HTTP (routes as on any HTTP listener) or framed messages. */
export const UnixListenerConfig = z.strictObject({
  type: z.literal("unix"),
  path: z.string().min(1).describe(
    "socket file, relative to the config file; a stale one is removed",
  ),
  mode: z.string().regex(/^0?[0-7]{3}$/).default("660").describe("file mode of the socket, octal"),
  protocol: z.enum(["http", "framed"]).default("http"),
  framing: FramingConfig.prefault({ type: "line" }),
  topic: TOPIC_TEMPLATE.default("unix/{listener}/{connectionId}"),
  handshake: z.enum(["none", "device-id"]).default("none"),
  drainTimeout: Duration.default(10_000),
  limits: ConnectionLimitsConfig.prefault({ maxPerIp: 10_000 }),
});

/** Any listener. */
export const ListenerConfig = z.discriminatedUnion("type", [
  HttpListenerConfig,
  TcpListenerConfig,
  UdpListenerConfig,
  UnixListenerConfig,
]);

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

/** Upgrade to a WebSocket: messages to the bus, or proxied to an upstream WebSocket. */
export const WebSocketTargetConfig = z.strictObject({
  mode: z.enum(["bus", "proxy"]).default("bus"),
  topic: TOPIC_TEMPLATE.default("ws/{route}/{connectionId}"),
  upstream: Name.optional().describe(
    "proxy mode: the upstream (http:// targets are dialled as ws://)",
  ),
  protocols: z.array(z.string()).optional().describe(
    "subprotocols offered, in order of preference",
  ),
  maxMessageSize: Size.default(1_048_576).describe("larger messages close the socket with 1009"),
  sendQueueLimit: Size.default(1_048_576).describe("a client this far behind is closed (1008)"),
  heartbeat: Duration.default(30_000).describe(
    "ping interval; a client silent for two intervals is closed",
  ),
  handshake: z.enum(["none", "device-id"]).default("none"),
  limits: ConnectionLimitsConfig.prefault({}),
}).refine((ws) => ws.mode !== "proxy" || ws.upstream !== undefined, {
  message: "a proxy-mode WebSocket target names an upstream",
  path: ["upstream"],
});

/** Publish the request body on the bus, or send it as a request and answer with the reply. */
export const TopicTargetConfig = z.strictObject({
  topic: TopicTemplate.describe("topic template; route params as {name}, e.g. 'device/{id}/send'"),
  mode: z.enum(["publish", "request"]).default("publish").describe(
    "publish: 202 with the number of subscribers; request: 200 with the first reply",
  ),
  timeout: Duration.default(5000).describe("request mode: 504 after this long without a reply"),
});

/** A route that calls a function: a plugin's, a worker's or a model's. */
export const FunctionTargetConfig = z.strictObject({
  name: z.string().regex(
    /^(?:(?:plugin:|worker:)?[A-Za-z0-9_-]+\.[A-Za-z0-9_.-]+|model:[A-Za-z0-9_-]+)$/,
    "a function is 'owner.name', 'plugin:|worker:owner.name' or 'model:name'",
  ).describe("e.g. 'worker:orders.create', 'plugin:stamp.sign' or 'model:add'"),
  timeout: Duration.default(30_000).describe("504 after this long without a result"),
});

/** Where a route sends a request: exactly one of the fields. */
export const TargetConfig = z.strictObject({
  upstream: UpstreamTargetConfig.shape.upstream.optional(),
  stripPrefix: UpstreamTargetConfig.shape.stripPrefix,
  preserveHost: z.boolean().optional(),
  static: StaticTargetConfig.optional(),
  respond: RespondTargetConfig.optional(),
  websocket: WebSocketTargetConfig.optional(),
  topic: TopicTargetConfig.optional(),
  mqtt: MqttTargetConfig.optional().describe("MQTT over WebSocket into the embedded broker"),
  function: FunctionTargetConfig.optional(),
  model: ModelTargetConfig.optional().describe(
    "run a model on JSON tensors (POST /models/:name/infer)",
  ),
  ocr: OcrTargetConfig.optional().describe("read the PNG or JPEG in the body (POST /ocr)"),
}).superRefine((target, ctx) => {
  const all = [
    "upstream",
    "static",
    "respond",
    "websocket",
    "topic",
    "function",
    "mqtt",
    "model",
    "ocr",
  ] as const;
  const kinds = all.filter((k) => target[k] !== undefined);
  if (kinds.length !== 1) {
    ctx.addIssue({
      code: "custom",
      message: kinds.length === 0
        ? `a target needs one of: ${all.join(", ")}`
        : `a target has exactly one of ${all.join(", ")} (found ${kinds.join(", ")})`,
    });
  }
});

/** What a request must look like for a route to take it. */
export const MatchConfig = z.strictObject({
  path: z.string().startsWith("/").default("/*").describe(
    "'/users/:id', '/files/*', '/items/:id{[0-9]+}'",
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
  match: MatchConfig.prefault({}),
  plugins: z.array(PluginName).optional().describe(
    "plugins whose hooks run on this route (after plugins.global and the listener's), by priority",
  ),
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
  }).prefault({}),
  retries: z.number().int().min(0).max(10).default(1).describe(
    "extra attempts on another target, for idempotent methods only",
  ),
  healthCheck: HealthCheckConfig.optional(),
  passive: PassiveHealthConfig.prefault({}),
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
  limits: LimitsConfig.prefault({}),
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
  plugins: PluginsConfig.prefault({}),
  admin: AdminConfig.prefault({}),
  log: LogConfig.prefault({}),
  security: SecurityConfig.prefault({}),
  storage: StorageConfig.prefault({}),
  mqtt: MqttConfig.optional().describe("the embedded MQTT broker and its bridges"),
  workers: z.array(WorkerConfig).default([]).describe("language workers (Python, PHP, Node, ...)"),
  models: ModelsConfig.default([]).describe("ONNX models run in-process (WebAssembly)"),
  inference: InferenceConfig.prefault({}),
  ocr: OcrConfig.prefault({}),
}).superRefine((input, ctx) => {
  // Runs even when other parts of the document are invalid (so every problem is listed at
  // once), so the document may not have its validated shape here: every access is guarded.
  const config = input as Partial<typeof input>;
  const upstreams = config.upstreams ?? {};
  const listeners = config.listeners ?? {};
  const unknownUpstream = (name: unknown, path: PropertyKey[]) => {
    if (typeof name === "string" && !Object.hasOwn(upstreams, name)) {
      ctx.addIssue({ code: "custom", path, message: `unknown upstream "${name}"` });
    }
  };
  (Array.isArray(config.routes) ? config.routes : []).forEach((route, i) => {
    for (const [j, name] of (Array.isArray(route?.listeners) ? route.listeners : []).entries()) {
      const listener = Object.hasOwn(listeners, name) ? listeners[name] : undefined;
      const servesHttp = listener?.type === "http" ||
        (listener?.type === "unix" && listener.protocol === "http");
      if (!servesHttp) {
        ctx.addIssue({
          code: "custom",
          path: ["routes", i, "listeners", j],
          message: listener
            ? `listener "${name}" does not serve HTTP (type ${listener.type})`
            : `unknown listener "${name}"`,
        });
      }
    }
    unknownUpstream(route?.target?.upstream, ["routes", i, "target", "upstream"]);
    const model = route?.target?.model?.name;
    const models = Array.isArray(config.models) ? config.models : [];
    if (typeof model === "string" && !models.some((m) => m?.name === model)) {
      ctx.addIssue({
        code: "custom",
        path: ["routes", i, "target", "model", "name"],
        message: `unknown model "${model}"`,
      });
    }
    const template = route?.target?.ocr?.template;
    if (typeof template === "string" && !Object.hasOwn(config.ocr?.templates ?? {}, template)) {
      ctx.addIssue({
        code: "custom",
        path: ["routes", i, "target", "ocr", "template"],
        message: `unknown OCR template "${template}"`,
      });
    }
    if (route?.target?.mqtt !== undefined && config.mqtt === undefined) {
      ctx.addIssue({
        code: "custom",
        path: ["routes", i, "target", "mqtt"],
        message: "an mqtt target needs the mqtt section (the embedded broker)",
      });
    }
    unknownUpstream(route?.target?.websocket?.upstream, [
      "routes",
      i,
      "target",
      "websocket",
      "upstream",
    ]);
  });
  const workerNames = new Map<unknown, number>();
  (Array.isArray(config.workers) ? config.workers : []).forEach((worker, i) => {
    const first = workerNames.get(worker?.name);
    if (first !== undefined) {
      ctx.addIssue({
        code: "custom",
        path: ["workers", i, "name"],
        message: `worker "${worker.name}" is already defined by workers[${first}]`,
      });
    } else workerNames.set(worker?.name, i);
  });
  const seen = new Map<string, string>();
  for (const [name, listener] of Object.entries(listeners)) {
    if (!listener || typeof listener !== "object") continue;
    if (listener.type === "tcp") {
      unknownUpstream(listener.upstream, ["listeners", name, "upstream"]);
    }
    const address = listener.type === "unix"
      ? `unix:${listener.path}`
      : `${listener.type === "udp" ? "udp" : "tcp"}:${listener.host}:${listener.port}`;
    const other = seen.get(address);
    if (other && !address.endsWith(":0")) {
      ctx.addIssue({
        code: "custom",
        path: ["listeners", name, listener.type === "unix" ? "path" : "port"],
        message: `listener "${name}" uses ${address}, already used by listener "${other}"`,
      });
    }
    seen.set(address, name);
  }
  for (const [name, listener] of Object.entries(config.mqtt?.listeners ?? {})) {
    const address = `tcp:${listener?.host}:${listener?.port}`;
    const other = seen.get(address);
    if (other && !address.endsWith(":0")) {
      ctx.addIssue({
        code: "custom",
        path: ["mqtt", "listeners", name, "port"],
        message: `MQTT listener "${name}" uses ${address}, already used by listener "${other}"`,
      });
    }
    seen.set(address, `mqtt.listeners.${name}`);
  }
}, { when: () => true });

/** The validated config, with defaults applied and units parsed. */
export type GatewayConfig = z.output<typeof GatewayConfig>;
/** One HTTP listener's validated config. */
export type HttpListenerConfig = z.output<typeof HttpListenerConfig>;
/** One TCP listener's validated config. */
export type TcpListenerConfig = z.output<typeof TcpListenerConfig>;
/** One UDP listener's validated config. */
export type UdpListenerConfig = z.output<typeof UdpListenerConfig>;
/** One Unix-socket listener's validated config. */
export type UnixListenerConfig = z.output<typeof UnixListenerConfig>;
/** Framing settings, validated. */
export type FramingConfig = z.output<typeof FramingConfig>;
/** Connection limits, validated. */
export type ConnectionLimitsConfig = z.output<typeof ConnectionLimitsConfig>;
/** Topic target settings, validated. */
export type TopicTargetConfig = z.output<typeof TopicTargetConfig>;
/** A validated function target. */
export type FunctionTargetConfig = z.output<typeof FunctionTargetConfig>;
/** WebSocket target settings, validated. */
export type WebSocketTargetConfig = z.output<typeof WebSocketTargetConfig>;
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
