/**
 * Where a route sends a request: the target kinds and their settings.
 *
 * @module
 */

import { z } from "zod";
import { CONNECTION_PLACEHOLDERS, topicTemplate } from "../bus/topic_template.ts";
import { ConnectionLimitsConfig } from "../connections/config.ts";
import { Name } from "../config/fields.ts";
import { Duration, Size } from "../config/units.ts";
import { ModelTargetConfig, OcrTargetConfig } from "../models/config.ts";
import { MqttTargetConfig } from "../mqtt/config.ts";

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

/** The placeholders of a WebSocket target's topic besides the route's path params. */
export const WEBSOCKET_PLACEHOLDERS: readonly string[] = ["route", ...CONNECTION_PLACEHOLDERS];

/**
 * Upgrade to a WebSocket: messages to the bus, or proxied to an upstream
 * WebSocket. The route checks the topic's placeholders (they include its
 * path params).
 */
export const WebSocketTargetConfig = z.strictObject({
  mode: z.enum(["bus", "proxy"]).default("bus"),
  topic: topicTemplate().describe(
    "placeholders: {route}, {connectionId}, {deviceId}, {remoteAddress} and route params",
  ).default("ws/{route}/{connectionId}"),
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

/**
 * Publish the request body on the bus, or send it as a request and answer
 * with the reply. The route checks the topic's placeholders (its path params).
 */
export const TopicTargetConfig = z.strictObject({
  topic: topicTemplate().describe(
    "topic template; route params as {name}, e.g. 'device/{id}/send'",
  ),
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

const TARGET_KINDS = [
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
  const kinds = TARGET_KINDS.filter((k) => target[k] !== undefined);
  if (kinds.length !== 1) {
    ctx.addIssue({
      code: "custom",
      message: kinds.length === 0
        ? `a target needs one of: ${TARGET_KINDS.join(", ")}`
        : `a target has exactly one of ${TARGET_KINDS.join(", ")} (found ${kinds.join(", ")})`,
    });
  }
});

/** A validated route target. */
export type TargetConfig = z.output<typeof TargetConfig>;
/** Topic target settings, validated. */
export type TopicTargetConfig = z.output<typeof TopicTargetConfig>;
/** A validated function target. */
export type FunctionTargetConfig = z.output<typeof FunctionTargetConfig>;
/** WebSocket target settings, validated. */
export type WebSocketTargetConfig = z.output<typeof WebSocketTargetConfig>;
/** Static target settings, validated. */
export type StaticTargetConfig = z.output<typeof StaticTargetConfig>;
/** Respond target settings, validated. */
export type RespondTargetConfig = z.output<typeof RespondTargetConfig>;
