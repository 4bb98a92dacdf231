/**
 * The order of the broker's publishes and when they are acknowledged.
 *
 * aedes runs a publish in steps: retain it, queue it for the persistent
 * sessions it matches, hand it to the online subscribers (`mq.emit`), then
 * call `published`. Each publish is numbered when it starts, and a client
 * drops a message numbered below one it already has (aedes's de-duplication):
 * a publish handed over after a later one is lost for every subscriber.
 *
 * - Publishes run their steps up to the hand-over one at a time, in the
 *   order they were published: the next starts as soon as the previous one
 *   has been handed over. The session store answers those steps from memory
 *   (its writes are queued in that order and committed in groups), so this
 *   costs no disk wait.
 * - `published` (for QoS 1 and 2) calls `acknowledge`, which the broker
 *   makes hold the client's output until the session store's writes so far
 *   are durable (an `AckGate`); aedes writes a QoS 2 publish's PUBREC
 *   after `published`.
 * - aedes writes a QoS 1 publish's PUBACK before it publishes. The broker
 *   calls {@link PublishOrder.publishAhead} from `authorizePublish` (which
 *   aedes runs before the PUBACK) and holds the client's output until it
 *   settles; the publish aedes starts after the PUBACK is skipped. A client's
 *   QoS 2 publish, which aedes publishes after storing it in memory, can be
 *   overtaken by a QoS 0/1 publish from the same read (MQTT keeps order
 *   per QoS level, MQTT-4.6.0-7).
 *
 * @module
 */

import type { Aedes, Client } from "aedes";

type Done = (error?: Error | null) => void;

/** The aedes members this module wraps (its types leave `mq` untyped). */
interface OrderedAedes {
  publish(packet: object, client?: Client | Done | null, done?: Done): void;
  published(packet: { qos?: number }, client: Client | null, done: Done): void;
  mq: { emit(packet: object, done?: Done): unknown };
}

/**
 * Installs the ordering on an aedes instance.
 *
 * @example
 * ```ts
 * import { Aedes } from "aedes";
 * import { PublishOrder } from "./publish_order.ts";
 * const aedes = await Aedes.createBroker();
 * const order = new PublishOrder(aedes, () => Promise.resolve()); // nothing to wait for
 * aedes.publish({ cmd: "publish", topic: "a", payload: "1", qos: 1, retain: false, dup: false }, () => {});
 * await order.publishAhead({ topic: "a", payload: "2", qos: 1 }, null);
 * aedes.close();
 * ```
 */
export class PublishOrder {
  /** Packets published ahead whose publish by aedes is still to be skipped. */
  readonly #ahead = new WeakSet<object>();
  /** Settles once the last publish started has been handed over (or has failed). */
  #previous: Promise<void> = Promise.resolve();
  /** Ends the turn of the publish running its steps. */
  #handedOver?: () => void;
  readonly #publish: (packet: object, client: Client | null, done: Done) => void;

  /**
   * `acknowledge` is called when a QoS 1 or 2 publish has been handed over;
   * aedes's acknowledgement waits for the promise it returns.
   */
  constructor(aedes: Aedes, acknowledge: (client: Client | null) => Promise<void>) {
    const broker = aedes as unknown as OrderedAedes;
    const publish = broker.publish.bind(broker);
    this.#publish = (packet, client, done) => publish(packet, client, done);
    broker.publish = (packet, client, done) => {
      if (typeof client === "function") [done, client] = [client, null];
      if (this.#ahead.delete(packet)) return done?.(null);
      this.#inTurn(packet, client ?? null, done ?? (() => {}));
    };
    const emit = broker.mq.emit.bind(broker.mq);
    broker.mq.emit = (packet, done) => {
      const result = emit(packet, done);
      const handedOver = this.#handedOver;
      this.#handedOver = undefined;
      handedOver?.();
      return result;
    };
    broker.published = (packet, client, done) => {
      if (!packet.qos) return done(null);
      acknowledge(client).then(() => done(null), done);
    };
  }

  /**
   * Publishes `packet` of `client` now, in its turn; resolves once it has
   * been handed to the subscribers and acknowledged. aedes's own publish of
   * the same packet object (after its PUBACK) does nothing.
   */
  publishAhead(packet: object, client: Client | null): Promise<void> {
    const { promise, resolve, reject } = Promise.withResolvers<void>();
    this.#ahead.add(packet);
    this.#inTurn(packet, client, (error) => error ? reject(error) : resolve());
    return promise;
  }

  #inTurn(packet: object, client: Client | null, done: Done): void {
    const turn = Promise.withResolvers<void>();
    const previous = this.#previous;
    this.#previous = turn.promise;
    previous.then(() => {
      this.#handedOver = turn.resolve;
      this.#publish(packet, client, (error) => {
        if (this.#handedOver === turn.resolve) this.#handedOver = undefined;
        turn.resolve();
        done(error);
      });
    });
  }
}
