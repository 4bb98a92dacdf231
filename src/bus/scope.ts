/**
 * The bus as one party sees it: a handle whose subscribe, publish and
 * request enforce the reserved namespaces and the party's `bus` grant
 * (see {@link subscribeRefusal} and {@link publishRefusal}). The plugin host
 * gives one to each plugin, the worker supervisor to each worker instance,
 * the MQTT bridge to its clients; the gateway's own code uses the bus itself.
 *
 * @module
 */

import { GatewayError } from "../errors.ts";
import type { Bus, Reply, RequestBody, SubscribeOptions, Subscription } from "./bus.ts";
import type { BusMessage, MessageSource } from "./message.ts";
import { type BusIdentity, hiddenTopics, publishRefusal, subscribeRefusal } from "./access.ts";

/**
 * A subscribe, publish or request a scope refused: 403 `not_capable`, named
 * `NotCapable` like Deno's own permission errors.
 *
 * @example
 * ```ts
 * import { BusAccessError } from "./scope.ts";
 * const error = new BusAccessError('plugin:spy may not subscribe to "fn/#"');
 * error.name; // "NotCapable"
 * ```
 */
export class BusAccessError extends GatewayError {
  constructor(message: string) {
    super(403, "not_capable", message);
    this.name = "NotCapable";
  }
}

/**
 * The bus for one party (`identity`). Refusals throw a {@link BusAccessError};
 * a wildcard subscription never receives reserved topics.
 *
 * @example
 * ```ts
 * import { Bus } from "./bus.ts";
 * const scope = new Bus().scoped({ owner: "plugin:spy", name: "spy" });
 * try {
 *   scope.subscribe("fn/#", () => {});
 * } catch (error) {
 *   (error as Error).name; // "NotCapable"
 * }
 * scope.subscribe("#", () => {}).unsubscribe(); // never sees fn/... calls
 * ```
 */
export class BusScope {
  constructor(readonly bus: Bus, readonly identity: BusIdentity) {}

  /** {@link Bus.subscribe} as `identity`, when the filter is allowed. */
  subscribe(
    filter: string,
    handler: (message: BusMessage) => void | Promise<void>,
    options: Omit<SubscribeOptions, "owner" | "hides"> = {},
  ): Subscription {
    const refusal = subscribeRefusal(this.identity, filter);
    if (refusal) throw new BusAccessError(refusal);
    const hides = hiddenTopics(this.identity, filter);
    return this.bus.subscribe(filter, handler, {
      ...options,
      owner: this.identity.owner,
      ...(hides ? { hides } : {}),
    });
  }

  /** {@link Bus.publish} as `identity`, when the topic is allowed. */
  publish(message: BusMessage): number {
    const refusal = publishRefusal(this.identity, message.topic);
    if (refusal) throw new BusAccessError(refusal);
    return this.bus.publish(message);
  }

  /** {@link Bus.request} as `identity`: any function's `fn/` topic, other topics as a publish. */
  request(
    topic: string,
    body: RequestBody,
    options: { source: MessageSource; meta?: Record<string, string>; timeout: number },
  ): Promise<Reply> {
    const refusal = publishRefusal(this.identity, topic, true);
    if (refusal) return Promise.reject(new BusAccessError(refusal));
    return this.bus.request(topic, body, options);
  }
}
