/**
 * The message bus: publish and subscribe on topics with MQTT wildcard
 * filters, and request/reply on top of them (function calls are requests on
 * `fn/<owner>/<name>`).
 *
 * Publishing is synchronous and cheap: it finds the matching subscriptions in
 * a {@link TopicTrie} and appends the message to each one's bounded queue.
 * Every subscription drains its own queue asynchronously, one message at a
 * time, awaiting its handler's promise before the next message, so a slow
 * subscriber delays nobody but itself. A full queue drops by its overflow
 * policy and counts the drop in `gateway_bus_dropped_total{owner}`.
 *
 * The gateway's own code uses the bus directly; a plugin, a worker or an
 * MQTT client reaches it only through {@link Bus.scoped}, which keeps it out
 * of the reserved namespaces (`fn/`, reply topics, `$`) and within its grant.
 *
 * @module
 */

import { getLogger } from "@logtape/logtape";
import { type CounterValue, type GaugeValue, MetricsRegistry } from "../observability/metrics.ts";
import { GatewayError } from "../errors.ts";
import { type BusMessage, type MessageSource, withValue } from "./message.ts";
import { filterError, topicError, TopicTrie } from "./topic.ts";
import type { BusIdentity } from "./access.ts";
import { BusScope } from "./scope.ts";

const logger = getLogger(["gateway", "bus"]);

/** What a full subscription queue discards: its oldest message or the one arriving. */
export type OverflowPolicy = "drop-oldest" | "drop-newest";

/** How a subscription is owned and queued. */
export interface SubscribeOptions {
  /** Who subscribes (plugin, worker, connection); {@link Bus.unsubscribeOwner} removes theirs. */
  owner: string;
  /** Messages waiting for the handler at most (default 1024). */
  queueSize?: number;
  /** What a full queue discards (default `"drop-oldest"`). */
  overflow?: OverflowPolicy;
  /** Topics never delivered to it although its filter matches them (a scope's reserved ones). */
  hides?: (topic: string) => boolean;
}

/** A handler registered on a filter, until {@link Subscription.unsubscribe}. */
export interface Subscription {
  readonly filter: string;
  readonly owner: string;
  /** Stops delivery; messages still queued are discarded. Calling it again does nothing. */
  unsubscribe(): void;
}

/** The reply to a {@link Bus.request}. */
export interface Reply {
  /** The bytes; for a reply carrying `value`, its JSON, encoded on first read. */
  readonly payload: Uint8Array;
  /** The value of a reply given with `replyValue` (an in-process answer). */
  value?: unknown;
  meta: Record<string, string>;
}

/** What a request carries: bytes, or an in-process value (see `BusMessage.value`). */
export type RequestBody = Uint8Array | { value: unknown };

const BUS_ERROR_STATUS = {
  no_responder: 503,
  timeout: 504,
  invalid_topic: 400,
  invalid_filter: 400,
};

/**
 * An error of the bus, with a code to branch on and the status it answers
 * with (503 `no_responder`, 504 `timeout`, 400 for an invalid topic or filter).
 *
 * @example
 * ```ts
 * import { Bus, BusError } from "./bus.ts";
 * const bus = new Bus();
 * const source = { listener: "gateway", protocol: "gateway" } as const;
 * try {
 *   await bus.request("fn/nobody/echo", new Uint8Array(), { source, timeout: 100 });
 * } catch (error) {
 *   if (error instanceof BusError && error.code === "no_responder") console.log(error.message);
 * }
 * ```
 */
export class BusError extends GatewayError {
  constructor(
    override readonly code: keyof typeof BUS_ERROR_STATUS,
    message: string,
  ) {
    super(BUS_ERROR_STATUS[code], code, message);
    this.name = "BusError";
  }
}

const DEFAULT_QUEUE_SIZE = 1024;
/** Capacity a queue starts with and shrinks back to when drained. */
const INITIAL_QUEUE_CAPACITY = 8;

/**
 * A FIFO ring buffer of messages. It grows by doubling up to its owner's
 * queue size and shrinks back when drained, so idle subscriptions stay small.
 */
class MessageQueue {
  #slots: (BusMessage | undefined)[] = new Array(INITIAL_QUEUE_CAPACITY);
  #head = 0;
  length = 0;

  constructor(readonly limit: number) {}

  /** Appends `message`; the caller keeps `length` under `limit`. */
  push(message: BusMessage): void {
    if (this.length === this.#slots.length) {
      const grown = new Array(Math.min(this.limit, this.length * 2));
      for (let i = 0; i < this.length; i++) {
        grown[i] = this.#slots[(this.#head + i) % this.#slots.length];
      }
      this.#slots = grown;
      this.#head = 0;
    }
    this.#slots[(this.#head + this.length) % this.#slots.length] = message;
    this.length++;
  }

  /** Removes and returns the oldest message; the caller checks `length` first. */
  shift(): BusMessage {
    const message = this.#slots[this.#head]!;
    this.#slots[this.#head] = undefined;
    this.#head = (this.#head + 1) % this.#slots.length;
    this.length--;
    if (this.length === 0 && this.#slots.length > INITIAL_QUEUE_CAPACITY) this.clear();
    return message;
  }

  /** Forgets every message. */
  clear(): void {
    this.#slots = new Array(INITIAL_QUEUE_CAPACITY);
    this.#head = 0;
    this.length = 0;
  }
}

/** The counters a subscriber updates, resolved once per bus. */
interface SubscriberMetrics {
  delivered: CounterValue;
  /** The dropped-messages counter of `owner`, resolved at that owner's first drop. */
  droppedFor(owner: string): CounterValue;
}

/** One subscription: its queue and the loop that hands the queue to its handler. */
class Subscriber {
  readonly #queue: MessageQueue;
  #draining = false;
  #closed = false;
  #dropped: CounterValue | undefined;

  constructor(
    readonly filter: string,
    readonly owner: string,
    readonly handler: (message: BusMessage) => void | Promise<void>,
    queueSize: number,
    readonly overflow: OverflowPolicy,
    readonly metrics: SubscriberMetrics,
    readonly hides: ((topic: string) => boolean) | undefined,
  ) {
    this.#queue = new MessageQueue(queueSize);
  }

  /** Queues `message` for the handler; false when the overflow policy discarded it. */
  enqueue(message: BusMessage): boolean {
    const queue = this.#queue;
    if (queue.length === queue.limit) {
      (this.#dropped ??= this.metrics.droppedFor(this.owner)).inc();
      if (this.overflow === "drop-newest") return false;
      queue.shift();
    }
    queue.push(message);
    if (!this.#draining) {
      this.#draining = true;
      queueMicrotask(() => this.#drain());
    }
    return true;
  }

  /** Stops the loop after the message being handled, discarding the rest. */
  close(): void {
    this.#closed = true;
    this.#queue.clear();
  }

  async #drain(): Promise<void> {
    const queue = this.#queue;
    while (queue.length > 0 && !this.#closed) {
      const message = queue.shift();
      this.metrics.delivered.inc();
      try {
        const result = this.handler(message);
        if (result) await result;
      } catch (error) {
        logger.error("handler of {owner} for {filter} failed on {topic}: {error}", {
          owner: this.owner,
          filter: this.filter,
          topic: message.topic,
          error,
        });
      }
    }
    this.#draining = false;
  }
}

/**
 * Topics with MQTT wildcard filters: publish, subscribe, request/reply.
 * Messages are shared between subscribers: handlers treat them as read-only.
 *
 * @example
 * ```ts
 * import { Bus } from "./bus.ts";
 * const bus = new Bus();
 * const source = { listener: "gateway", protocol: "gateway" } as const;
 * bus.subscribe("fn/demo/length", (message) => {
 *   message.reply?.(new Uint8Array([message.payload.length]));
 * }, { owner: "demo" });
 * const reply = await bus.request("fn/demo/length", new Uint8Array(3), { source, timeout: 1000 });
 * reply.payload; // Uint8Array [3]
 * bus.unsubscribeOwner("demo"); // 1
 * ```
 */
export class Bus {
  readonly #trie = new TopicTrie<Subscriber>();
  readonly #owners = new Map<string, Set<Subscriber>>();
  /** Reused by every publish to collect the matching subscribers without allocating. */
  readonly #matches: Subscriber[] = [];
  readonly #published: CounterValue;
  readonly #subscriptions: GaugeValue;
  readonly #subscriberMetrics: SubscriberMetrics;

  /** Counts into `metrics` when given (the process's registry), else into a private one. */
  constructor(metrics: MetricsRegistry = new MetricsRegistry()) {
    this.#published = metrics.counter("gateway_bus_published_total", "Messages published.")
      .labels();
    this.#subscriptions = metrics.gauge("gateway_bus_subscriptions", "Live subscriptions.")
      .labels();
    const dropped = metrics.counter(
      "gateway_bus_dropped_total",
      "Messages discarded by a full subscription queue.",
      ["owner"],
    );
    this.#subscriberMetrics = {
      delivered: metrics.counter(
        "gateway_bus_delivered_total",
        "Messages handed to subscription handlers.",
      ).labels(),
      droppedFor: (owner) => dropped.labels({ owner }),
    };
  }

  /** The number of live subscriptions. */
  get subscriptionCount(): number {
    return this.#trie.size;
  }

  /**
   * Queues `message` for every subscription whose filter matches its topic and
   * returns how many queued it (a full `drop-newest` queue does not). Throws a
   * {@link BusError} `invalid_topic` when the topic is not valid.
   */
  publish(message: BusMessage): number {
    const error = topicError(message.topic);
    if (error) throw new BusError("invalid_topic", error);
    this.#published.inc();
    const matches = this.#trie.match(message.topic, this.#matches);
    let queued = 0;
    for (let i = 0; i < matches.length; i++) {
      const match = matches[i];
      if (match.hides !== undefined && match.hides(message.topic)) continue;
      if (match.enqueue(message)) queued++;
    }
    matches.length = 0;
    return queued;
  }

  /**
   * Calls `handler` with every message published on a topic matching `filter`,
   * one at a time and in order. A handler that throws or rejects is logged and
   * gets the next message. Throws a {@link BusError} `invalid_filter` when the
   * filter is not valid.
   */
  subscribe(
    filter: string,
    handler: (message: BusMessage) => void | Promise<void>,
    options: SubscribeOptions,
  ): Subscription {
    const error = filterError(filter);
    if (error) throw new BusError("invalid_filter", error);
    const queueSize = options.queueSize ?? DEFAULT_QUEUE_SIZE;
    if (!Number.isInteger(queueSize) || queueSize < 1) {
      throw new RangeError(`queueSize must be a positive integer, got ${queueSize}`);
    }
    const subscriber = new Subscriber(
      filter,
      options.owner,
      handler,
      queueSize,
      options.overflow ?? "drop-oldest",
      this.#subscriberMetrics,
      options.hides,
    );
    this.#trie.add(filter, subscriber);
    let owned = this.#owners.get(options.owner);
    if (!owned) {
      owned = new Set();
      this.#owners.set(options.owner, owned);
    }
    owned.add(subscriber);
    this.#subscriptions.inc();
    return { filter, owner: options.owner, unsubscribe: () => this.#remove(subscriber) };
  }

  /**
   * Publishes a request on `topic` and resolves with the first reply to it
   * (later replies are ignored). `body` is bytes, or `{ value }` for an
   * in-process value that is encoded only if a subscriber reads the payload;
   * the reply may likewise carry a value. Rejects with a {@link BusError}:
   * `no_responder` at once when no subscription took the message, `timeout`
   * when no reply came within `timeout` ms, `invalid_topic` when the topic is
   * not valid.
   */
  async request(
    topic: string,
    body: RequestBody,
    options: { source: MessageSource; meta?: Record<string, string>; timeout: number },
  ): Promise<Reply> {
    // A settled promise ignores later calls: the first reply or the timeout wins.
    const { promise, resolve, reject } = Promise.withResolvers<Reply>();
    const fields = {
      topic,
      source: options.source,
      meta: options.meta ?? {},
      reply: (payload: Uint8Array, meta: Record<string, string> = {}) => resolve({ payload, meta }),
      replyValue: (value: unknown, meta: Record<string, string> = {}) =>
        resolve(withValue({ meta }, value)),
    };
    const queued = this.publish(
      body instanceof Uint8Array ? { ...fields, payload: body } : withValue(fields, body.value),
    );
    if (queued === 0) {
      throw new BusError("no_responder", `no subscription took the request on "${topic}"`);
    }
    const timer = setTimeout(
      () => reject(new BusError("timeout", `no reply on "${topic}" within ${options.timeout} ms`)),
      options.timeout,
    );
    try {
      return await promise;
    } finally {
      clearTimeout(timer);
    }
  }

  /**
   * The bus as `identity` may use it: a {@link BusScope} whose subscribe,
   * publish and request throw `NotCapable` outside what it may reach.
   */
  scoped(identity: BusIdentity): BusScope {
    return new BusScope(this, identity);
  }

  /** Removes every subscription of `owner` and returns how many there were. */
  unsubscribeOwner(owner: string): number {
    const owned = this.#owners.get(owner);
    if (!owned) return 0;
    const count = owned.size;
    for (const subscriber of owned) this.#remove(subscriber);
    return count;
  }

  #remove(subscriber: Subscriber): void {
    if (!this.#trie.remove(subscriber.filter, subscriber)) return;
    subscriber.close();
    const owned = this.#owners.get(subscriber.owner)!;
    owned.delete(subscriber);
    if (owned.size === 0) this.#owners.delete(subscriber.owner);
    this.#subscriptions.dec();
  }
}
