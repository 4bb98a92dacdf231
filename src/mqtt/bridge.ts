/**
 * A bridge to one upstream broker, with the mqtt.js client.
 *
 * - `out`: local messages whose topic matches a mapping are renamed
 *   (`removePrefix`, `addPrefix`) and sent upstream at the mapping's QoS.
 *   QoS 1 and 2 go through the bridge's {@link ForwardQueue}: {@link Bridge.forward}
 *   resolves once the message is on disk (the broker acknowledges the
 *   publisher only then), and the message leaves the queue only when the
 *   upstream acknowledges it. Up to `inflight` messages are in flight; after a
 *   reconnect sending starts again from the oldest unacknowledged message, so
 *   the upstream sees them in order (a message whose ack was lost is sent
 *   again, as QoS 1 allows). QoS 0 messages are sent when connected and
 *   otherwise dropped (counted).
 * - `in`: the bridge subscribes upstream to each mapping's topic; what
 *   arrives is renamed and handed to `publishLocal` (the broker and the bus),
 *   never back out, so nothing loops.
 * - Reconnect: exponential backoff from `reconnect.min` to `reconnect.max`,
 *   each delay randomised by ±`jitter`; mqtt.js's own reconnect is off.
 *
 * @module
 */

import { Buffer } from "node:buffer";
import { readFileSync } from "node:fs";
import { getLogger } from "@logtape/logtape";
import mqtt, { type IClientOptions, type MqttClient } from "mqtt";
import { redactUrl } from "../admin/secrets.ts";
import type { MqttBridgeConfig, MqttBridgeMapping } from "./config.ts";
import type { ForwardQueue, OutboundMessage } from "./queue.ts";
import { filterMatches } from "./topic_match.ts";

const logger = getLogger(["gateway", "mqtt", "bridge"]);

/** A Buffer view of `bytes` (mqtt.js takes Buffers). */
function asBuffer(bytes: Uint8Array): Buffer {
  return Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
}

/** Where a bridge is. */
export type BridgeState = "connecting" | "connected" | "waiting" | "stopped";

/** What a bridge needs besides its config. */
export interface BridgeDeps {
  /** The bridge's persistent queue (kept across reloads and restarts). */
  queue: ForwardQueue;
  /** Publishes an inbound message locally (to broker subscribers and the bus). */
  publishLocal(message: OutboundMessage): void;
  /** Counts messages sent upstream, received from upstream, and QoS 0 messages dropped while down. */
  count(event: "sent" | "received" | "dropped"): void;
}

/**
 * The topic `topic` becomes under `mapping`, or undefined when the mapping does not take it.
 *
 * @example
 * ```ts
 * import { mapTopic } from "./bridge.ts";
 * const mapping = { topic: "sensors/#", removePrefix: "sensors/", addPrefix: "site1/", qos: 1 } as const;
 * mapTopic(mapping, "sensors/t1"); // "site1/t1"
 * mapTopic(mapping, "other/t1"); // undefined
 * ```
 */
export function mapTopic(mapping: MqttBridgeMapping, topic: string): string | undefined {
  if (!filterMatches(mapping.topic, topic) || !topic.startsWith(mapping.removePrefix)) {
    return undefined;
  }
  const renamed = mapping.addPrefix + topic.slice(mapping.removePrefix.length);
  return renamed === "" ? undefined : renamed;
}

/**
 * One bridge: started by {@link Bridge.start}, stopped by {@link Bridge.stop}.
 *
 * @example
 * ```ts
 * import { MqttBridgeConfig } from "./config.ts";
 * import { ForwardQueue } from "./queue.ts";
 * import { Bridge } from "./bridge.ts";
 * const config = MqttBridgeConfig.parse({ url: "mqtt://127.0.0.1:1883", out: [{ topic: "a/#" }] });
 * const queue = await ForwardQueue.open(await Deno.openKv(":memory:"), "up", config.queue);
 * const bridge = new Bridge("up", config, { queue, publishLocal() {}, count() {} });
 * bridge.start();
 * await bridge.forward({ topic: "a/1", payload: new Uint8Array(), qos: 1, retain: false });
 * await bridge.stop();
 * ```
 */
export class Bridge {
  #state: BridgeState = "waiting";
  #client?: MqttClient;
  /** Increased on every connection, so that callbacks of an older client are ignored. */
  #generation = 0;
  #attempt = 0;
  #timer?: ReturnType<typeof setTimeout>;
  #lastSentSeq = 0;
  readonly #inflight = new Set<number>();
  #lastError?: string;
  #connectedSince?: number;
  readonly #options: IClientOptions;
  /** The URL as logs and `GET /mqtt` show it: without the password of its userinfo. */
  readonly #shownUrl: string;

  constructor(
    readonly name: string,
    readonly config: MqttBridgeConfig,
    readonly deps: BridgeDeps,
  ) {
    this.#shownUrl = redactUrl(config.url);
    this.#options = {
      clientId: config.clientId ?? `gateway-${name}`,
      username: config.username,
      password: config.password,
      clean: true,
      keepalive: Math.max(1, Math.round(config.keepalive / 1000)),
      protocolVersion: 4,
      reconnectPeriod: 0,
      connectTimeout: 10_000,
      queueQoSZero: false,
      rejectUnauthorized: config.rejectUnauthorized,
      ca: config.ca === undefined ? undefined : readFileSync(config.ca),
      cert: config.cert === undefined ? undefined : readFileSync(config.cert),
      key: config.key === undefined ? undefined : readFileSync(config.key),
    };
  }

  /** Connection state, queue depth and the last error, for `GET /mqtt`. */
  snapshot(): Record<string, unknown> {
    const oldest = this.deps.queue.oldestAt;
    return {
      url: this.#shownUrl,
      state: this.#state,
      connectedSince: this.#connectedSince ?? null,
      lastError: this.#lastError ?? null,
      queueDepth: this.deps.queue.depth,
      queueBytes: this.deps.queue.bytes,
      oldestAgeSeconds: oldest === undefined ? 0 : (Date.now() - oldest) / 1000,
      inflight: this.#inflight.size,
    };
  }

  /** Where the bridge is: connecting, connected, waiting to reconnect, stopped. */
  get state(): BridgeState {
    return this.#state;
  }

  /** Connects (and keeps reconnecting until stopped). */
  start(): void {
    if (this.#state !== "waiting" || this.#client || this.#timer) return;
    this.deps.queue.onAvailable = () => this.#pump();
    this.#connect();
  }

  /**
   * Takes a local message for upstream when an `out` mapping matches: resolves
   * once it is queued on disk (QoS ≥ 1) or handed to the client (QoS 0).
   * Resolves false when no mapping takes it. Rejects with a `QueueFullError`
   * when the queue refuses it.
   */
  async forward(message: OutboundMessage): Promise<boolean> {
    for (const mapping of this.config.out) {
      const topic = mapTopic(mapping, message.topic);
      if (topic === undefined) continue;
      if (mapping.qos === 0) {
        if (this.#state === "connected") {
          this.#client!.publish(topic, asBuffer(message.payload), {
            qos: 0,
            retain: message.retain,
          });
          this.deps.count("sent");
        } else this.deps.count("dropped");
      } else {
        await this.deps.queue.append({ ...message, topic, qos: mapping.qos });
      }
      return true;
    }
    return false;
  }

  /** Whether some `out` mapping takes `topic`. */
  takes(topic: string): boolean {
    return this.config.out.some((mapping) => mapTopic(mapping, topic) !== undefined);
  }

  /** Disconnects and stops reconnecting; queued messages stay queued. */
  async stop(): Promise<void> {
    this.#state = "stopped";
    clearTimeout(this.#timer);
    this.#timer = undefined;
    const client = this.#client;
    this.#client = undefined;
    this.#generation++;
    if (client) await client.endAsync(true).catch(() => {});
    await this.deps.queue.flush();
  }

  #connect(): void {
    this.#timer = undefined;
    if (this.#state === "stopped") return;
    this.#state = "connecting";
    const generation = ++this.#generation;
    const client = mqtt.connect(this.config.url, this.#options);
    this.#client = client;
    const current = () => generation === this.#generation;
    client.on("connect", () => {
      if (!current()) return;
      this.#state = "connected";
      this.#attempt = 0;
      this.#connectedSince = Date.now();
      this.#lastError = undefined;
      logger.info("bridge {bridge} connected to {url}", {
        bridge: this.name,
        url: this.#shownUrl,
      });
      for (const mapping of this.config.in) {
        client.subscribe(mapping.topic, { qos: mapping.qos }, (error) => {
          if (error && current()) {
            logger.error("bridge {bridge}: subscribing to {topic} upstream failed: {error}", {
              bridge: this.name,
              topic: mapping.topic,
              error,
            });
          }
        });
      }
      this.#pump();
    });
    client.on("message", (topic, payload, packet) => {
      if (!current()) return;
      for (const mapping of this.config.in) {
        const local = mapTopic(mapping, topic);
        if (local === undefined) continue;
        this.deps.count("received");
        this.deps.publishLocal({
          topic: local,
          payload: new Uint8Array(payload),
          qos: mapping.qos,
          retain: packet.retain,
        });
        return;
      }
    });
    client.on("error", (error) => {
      if (current()) this.#lastError = error.message;
    });
    client.on("close", () => {
      if (!current()) return;
      this.#generation++;
      this.#client = undefined;
      this.#inflight.clear();
      this.#lastSentSeq = 0;
      this.#connectedSince = undefined;
      client.end(true);
      if (this.#state === "stopped") return;
      const { min, max, jitter } = this.config.reconnect;
      const base = Math.min(max, min * 2 ** Math.min(this.#attempt++, 30));
      const delay = Math.max(0, base * (1 + jitter * (2 * Math.random() - 1)));
      logger.warn("bridge {bridge}: disconnected from {url} ({error}); retrying in {delay} ms", {
        bridge: this.name,
        url: this.#shownUrl,
        error: this.#lastError ?? "closed",
        delay: Math.round(delay),
      });
      this.#state = "waiting";
      this.#timer = setTimeout(() => this.#connect(), delay);
    });
  }

  /** Sends queued messages while the connection is up and the in-flight window has room. */
  #pump(): void {
    const client = this.#client;
    if (this.#state !== "connected" || !client) return;
    const room = this.config.inflight - this.#inflight.size;
    if (room <= 0) return;
    const generation = this.#generation;
    for (const message of this.deps.queue.pending(this.#lastSentSeq, room)) {
      const seq = message.seq;
      this.#lastSentSeq = seq;
      this.#inflight.add(seq);
      client.publish(
        message.topic,
        asBuffer(message.payload),
        { qos: message.qos, retain: message.retain },
        (error) => {
          if (generation !== this.#generation) return;
          this.#inflight.delete(seq);
          if (error) {
            this.#lastError = error.message;
            return;
          }
          this.deps.count("sent");
          this.deps.queue.ack(seq).catch(() => {/* logged by the queue */});
          this.#pump();
        },
      );
    }
  }
}
