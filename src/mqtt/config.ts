/**
 * The `mqtt` section of the config: the embedded broker's listeners, users,
 * ACL rules, which bus topics reach broker subscribers, and the bridges to
 * upstream brokers with their store-and-forward queues.
 *
 * @module
 */

import { resolve } from "node:path";
import { z } from "zod";
import { Duration, Size } from "../config/units.ts";
import { filterError, topicError } from "../bus/topic.ts";
import { Name, Port } from "../config/fields.ts";
import type { ConfigSection } from "../config/section.ts";

const Qos = z.union([z.literal(0), z.literal(1), z.literal(2)]);

/** A topic filter; `%c` and `%u` stand for the client id and the user name in ACL rules. */
const Filter = z.string().min(1).superRefine((filter, ctx) => {
  const error = filterError(filter.replaceAll("%c", "c").replaceAll("%u", "u"));
  if (error) ctx.addIssue({ code: "custom", message: error });
});

/** A topic prefix: empty, or topic levels ending in `/`, without wildcards. */
const Prefix = z.string().default("").superRefine((prefix, ctx) => {
  if (prefix === "") return;
  const error = prefix.endsWith("/") ? topicError(`${prefix}x`) : "a prefix ends with '/'";
  if (error) ctx.addIssue({ code: "custom", message: error });
});

/** TLS certificate and key files (PEM) of an MQTT listener, relative to the config file. */
export const MqttTlsConfig = z.strictObject({
  cert: z.string().describe("PEM certificate chain file"),
  key: z.string().describe("PEM private key file"),
  handshakeTimeout: Duration.default(10_000).describe(
    "a TLS handshake must end this long after the connection is accepted",
  ),
});

/** One TCP (or TLS) listener of the embedded broker. */
export const MqttListenerConfig = z.strictObject({
  host: z.string().default("127.0.0.1"),
  port: Port.default(1883),
  tls: MqttTlsConfig.optional(),
  maxConnections: z.number().int().positive().default(10_000),
  maxPerIp: z.number().int().positive().default(1000),
});

/** A broker user. */
export const MqttUserConfig = z.strictObject({
  password: z.string().regex(
    /^pbkdf2-sha256\$\d+\$[A-Za-z0-9+/=]+\$[A-Za-z0-9+/=]+$/,
    "a password is a hash 'pbkdf2-sha256$<iterations>$<salt base64>$<hash base64>' (or env:NAME holding one)",
  ),
});

/** One ACL rule: what clients matching `user`/`clientId` may publish and subscribe to. */
export const MqttAclRule = z.strictObject({
  user: z.string().optional().describe("applies to this user name; any user when absent"),
  clientId: z.string().optional().describe("applies to this client id; any client when absent"),
  publish: z.array(Filter).default([]).describe("topic filters; %c = client id, %u = user name"),
  subscribe: z.array(Filter).default([]).describe(
    "topic filters a subscription must lie within; %c and %u as for publish",
  ),
});

/** A topic mapping of a bridge: which topics cross, renamed how, at which QoS. */
export const MqttBridgeMapping = z.strictObject({
  topic: Filter.describe("filter on the side the messages come from"),
  removePrefix: Prefix.describe("removed from the topic before crossing"),
  addPrefix: Prefix.describe("added to the topic after crossing"),
  qos: Qos.default(1),
}).refine((m) => m.topic.startsWith(m.removePrefix), {
  message: "removePrefix must be the start of topic",
  path: ["removePrefix"],
});

/** The bounds of a bridge's store-and-forward queue and what a full queue does. */
export const MqttQueueConfig = z.strictObject({
  maxMessages: z.number().int().positive().default(100_000),
  maxBytes: Size.default(64 * 1024 * 1024).describe("payload and topic bytes"),
  maxAge: Duration.default(7 * 24 * 3600_000).describe("older messages are dropped"),
  policy: z.enum(["drop-oldest", "refuse"]).default("drop-oldest").describe(
    "refuse: a publisher whose message does not fit is disconnected without an ack",
  ),
});

/** The bounds of what the broker keeps on disk for persistent sessions and retained messages. */
export const MqttSessionsConfig = z.strictObject({
  maxSessions: z.number().int().positive().default(1000).describe(
    "persistent sessions (clean session 0, with subscriptions) kept; a new session's subscriptions beyond it get SUBACK 0x80",
  ),
  anonymous: z.boolean().default(false).describe(
    "whether a client without a user name may have a persistent session; false: its CONNECT with clean session 0 gets CONNACK 5",
  ),
  maxQueuedMessages: z.number().int().positive().default(1000).describe(
    "QoS 1/2 messages kept per offline persistent client; when full its oldest is dropped",
  ),
  maxQueuedBytes: Size.default(2 * 1024 * 1024).describe(
    "payload and topic bytes kept per offline persistent client; its oldest messages are dropped to make room, a larger message is not queued",
  ),
  maxRetained: z.number().int().positive().default(10_000).describe(
    "topics with a retained message; when full a retained publish on a new topic is not retained",
  ),
  maxRetainedMessageBytes: Size.default(256 * 1024).describe(
    "largest retained message (payload and topic); a larger one is delivered, not retained, and removes the topic's retained message",
  ),
  maxRetainedBytes: Size.default(64 * 1024 * 1024).describe(
    "payload and topic bytes of all retained messages; a retained publish beyond it is delivered, not retained, and removes the topic's retained message",
  ),
});

/** A connection to an upstream broker. */
export const MqttBridgeConfig = z.strictObject({
  url: z.string().regex(/^(mqtts?|wss?):\/\/[^/]+/, "url is mqtt://, mqtts://, ws:// or wss://"),
  username: z.string().optional(),
  password: z.string().optional().describe("env:NAME recommended"),
  clientId: z.string().min(1).max(65535).optional().describe(
    "defaults to gateway-<bridge name>",
  ),
  ca: z.string().optional().describe("PEM CA file for mqtts/wss, relative to the config file"),
  cert: z.string().optional().describe("PEM client certificate file"),
  key: z.string().optional().describe("PEM client key file"),
  rejectUnauthorized: z.boolean().default(true),
  keepalive: Duration.default(60_000),
  out: z.array(MqttBridgeMapping).default([]).describe("local topics sent upstream"),
  in: z.array(MqttBridgeMapping).default([]).describe("upstream topics published locally"),
  reconnect: z.strictObject({
    min: Duration.default(500),
    max: Duration.default(30_000),
    jitter: z.number().min(0).max(1).default(0.2).describe("fraction of the delay randomised"),
  }).prefault({}),
  inflight: z.number().int().min(1).max(65_000).default(256).describe(
    "queued messages sent upstream before their acks",
  ),
  queue: MqttQueueConfig.prefault({}),
}).refine((b) => (b.cert === undefined) === (b.key === undefined), {
  message: "cert and key go together",
  path: ["cert"],
});

/** The embedded MQTT broker. */
export const MqttConfig = z.strictObject({
  listeners: z.record(Name, MqttListenerConfig).default({}).describe(
    "TCP/TLS listeners; MQTT over WebSocket is a route with target { mqtt: {} }",
  ),
  allowAnonymous: z.boolean().default(false).describe("accept clients without a user name"),
  users: z.record(z.string().min(1), MqttUserConfig).default({}),
  localUser: z.union([z.string().min(1), z.literal(false)]).default("local").describe(
    "a user whose password is generated and kept in <storage.dataDir>/mqtt-local.password (mode 0600); false: none",
  ),
  acl: z.array(MqttAclRule).optional().describe(
    "when present, only what a matching rule allows; when absent, everything",
  ),
  busToBroker: z.array(Filter).default([]).describe(
    "bus topics delivered to broker subscribers (broker publishes always go to the bus)",
  ),
  keepaliveLimit: z.number().int().min(0).max(65535).default(0).describe(
    "largest keepalive (seconds) a client may ask for; 0 = any",
  ),
  maxClientIdLength: z.number().int().min(1).max(65535).default(256),
  connectTimeout: Duration.default(10_000).refine((ms) => ms <= 60_000, {
    message:
      "connectTimeout is at most 60s (a client holds a connection that long unauthenticated)",
  }).describe("time from accepting a connection to its CONNECT packet"),
  maxPacketSize: Size.default(1024 * 1024).refine((bytes) => bytes >= 1 && bytes <= 268_435_455, {
    message: "maxPacketSize is 1 to 268435455 bytes (the largest MQTT packet)",
  }).describe(
    "largest packet a client may send once connected (before its CONNECT is accepted: 64KiB); a larger one closes the connection",
  ),
  maxSubscriptions: z.number().int().positive().default(100).describe(
    "subscriptions one client may hold; more get SUBACK 0x80",
  ),
  sessions: MqttSessionsConfig.prefault({}).describe(
    "persistent sessions and retained messages, stored in <storage.dataDir>/mqtt-sessions.sqlite3",
  ),
  bridges: z.record(Name, MqttBridgeConfig).default({}),
}).superRefine((mqtt, ctx) => {
  if (mqtt.localUser !== false && Object.hasOwn(mqtt.users, mqtt.localUser)) {
    ctx.addIssue({
      code: "custom",
      path: ["users", mqtt.localUser],
      message:
        `"${mqtt.localUser}" is the localUser, whose password is generated: rename this user or set localUser`,
    });
  }
});

/** The `mqtt` route target: MQTT over WebSocket into the embedded broker. */
export const MqttTargetConfig = z.strictObject({
  maxConnections: z.number().int().positive().default(10_000),
  maxPerIp: z.number().int().positive().default(1000),
});

/** The validated `mqtt` route target. */
export type MqttTargetConfig = z.output<typeof MqttTargetConfig>;
/** The validated `mqtt` section. */
export type MqttConfig = z.output<typeof MqttConfig>;
/** One validated broker listener. */
export type MqttListenerConfig = z.output<typeof MqttListenerConfig>;
/** One validated bridge. */
export type MqttBridgeConfig = z.output<typeof MqttBridgeConfig>;
/** One validated bridge mapping. */
export type MqttBridgeMapping = z.output<typeof MqttBridgeMapping>;
/** One validated ACL rule. */
export type MqttAclRule = z.output<typeof MqttAclRule>;
/** Validated session bounds. */
export type MqttSessionsConfig = z.output<typeof MqttSessionsConfig>;
/** Validated queue bounds. */
export type MqttQueueConfig = z.output<typeof MqttQueueConfig>;

/**
 * Makes the file paths of the section (listener TLS, bridge CA/cert/key)
 * absolute, relative to `baseDir` (the directory of the file holding the section).
 *
 * @example
 * ```ts
 * import { MqttConfig, resolveMqttPaths } from "./config.ts";
 * const mqtt = MqttConfig.parse({ listeners: { main: { tls: { cert: "c.pem", key: "k.pem" } } } });
 * resolveMqttPaths(mqtt, "/etc/gateway");
 * mqtt.listeners.main.tls?.cert; // "/etc/gateway/c.pem"
 * ```
 */
export function resolveMqttPaths(mqtt: MqttConfig, baseDir: string): void {
  for (const listener of Object.values(mqtt.listeners)) {
    if (!listener.tls) continue;
    listener.tls.cert = resolve(baseDir, listener.tls.cert);
    listener.tls.key = resolve(baseDir, listener.tls.key);
  }
  for (const bridge of Object.values(mqtt.bridges)) {
    for (const part of ["ca", "cert", "key"] as const) {
      const path = bridge[part];
      if (path !== undefined) bridge[part] = resolve(baseDir, path);
    }
  }
}

/**
 * The `mqtt` section; absent means no broker. It defines `mqtt-broker`
 * (`embedded`, for `mqtt` route targets) and checks that no broker listener
 * takes an address a listener of the `listeners` section binds.
 */
export const mqttSection = {
  schema: MqttConfig.optional().describe("the embedded MQTT broker and its bridges"),
  defines: {
    "mqtt-broker": (mqtt) => mqtt ? [{ name: "embedded", path: ["mqtt"] }] : [],
  },
  check(mqtt, references, report) {
    for (const [name, listener] of Object.entries(mqtt?.listeners ?? {})) {
      const address = `tcp:${listener.host}:${listener.port}`;
      const other = references.get("address", address);
      if (other && listener.port !== 0) {
        report(
          ["mqtt", "listeners", name, "port"],
          `MQTT listener "${name}" uses ${address}, already used by listener "${other.detail}"`,
        );
      }
    }
  },
  resolve(mqtt, { dir }) {
    if (mqtt) resolveMqttPaths(mqtt, dir);
  },
} satisfies ConfigSection<z.ZodOptional<typeof MqttConfig>>;
