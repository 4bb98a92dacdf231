/**
 * The broker and the bus, both ways, without loops:
 *
 * - Every publish of an MQTT client (and every will) goes onto the bus on the
 *   same topic, with `source.protocol` `mqtt` and meta `qos` and `retain`.
 * - Bus messages on the configured `busToBroker` filters go to the broker's
 *   subscribers, and to the bridges whose `out` mappings take them, unless
 *   they came from MQTT (so a message never returns where it entered).
 * - Messages a bridge brings in from upstream go to the broker's subscribers
 *   and onto the bus (as `mqtt` from listener `bridge:<name>`), never back out.
 *
 * Topics the bus does not accept (`$SYS/...`) stay inside the broker. MQTT
 * reaches the bus through a scope ({@link Bus.scoped}): publishes on `fn/`
 * and `$` topics are not put on the bus, a `busToBroker` filter inside `fn/`
 * is refused, and a wider one (`#`) never carries function calls. Reply
 * topics (`device/<id>/send`) do reach the broker: its clients receive their
 * pushes that way.
 *
 * @module
 */

import { getLogger } from "@logtape/logtape";
import { eventWarnings } from "../observability/rate_limited_log.ts";
import type { Bus, Subscription } from "../bus/bus.ts";
import type { BusScope } from "../bus/scope.ts";
import type { BusMessage } from "../bus/message.ts";
import { topicError } from "../bus/topic.ts";
import type { MqttBroker } from "./broker.ts";
import type { OutboundMessage } from "./queue.ts";

const logger = getLogger(["gateway", "mqtt", "bus"]);
/** The bus owner of the bridge's subscriptions. */
const OWNER = "mqtt";

/**
 * Connects `broker` and `bus`.
 *
 * @example
 * ```ts
 * import { BusBridge } from "./bus_bridge.ts";
 * // const link = new BusBridge(bus, broker);
 * // link.setFilters(["commands/#"]);
 * // link.stop();
 * ```
 */
export class BusBridge {
  #subscriptions: Subscription[] = [];
  #filters: readonly string[] = [];
  readonly #bus: BusScope;

  constructor(readonly bus: Bus, readonly broker: MqttBroker) {
    this.#bus = bus.scoped({ owner: OWNER, carriesReplies: true });
    broker.aedes.on("publish", (packet, client) => {
      if (!client || topicError(packet.topic)) return;
      this.#toBus({
        topic: packet.topic,
        payload: packet.payload as Uint8Array,
        source: broker.sourceOf(client),
        meta: { qos: String(packet.qos), retain: String(packet.retain), clientId: client.id },
      });
    });
  }

  /** Replaces the bus filters whose messages go to the broker. */
  setFilters(filters: readonly string[]): void {
    if (filters.join("\n") === this.#filters.join("\n")) return;
    for (const subscription of this.#subscriptions) subscription.unsubscribe();
    this.#filters = filters;
    this.#subscriptions = filters.flatMap((filter) => {
      try {
        return [this.#bus.subscribe(filter, (message) => this.#toBroker(message), {
          queueSize: 10_000,
        })];
      } catch (error) {
        logger.error("mqtt.busToBroker: {error}", { error: (error as Error).message });
        return [];
      }
    });
  }

  /** A message from an upstream broker: to local subscribers and the bus. */
  fromBridge(bridge: string, message: OutboundMessage): void {
    this.broker.publish(message).catch((error) => {
      logger.error("bridge {bridge}: cannot publish {topic} locally: {error}", {
        bridge,
        topic: message.topic,
        error,
      });
    });
    if (topicError(message.topic)) return;
    this.#toBus({
      topic: message.topic,
      payload: message.payload,
      source: { listener: `bridge:${bridge}`, protocol: "mqtt" },
      meta: { qos: String(message.qos), retain: String(message.retain) },
    });
  }

  /** Puts an MQTT message on the bus, unless it is on a topic MQTT may not publish on. */
  #toBus(message: BusMessage): void {
    try {
      this.#bus.publish(message);
    } catch (error) {
      eventWarnings.warn(
        logger,
        "mqtt/bus-refused",
        "MQTT message on {topic} not put on the bus: {error}",
        { topic: message.topic, error: (error as Error).message },
      );
    }
  }

  /** Removes the bus subscriptions. */
  stop(): void {
    for (const subscription of this.#subscriptions) subscription.unsubscribe();
    this.#subscriptions = [];
    this.#filters = [];
  }

  async #toBroker(message: BusMessage): Promise<void> {
    if (message.source.protocol === "mqtt") return;
    const qos = Number(message.meta.qos);
    const outbound: OutboundMessage = {
      topic: message.topic,
      payload: message.payload,
      qos: qos === 1 || qos === 2 ? qos : 0,
      retain: message.meta.retain === "true",
    };
    try {
      const forwarders = this.broker.policy.forwarders.filter((f) => f.takes(message.topic));
      await Promise.all([
        this.broker.publish(outbound),
        ...forwarders.map((f) => f.forward(outbound)),
      ]);
    } catch (error) {
      eventWarnings.warn(
        logger,
        "mqtt/bus-undelivered",
        "bus message on {topic} not delivered to MQTT: {error}",
        {
          topic: message.topic,
          error: (error as Error).message,
        },
      );
    }
  }
}
