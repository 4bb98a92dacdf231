/**
 * The store-and-forward queue of one bridge: outbound messages kept in Deno
 * KV (under the data directory) from before the publisher is acknowledged
 * until the upstream broker acknowledges them, so that they survive an
 * uplink outage, a restart and `kill -9`.
 *
 * - {@link ForwardQueue.append} resolves once the message is committed to
 *   disk. Appends that arrive together are committed in one transaction
 *   (group commit), one transaction at a time, so sequence numbers, disk
 *   order and memory order agree.
 * - Messages stay in memory too (bounded by `maxBytes`), in sequence order;
 *   {@link ForwardQueue.pending} hands the bridge the next ones to send and
 *   {@link ForwardQueue.ack} removes one after the upstream's ack.
 * - Bounds: `maxMessages`, `maxBytes` (topic and payload bytes), `maxAge`.
 *   A full queue drops its oldest message (`drop-oldest`) or refuses the new
 *   one with a {@link QueueFullError} (`refuse`); messages older than
 *   `maxAge` are dropped. Every drop is logged and reported to `onDrop`.
 * - A payload larger than one KV value is stored in parts.
 *
 * @module
 */

import { getLogger } from "@logtape/logtape";
import type { MqttQueueConfig } from "./config.ts";
import { commitInBatches, type KvMutation, payloadParts } from "../storage/kv_writes.ts";
import { concat } from "../util/concat.ts";

const logger = getLogger(["gateway", "mqtt", "queue"]);
const encoder = new TextEncoder();
/** Index below which acknowledged entries are not compacted away. */
const COMPACT_AFTER = 1024;

/** A message as it enters the queue. */
export interface OutboundMessage {
  topic: string;
  payload: Uint8Array;
  qos: 0 | 1 | 2;
  retain: boolean;
}

/** A queued message: its sequence number and when it was queued (epoch ms). */
export interface QueuedMessage extends OutboundMessage {
  seq: number;
  at: number;
}

/** Why messages left the queue without being delivered. */
export type DropReason = "full" | "expired";

/** The error of an append refused by a full queue with policy `refuse`. */
export class QueueFullError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "QueueFullError";
  }
}

interface Entry extends QueuedMessage {
  bytes: number;
  parts: number;
  acked: boolean;
}

interface StoredPart {
  topic?: string;
  qos?: 0 | 1 | 2;
  retain?: boolean;
  at?: number;
  parts?: number;
  payload: Uint8Array;
}

/**
 * The persistent queue of one bridge.
 *
 * @example
 * ```ts
 * import { ForwardQueue } from "./queue.ts";
 * const kv = await Deno.openKv(":memory:");
 * const bounds = { maxMessages: 100, maxBytes: 1 << 20, maxAge: 60_000, policy: "refuse" } as const;
 * const queue = await ForwardQueue.open(kv, "cloud", bounds);
 * await queue.append({ topic: "a/b", payload: new Uint8Array([1]), qos: 1, retain: false });
 * const [first] = queue.pending(0, 10);
 * await queue.ack(first.seq);
 * queue.depth; // 0
 * kv.close();
 * ```
 */
export class ForwardQueue {
  readonly #kv: Deno.Kv;
  readonly #prefix: Deno.KvKey;
  #bounds: MqttQueueConfig;
  readonly #onDrop: (reason: DropReason, count: number) => void;
  /** Unacknowledged entries from `#head` on, in sequence order (acked ones are skipped). */
  #entries: Entry[] = [];
  #head = 0;
  #depth = 0;
  #bytes = 0;
  /** Appended but not yet committed: counted against the bounds. */
  #reservedMessages = 0;
  #reservedBytes = 0;
  #nextSeq: number;
  #mutations: KvMutation[] = [];
  #waiting: { entry?: Entry; resolve: () => void; reject: (error: Error) => void }[] = [];
  #flushing?: Promise<void>;
  /** Called when committed messages become available. */
  onAvailable?: () => void;

  private constructor(
    kv: Deno.Kv,
    prefix: Deno.KvKey,
    bounds: MqttQueueConfig,
    onDrop: (reason: DropReason, count: number) => void,
    entries: Entry[],
  ) {
    this.#kv = kv;
    this.#prefix = prefix;
    this.#bounds = bounds;
    this.#onDrop = onDrop;
    this.#entries = entries;
    this.#depth = entries.length;
    this.#bytes = entries.reduce((sum, entry) => sum + entry.bytes, 0);
    this.#nextSeq = (entries.at(-1)?.seq ?? 0) + 1;
  }

  /**
   * Loads the queue of bridge `name` from `kv` (messages left by an earlier
   * run included; a message whose parts are incomplete is discarded).
   */
  static async open(
    kv: Deno.Kv,
    name: string,
    bounds: MqttQueueConfig,
    onDrop: (reason: DropReason, count: number) => void = () => {},
  ): Promise<ForwardQueue> {
    const prefix: Deno.KvKey = ["mqtt-queue", name];
    const entries: Entry[] = [];
    let current: { entry: Entry; chunks: Uint8Array[] } | undefined;
    const incomplete: Deno.KvKey[] = [];
    const finish = () => {
      if (!current) return;
      const { entry, chunks } = current;
      if (chunks.length === entry.parts) {
        entry.payload = chunks.length === 1 ? chunks[0] : concat(chunks);
        entries.push(entry);
      } else {
        for (let part = 0; part < chunks.length; part++) {
          incomplete.push([...prefix, entry.seq, part]);
        }
      }
      current = undefined;
    };
    for await (const { key, value } of kv.list<StoredPart>({ prefix })) {
      const seq = key[prefix.length] as number;
      const part = key[prefix.length + 1] as number;
      if (part === 0) {
        finish();
        const topic = value.topic ?? "";
        current = {
          entry: {
            seq,
            topic,
            payload: value.payload,
            qos: value.qos ?? 1,
            retain: value.retain ?? false,
            at: value.at ?? 0,
            parts: value.parts ?? 1,
            bytes: 0,
            acked: false,
          },
          chunks: [],
        };
      }
      if (current?.entry.seq === seq) current.chunks.push(value.payload);
      else incomplete.push(key);
    }
    finish();
    for (const entry of entries) entry.bytes = byteSize(entry.topic, entry.payload);
    await commitInBatches(kv, incomplete.map((key) => ({ kind: "delete", key, bytes: 32 })));
    if (incomplete.length) {
      logger.warn("bridge {bridge}: discarded {count} parts of incomplete queued messages", {
        bridge: name,
        count: incomplete.length,
      });
    }
    return new ForwardQueue(kv, prefix, bounds, onDrop, entries);
  }

  /** Messages queued and not yet acknowledged by the upstream. */
  get depth(): number {
    return this.#depth;
  }

  /** Topic and payload bytes of the queued messages. */
  get bytes(): number {
    return this.#bytes;
  }

  /** Epoch ms at which the oldest queued message was queued, or undefined when empty. */
  get oldestAt(): number | undefined {
    return this.#first()?.at;
  }

  /** Applies new bounds (a reload); a queue now over them drops or refuses from the next append. */
  set bounds(bounds: MqttQueueConfig) {
    this.#bounds = bounds;
  }

  /**
   * Queues `message` and resolves once it is on disk. Rejects with a
   * {@link QueueFullError} when the queue is full and its policy is `refuse`
   * (or the message alone is larger than `maxBytes`).
   */
  append(message: OutboundMessage): Promise<void> {
    const bytes = byteSize(message.topic, message.payload);
    const { maxMessages, maxBytes, policy } = this.#bounds;
    this.#expire();
    if (bytes > maxBytes) {
      return Promise.reject(
        new QueueFullError(`message of ${bytes} bytes is larger than the queue's maxBytes`),
      );
    }
    const fits = () =>
      this.#depth + this.#reservedMessages < maxMessages &&
      this.#bytes + this.#reservedBytes + bytes <= maxBytes;
    if (!fits()) {
      if (policy === "refuse") {
        return Promise.reject(
          new QueueFullError(
            `queue full (${this.#depth + this.#reservedMessages} messages, ${
              this.#bytes + this.#reservedBytes
            } bytes)`,
          ),
        );
      }
      let dropped = 0;
      while (!fits() && this.#first()) {
        this.#dropFirst();
        dropped++;
      }
      if (dropped > 0) this.#reportDrop("full", dropped);
      if (!fits()) {
        return Promise.reject(new QueueFullError("queue full of messages not yet committed"));
      }
    }
    const seq = this.#nextSeq++;
    const entry: Entry = {
      ...message,
      seq,
      at: Date.now(),
      bytes,
      parts: 0,
      acked: false,
    };
    const parts = payloadParts(message.payload);
    entry.parts = parts.length;
    for (const [part, payload] of parts.entries()) {
      const value: StoredPart = part === 0
        ? {
          topic: message.topic,
          qos: message.qos,
          retain: message.retain,
          at: entry.at,
          parts: entry.parts,
          payload,
        }
        : { payload };
      this.#mutations.push({
        kind: "set",
        key: [...this.#prefix, seq, part],
        value,
        bytes: payload.byteLength + (part === 0 ? message.topic.length + 64 : 32),
      });
    }
    this.#reservedMessages++;
    this.#reservedBytes += bytes;
    const { promise, resolve, reject } = Promise.withResolvers<void>();
    this.#waiting.push({ entry, resolve, reject });
    this.#scheduleFlush();
    return promise;
  }

  /**
   * Up to `max` committed, unacknowledged messages with a sequence number
   * above `afterSeq`, oldest first. Drops expired messages first.
   */
  pending(afterSeq: number, max: number): QueuedMessage[] {
    this.#expire();
    const entries = this.#entries;
    let low = this.#head;
    let high = entries.length;
    while (low < high) {
      const middle = (low + high) >>> 1;
      if (entries[middle].seq <= afterSeq) low = middle + 1;
      else high = middle;
    }
    const result: QueuedMessage[] = [];
    for (let i = low; i < entries.length && result.length < max; i++) {
      if (!entries[i].acked) result.push(entries[i]);
    }
    return result;
  }

  /** Removes message `seq` after the upstream acknowledged it; resolves once that is on disk. */
  ack(seq: number): Promise<void> {
    const entry = this.#find(seq);
    if (!entry || entry.acked) return Promise.resolve();
    this.#remove(entry);
    this.#compact();
    const { promise, resolve, reject } = Promise.withResolvers<void>();
    this.#waiting.push({ resolve, reject });
    this.#scheduleFlush();
    return promise;
  }

  /** Waits until every append and ack so far is on disk. */
  async flush(): Promise<void> {
    while (this.#flushing) await this.#flushing;
  }

  #first(): Entry | undefined {
    for (let i = this.#head; i < this.#entries.length; i++) {
      if (!this.#entries[i].acked) return this.#entries[i];
    }
    return undefined;
  }

  #find(seq: number): Entry | undefined {
    const entries = this.#entries;
    let low = this.#head;
    let high = entries.length - 1;
    while (low <= high) {
      const middle = (low + high) >>> 1;
      const at = entries[middle].seq;
      if (at === seq) return entries[middle];
      if (at < seq) low = middle + 1;
      else high = middle - 1;
    }
    return undefined;
  }

  /** Marks `entry` gone and queues the deletion of its keys. */
  #remove(entry: Entry): void {
    entry.acked = true;
    this.#depth--;
    this.#bytes -= entry.bytes;
    for (let part = 0; part < entry.parts; part++) {
      this.#mutations.push({ kind: "delete", key: [...this.#prefix, entry.seq, part], bytes: 32 });
    }
  }

  #dropFirst(): void {
    const first = this.#first();
    if (!first) return;
    this.#remove(first);
    this.#compact();
    this.#scheduleFlush();
  }

  #expire(): void {
    const limit = Date.now() - this.#bounds.maxAge;
    let expired = 0;
    for (let first = this.#first(); first && first.at < limit; first = this.#first()) {
      this.#dropFirst();
      expired++;
    }
    if (expired > 0) this.#reportDrop("expired", expired);
  }

  #reportDrop(reason: DropReason, count: number): void {
    logger.warn("{prefix}: dropped {count} queued messages ({reason})", {
      prefix: this.#prefix.join("/"),
      count,
      reason: reason === "full" ? "queue full, policy drop-oldest" : "older than maxAge",
    });
    this.#onDrop(reason, count);
  }

  #compact(): void {
    while (this.#head < this.#entries.length && this.#entries[this.#head].acked) this.#head++;
    if (this.#head > COMPACT_AFTER && this.#head * 2 > this.#entries.length) {
      this.#entries = this.#entries.slice(this.#head);
      this.#head = 0;
    }
  }

  #scheduleFlush(): void {
    if (this.#flushing) return;
    this.#flushing = Promise.resolve().then(() => this.#flushNow());
  }

  async #flushNow(): Promise<void> {
    try {
      while (this.#mutations.length) {
        const mutations = this.#mutations;
        const waiting = this.#waiting;
        this.#mutations = [];
        this.#waiting = [];
        try {
          await commitInBatches(this.#kv, mutations);
        } catch (error) {
          for (const waiter of waiting) {
            if (waiter.entry) {
              this.#reservedMessages--;
              this.#reservedBytes -= waiter.entry.bytes;
            }
            waiter.reject(error as Error);
          }
          logger.error("{prefix}: cannot write the queue: {error}", {
            prefix: this.#prefix.join("/"),
            error,
          });
          continue;
        }
        let added = false;
        for (const waiter of waiting) {
          const entry = waiter.entry;
          if (entry) {
            this.#reservedMessages--;
            this.#reservedBytes -= entry.bytes;
            this.#entries.push(entry);
            this.#depth++;
            this.#bytes += entry.bytes;
            added = true;
          }
          waiter.resolve();
        }
        if (added) this.onAvailable?.();
      }
    } finally {
      this.#flushing = undefined;
    }
  }
}

function byteSize(topic: string, payload: Uint8Array): number {
  return encoder.encode(topic).byteLength + payload.byteLength;
}
