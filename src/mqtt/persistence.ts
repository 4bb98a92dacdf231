/**
 * The broker's session store: aedes's in-memory persistence with every change
 * to persistent sessions and retained messages written through to Deno KV, so
 * that they survive a restart and `kill -9`.
 *
 * - Reads are served from memory, by the same in-memory persistence aedes
 *   uses by default (`aedes-persistence`), so matching and delivery behave as
 *   before. The queues of messages for persistent clients are kept here
 *   (same algorithm as `aedes-persistence`) so that each has a KV key.
 * - Stored: retained messages; the subscriptions of clients with clean session
 *   off; the QoS 1/2 messages queued for those clients (until acknowledged).
 *   Not stored: clean-session clients (aedes gives them no persistent
 *   subscriptions or queues), wills, and the QoS 2 messages a client sent and
 *   has not yet released (PUBREL).
 * - Writes are grouped: the changes of one event-loop turn, and those made
 *   while a transaction commits, go into one transaction, and transactions
 *   commit one after the other, so changes reach the disk in the order they
 *   were made. (Un)subscribing resolves once on disk (the SUBACK follows).
 *   Retaining and queuing a publish resolve at once, so that each publish is
 *   handed to the subscribers in publish order (a publish waiting for its
 *   write would be overtaken); the broker acknowledges a QoS 1 or 2 publish
 *   (PUBACK, PUBREC) only after {@link KvPersistence.durable}, and commits
 *   are shared by every publish that arrives meanwhile (see `publish_order.ts`).
 *   Acknowledgements from subscribers clear their messages without waiting.
 * - {@link KvPersistence.setup} (called by aedes before it accepts clients)
 *   loads what an earlier run stored.
 * - Bounds: `maxQueuedMessages` and `maxQueuedBytes` per offline client (its
 *   oldest queued messages are dropped to make room), `maxRetained` topics (a
 *   retained publish on a new topic is delivered but not retained),
 *   `maxRetainedMessageBytes` and `maxRetainedBytes` (a retained publish over
 *   them is delivered, not retained), `maxSessions` ({@link admitsSession}).
 *   Drops are logged and reported; byte-bound refusals go through the
 *   {@link StorageLimits}, which also say which subscriptions are kept.
 *
 * @module
 */

import { Buffer } from "node:buffer";
import { createHash } from "node:crypto";
import { Readable } from "node:stream";
import { getLogger } from "@logtape/logtape";
import aedesPersistence from "aedes-persistence";
import type { MqttSessionsConfig } from "./config.ts";
import type { StorageLimits } from "./storage_limits.ts";
import { commitInBatches, type KvMutation, payloadParts } from "../storage/kv_writes.ts";

const logger = getLogger(["gateway", "mqtt", "sessions"]);
/** KV key prefixes: retained messages, subscriptions, queued messages. */
const RETAINED = "r";
const SUBSCRIPTION = "s";
const QUEUED = "o";

/** A packet as aedes hands it to the persistence. */
export interface SessionPacket {
  cmd: string;
  topic?: string;
  payload?: Uint8Array;
  qos?: 0 | 1 | 2;
  retain?: boolean;
  dup?: boolean;
  messageId?: number;
  brokerId?: string;
  brokerCounter?: number;
  [field: string]: unknown;
}

/** A subscription as aedes stores it for a persistent client. */
interface SubscriptionRecord {
  topic: string;
  qos: 0 | 1 | 2;
  rh?: number;
  rap?: boolean;
  nl?: boolean;
}

/** The client fields the persistence uses. */
interface SessionClient {
  id: string;
}

/** The broker fields the persistence uses. */
interface SessionBroker {
  id: string;
  counter: number;
  clients: Record<string, unknown>;
}

/** What was dropped at a bound: a queued message or a retained one. */
export type SessionDrop = "queued" | "retained";

/** aedes-persistence's in-memory persistence, in its promise form. */
interface MemoryPersistence {
  setup(broker: SessionBroker): Promise<void>;
  storeRetained(packet: SessionPacket): Promise<void>;
  createRetainedStream(pattern: string): Readable;
  createRetainedStreamCombi(patterns: string[]): Readable;
  addSubscriptions(client: SessionClient, subs: SubscriptionRecord[]): Promise<void>;
  removeSubscriptions(client: SessionClient, topics: string[]): Promise<void>;
  subscriptionsByClient(client: SessionClient): Promise<SubscriptionRecord[]>;
  countOffline(): Promise<{ subsCount: number; clientsCount: number }>;
  subscriptionsByTopic(topic: string): Promise<unknown[]>;
  cleanSubscriptions(client: SessionClient): Promise<void>;
  incomingStorePacket(client: SessionClient, packet: SessionPacket): Promise<void>;
  incomingGetPacket(client: SessionClient, packet: SessionPacket): Promise<SessionPacket>;
  incomingDelPacket(client: SessionClient, packet: SessionPacket): Promise<void>;
  cleanIncoming(client: SessionClient): Promise<void>;
  putWill(client: SessionClient, packet: SessionPacket): Promise<void>;
  getWill(client: SessionClient): Promise<SessionPacket | undefined>;
  delWill(client: SessionClient): Promise<SessionPacket | undefined>;
  streamWill(brokers?: Record<string, number>): Readable;
  getClientList(topic: string): Readable;
  destroy(): Promise<void>;
}

/** The package's export as it is at run time (its types describe an ES module it is not). */
const memoryPersistence = aedesPersistence as unknown as {
  (): MemoryPersistence;
  Packet: new (packet: SessionPacket) => SessionPacket;
};

/** A message queued for a persistent client, with its place on disk. */
interface Queued {
  seq: number;
  parts: number;
  packet: SessionPacket;
}

/** The first KV value of a stored message (further parts hold only `payload`). */
interface StoredHead {
  clientId?: string;
  cmd?: string;
  topic?: string;
  qos?: 0 | 1 | 2;
  retain?: boolean;
  dup?: boolean;
  messageId?: number;
  parts?: number;
  payload: Uint8Array;
}

/**
 * The session store aedes is given as its `persistence`.
 *
 * @example
 * ```ts
 * import { Aedes } from "aedes";
 * import { MqttSessionsConfig } from "./config.ts";
 * import { KvPersistence } from "./persistence.ts";
 * import { StorageLimits, StorageRefusals } from "./storage_limits.ts";
 * const kv = await Deno.openKv(":memory:");
 * const limits = new StorageLimits({ maxSubscriptions: 100, anonymous: false }, new StorageRefusals());
 * const persistence = new KvPersistence(kv, MqttSessionsConfig.parse({}), limits);
 * const aedes = await Aedes.createBroker({ persistence }); // loads what kv holds
 * aedes.close();
 * await persistence.close(); // flushes, then closes kv
 * ```
 */
export class KvPersistence {
  readonly #kv: Deno.Kv;
  #bounds: MqttSessionsConfig;
  readonly #limits: StorageLimits;
  readonly #onDrop: (what: SessionDrop, count: number) => void;
  readonly #memory = memoryPersistence();
  #broker?: SessionBroker;
  /** Retained topics with the number of KV parts and the bytes (payload and topic) of each. */
  readonly #retained = new Map<string, { parts: number; bytes: number }>();
  /** The bytes of all retained messages. */
  #retainedBytes = 0;
  /** Client ids with stored subscriptions (or a place taken for them). */
  readonly #sessions = new Set<string>();
  readonly #queues = new Map<string, Queued[]>();
  /** Clients whose queue reached its bound and was warned about (until it empties). */
  readonly #warned = new Set<string>();
  readonly #keys = new Map<string, string>();
  #nextSeq = 1;
  #mutations: KvMutation[] = [];
  #flushing?: Promise<void>;
  /** Settles with the next commit: what {@link durable} and waiting writers get until it starts. */
  #nextCommit?: PromiseWithResolvers<void>;

  constructor(
    kv: Deno.Kv,
    bounds: MqttSessionsConfig,
    limits: StorageLimits,
    onDrop: (what: SessionDrop, count: number) => void = () => {},
  ) {
    this.#kv = kv;
    this.#bounds = bounds;
    this.#onDrop = onDrop;
    this.#limits = limits;
  }

  /** Replaces the bounds (a reload); what is stored already stays. */
  set bounds(bounds: MqttSessionsConfig) {
    this.#bounds = bounds;
  }

  /** Topics holding a retained message. */
  get retainedCount(): number {
    return this.#retained.size;
  }

  /** The bytes (payload and topic) of all retained messages. */
  get retainedBytes(): number {
    return this.#retainedBytes;
  }

  /** Persistent sessions stored. */
  get sessionCount(): number {
    return this.#sessions.size;
  }

  /**
   * True when `clientId` has a stored session, or one more fits within
   * `maxSessions` (its place is then taken until its subscriptions are cleaned).
   */
  admitsSession(clientId: string): boolean {
    if (this.#sessions.has(clientId)) return true;
    if (this.#sessions.size >= this.#bounds.maxSessions) return false;
    this.#sessions.add(clientId);
    return true;
  }

  /** Called by aedes before it accepts clients: loads the stored sessions and retained messages. */
  async setup(broker: SessionBroker): Promise<void> {
    this.#broker = broker;
    await this.#memory.setup(broker);
    for await (const { head, payload } of this.#readMessages([RETAINED])) {
      const packet = restorePacket(head, payload, broker);
      await this.#memory.storeRetained(packet);
      const bytes = messageBytes(packet);
      this.#retained.set(packet.topic!, { parts: head.parts ?? 1, bytes });
      this.#retainedBytes += bytes;
    }
    const subscriptions = new Map<string, SubscriptionRecord[]>();
    for await (
      const { value } of this.#kv.list<SubscriptionRecord & { clientId: string }>({
        prefix: [SUBSCRIPTION],
      })
    ) {
      const { clientId, ...record } = value;
      subscriptions.set(clientId, [...subscriptions.get(clientId) ?? [], record]);
    }
    for (const [id, subs] of subscriptions) {
      await this.#memory.addSubscriptions({ id }, subs);
      this.#sessions.add(id);
    }
    let queued = 0;
    for await (const { key, head, payload } of this.#readMessages([QUEUED])) {
      const seq = key[2] as number;
      const packet = restorePacket(head, payload, broker);
      this.#queueOf(head.clientId!).push({ seq, parts: head.parts ?? 1, packet });
      this.#nextSeq = Math.max(this.#nextSeq, seq + 1);
      queued++;
    }
    logger.info(
      "loaded {retained} retained messages, {sessions} persistent sessions, {queued} queued messages",
      { retained: this.#retained.size, sessions: subscriptions.size, queued },
    );
  }

  /**
   * Retains `packet` (an empty payload removes the topic's retained message).
   * A message over `maxRetainedMessageBytes`, or one that would take the
   * retained bytes over `maxRetainedBytes`, is not retained and removes the
   * topic's retained message (which it was meant to replace).
   */
  async storeRetained(packet: SessionPacket): Promise<void> {
    const topic = packet.topic!;
    const stored = this.#retained.get(topic);
    const payload = packet.payload ?? new Uint8Array();
    if (
      stored === undefined && payload.length > 0 && this.#retained.size >= this.#bounds.maxRetained
    ) {
      this.#limits.refusals.log.warn(
        logger,
        "mqtt/sessions/maxRetained",
        "retained message on {topic} not kept: {count} topics retained (maxRetained)",
        { topic, count: this.#retained.size },
      );
      this.#onDrop("retained", 1);
      return;
    }
    const bytes = messageBytes(packet);
    const refusal = payload.length === 0
      ? undefined
      : bytes > this.#bounds.maxRetainedMessageBytes
      ? "retained_message_bytes"
      : this.#retainedBytes - (stored?.bytes ?? 0) + bytes > this.#bounds.maxRetainedBytes
      ? "retained_bytes"
      : undefined;
    if (refusal) {
      this.#limits.refusals.refuse(
        refusal,
        "retained message on {topic} ({bytes} bytes) not kept: {retained} bytes retained",
        { topic, bytes, retained: this.#retainedBytes },
      );
      if (stored === undefined) return;
      packet = { ...packet, payload: new Uint8Array() };
    }
    await this.#memory.storeRetained(packet);
    const base = [RETAINED, this.#keyOf(topic)];
    if (stored !== undefined) {
      this.#deleteParts(base, stored.parts);
      this.#retainedBytes -= stored.bytes;
    }
    if (refusal || payload.length === 0) {
      this.#retained.delete(topic);
    } else {
      const parts = this.#setParts(base, { ...fieldsOf(packet) }, payload);
      this.#retained.set(topic, { parts, bytes });
      this.#retainedBytes += bytes;
    }
    this.#commitLater();
  }

  /** Retained messages on topics matching `pattern`. */
  createRetainedStream(pattern: string): Readable {
    return this.#memory.createRetainedStream(pattern);
  }

  /** Retained messages on topics matching any of `patterns`. */
  createRetainedStreamCombi(patterns: string[]): Readable {
    return this.#memory.createRetainedStreamCombi(patterns);
  }

  /**
   * Adds subscriptions of a persistent client (aedes calls it only for clean
   * session off, with every subscription of the SUBSCRIBE packet): only those
   * the {@link StorageLimits} granted are kept.
   */
  async addSubscriptions(client: SessionClient, subs: SubscriptionRecord[]): Promise<void> {
    subs = subs.filter((sub) => this.#limits.isGranted(sub));
    if (subs.length === 0) return;
    this.#sessions.add(client.id);
    await this.#memory.addSubscriptions(client, subs);
    const clientKey = this.#keyOf(client.id);
    for (const { topic, qos, rh, rap, nl } of subs) {
      const value = { clientId: client.id, topic, qos, rh, rap, nl };
      this.#mutations.push({
        kind: "set",
        key: [SUBSCRIPTION, clientKey, this.#keyOf(topic)],
        value,
        bytes: client.id.length + topic.length + 64,
      });
    }
    await this.#commitSoon();
  }

  /** Removes subscriptions of a persistent client (UNSUBSCRIBE). */
  async removeSubscriptions(client: SessionClient, topics: string[]): Promise<void> {
    await this.#memory.removeSubscriptions(client, topics);
    if ((await this.#memory.subscriptionsByClient(client)).length === 0) {
      this.#sessions.delete(client.id);
    }
    const clientKey = this.#keyOf(client.id);
    for (const topic of topics) {
      this.#mutations.push({
        kind: "delete",
        key: [SUBSCRIPTION, clientKey, this.#keyOf(topic)],
        bytes: 96,
      });
    }
    await this.#commitSoon();
  }

  /** The stored subscriptions of `client`. */
  subscriptionsByClient(client: SessionClient): Promise<SubscriptionRecord[]> {
    return this.#memory.subscriptionsByClient(client);
  }

  /** Counts of offline subscriptions and of clients holding them. */
  countOffline(): Promise<{ subsCount: number; clientsCount: number }> {
    return this.#memory.countOffline();
  }

  /** The persistent subscriptions matching `topic`. */
  subscriptionsByTopic(topic: string): Promise<unknown[]> {
    return this.#memory.subscriptionsByTopic(topic);
  }

  /** Forgets the subscriptions of `client` (it connected with clean session on). */
  async cleanSubscriptions(client: SessionClient): Promise<void> {
    const subs = await this.#memory.subscriptionsByClient(client);
    await this.#memory.cleanSubscriptions(client);
    this.#sessions.delete(client.id);
    if (subs.length === 0) return;
    const clientKey = this.#keyOf(client.id);
    for (const { topic } of subs) {
      this.#mutations.push({
        kind: "delete",
        key: [SUBSCRIPTION, clientKey, this.#keyOf(topic)],
        bytes: 96,
      });
    }
    await this.#commitSoon();
  }

  /** Queues `packet` for the persistent client of `sub`. */
  outgoingEnqueue(sub: { clientId: string }, packet: SessionPacket): Promise<void> {
    this.#enqueue(sub.clientId, packet);
    this.#commitLater();
    return Promise.resolve();
  }

  /** Queues `packet` for the persistent client of each of `subs`. */
  outgoingEnqueueCombi(subs: { clientId: string }[], packet: SessionPacket): Promise<void> {
    if (subs.length === 0) return Promise.resolve();
    for (const sub of subs) this.#enqueue(sub.clientId, packet);
    this.#commitLater();
    return Promise.resolve();
  }

  /**
   * Records the packet id given to a queued message, or replaces a message
   * by its PUBREL (QoS 2), as `aedes-persistence` does.
   */
  outgoingUpdate(client: SessionClient, packet: SessionPacket): Promise<void> {
    const queue = this.#queues.get(client.id) ?? [];
    for (let i = 0; i < queue.length; i++) {
      const entry = queue[i];
      const stored = entry.packet;
      if (stored.brokerId === packet.brokerId) {
        if (stored.brokerCounter === packet.brokerCounter) {
          stored.messageId = packet.messageId;
          return Promise.resolve();
        }
      } else if (stored.messageId === packet.messageId) {
        entry.packet = packet;
        const base = [QUEUED, this.#keyOf(client.id), entry.seq];
        this.#deleteParts(base, entry.parts);
        entry.parts = this.#setParts(
          base,
          { clientId: client.id, ...fieldsOf(packet) },
          packet.payload ?? new Uint8Array(),
        );
        this.#commitLater();
        return Promise.resolve();
      }
    }
    return Promise.reject(new Error("no such packet"));
  }

  /** Removes the queued message with `packet`'s id (acknowledged); resolves to it. */
  outgoingClearMessageId(
    client: SessionClient,
    packet: SessionPacket,
  ): Promise<SessionPacket | undefined> {
    const queue = this.#queues.get(client.id);
    const index = queue?.findIndex((entry) => entry.packet.messageId === packet.messageId) ?? -1;
    if (!queue || index < 0) return Promise.resolve(undefined);
    const [entry] = queue.splice(index, 1);
    this.#deleteParts([QUEUED, this.#keyOf(client.id), entry.seq], entry.parts);
    if (queue.length === 0) {
      this.#queues.delete(client.id);
      this.#warned.delete(client.id);
    }
    this.#commitLater();
    return Promise.resolve(entry.packet);
  }

  /**
   * The messages queued for `client`, oldest first. A publish that has a packet
   * id was sent before (aedes gives the id as it sends): it goes again with
   * DUP=1 (MQTT-3.3.1-1), which aedes does not set itself (moscajs/aedes#601).
   */
  outgoingStream(client: SessionClient): Readable {
    return Readable.from(
      (this.#queues.get(client.id) ?? []).map(({ packet }) =>
        packet.cmd === "publish" && packet.messageId !== undefined
          ? { ...packet, dup: true }
          : packet
      ),
    );
  }

  /** Keeps an inbound QoS 2 message until its PUBREL (in memory only). */
  incomingStorePacket(client: SessionClient, packet: SessionPacket): Promise<void> {
    return this.#memory.incomingStorePacket(client, packet);
  }

  /** The inbound QoS 2 message with `packet`'s id. */
  incomingGetPacket(client: SessionClient, packet: SessionPacket): Promise<SessionPacket> {
    return this.#memory.incomingGetPacket(client, packet);
  }

  /** Forgets the inbound QoS 2 message with `packet`'s id. */
  incomingDelPacket(client: SessionClient, packet: SessionPacket): Promise<void> {
    return this.#memory.incomingDelPacket(client, packet);
  }

  /** Forgets every inbound QoS 2 message of `client`. */
  cleanIncoming(client: SessionClient): Promise<void> {
    return this.#memory.cleanIncoming(client);
  }

  /** Keeps the will of `client` (in memory only). */
  putWill(client: SessionClient, packet: SessionPacket): Promise<void> {
    return this.#memory.putWill(client, packet);
  }

  /** The will of `client`. */
  getWill(client: SessionClient): Promise<SessionPacket | undefined> {
    return this.#memory.getWill(client);
  }

  /** Removes and returns the will of `client`. */
  delWill(client: SessionClient): Promise<SessionPacket | undefined> {
    return this.#memory.delWill(client);
  }

  /** Wills of clients of brokers not in `brokers`. */
  streamWill(brokers?: Record<string, number>): Readable {
    return this.#memory.streamWill(brokers);
  }

  /** Ids of clients subscribed to `topic`. */
  getClientList(topic: string): Readable {
    return this.#memory.getClientList(topic);
  }

  /** Releases the in-memory state (the KV store stays open; see {@link close}). */
  destroy(): Promise<void> {
    return this.#memory.destroy();
  }

  /**
   * Resolves once every change made so far is on disk (in a transaction shared
   * with the changes around it); rejects when its transaction fails. The broker
   * waits for it before it acknowledges a QoS 1 or 2 publish.
   */
  durable(): Promise<void> {
    if (this.#mutations.length === 0 && !this.#flushing) return Promise.resolve();
    return this.#commitSoon();
  }

  /** Waits until every change so far is on disk, then closes the KV store. */
  async close(): Promise<void> {
    while (this.#flushing) await this.#flushing;
    this.#kv.close();
  }

  #enqueue(clientId: string, packet: SessionPacket): void {
    const queue = this.#queueOf(clientId);
    const clientKey = this.#keyOf(clientId);
    const online = this.#broker?.clients[clientId] !== undefined;
    if (!online && !this.#makeRoom(clientId, clientKey, queue, packet)) return;
    let dropped = 0;
    while (!online && queue.length >= this.#bounds.maxQueuedMessages) {
      const oldest = queue.shift()!;
      this.#deleteParts([QUEUED, clientKey, oldest.seq], oldest.parts);
      dropped++;
    }
    if (dropped > 0) {
      if (!this.#warned.has(clientId)) {
        this.#warned.add(clientId);
        logger.warn(
          "offline client {clientId} has {count} queued messages (maxQueuedMessages): dropping the oldest",
          { clientId, count: queue.length },
        );
      }
      this.#onDrop("queued", dropped);
    }
    const copy = new memoryPersistence.Packet(packet);
    const seq = this.#nextSeq++;
    const parts = this.#setParts(
      [QUEUED, clientKey, seq],
      { clientId, ...fieldsOf(copy) },
      copy.payload ?? new Uint8Array(),
    );
    queue.push({ seq, parts, packet: copy });
  }

  /**
   * Drops the oldest messages queued for the offline client `clientId` until
   * `packet` fits within `maxQueuedBytes`; false (and nothing dropped) when
   * `packet` alone is larger. Each dropped or refused message is counted.
   */
  #makeRoom(clientId: string, clientKey: string, queue: Queued[], packet: SessionPacket): boolean {
    const bytes = messageBytes(packet);
    const bound = this.#bounds.maxQueuedBytes;
    const properties = { clientId, topic: packet.topic, bytes, bound };
    if (bytes > bound) {
      this.#limits.refusals.refuse(
        "queued_bytes",
        "message on {topic} ({bytes} bytes) not queued for offline client {clientId}: over maxQueuedBytes {bound}",
        properties,
      );
      return false;
    }
    let queued = queue.reduce((sum, entry) => sum + messageBytes(entry.packet), 0);
    while (queued + bytes > bound) {
      const oldest = queue.shift()!;
      this.#deleteParts([QUEUED, clientKey, oldest.seq], oldest.parts);
      queued -= messageBytes(oldest.packet);
      this.#limits.refusals.refuse(
        "queued_bytes",
        "offline client {clientId} reached maxQueuedBytes {bound}: its oldest queued message is dropped",
        properties,
      );
    }
    return true;
  }

  #queueOf(clientId: string): Queued[] {
    let queue = this.#queues.get(clientId);
    if (!queue) {
      queue = [];
      this.#queues.set(clientId, queue);
    }
    return queue;
  }

  /** A short fixed-length KV key part for a client id or topic (which may be longer than a key allows). */
  #keyOf(name: string): string {
    let key = this.#keys.get(name);
    if (key === undefined) {
      key = createHash("sha256").update(name).digest("base64url").slice(0, 22);
      if (this.#keys.size >= 100_000) this.#keys.clear();
      this.#keys.set(name, key);
    }
    return key;
  }

  /** Queues the writes of a message under `base` in parts; returns the number of parts. */
  #setParts(base: Deno.KvKey, head: Omit<StoredHead, "payload" | "parts">, payload: Uint8Array) {
    const chunks = payloadParts(payload);
    const parts = chunks.length;
    for (const [part, chunk] of chunks.entries()) {
      this.#mutations.push({
        kind: "set",
        key: [...base, part],
        value: part === 0 ? { ...head, parts, payload: chunk } : { payload: chunk },
        bytes: chunk.byteLength + (part === 0 ? (head.topic?.length ?? 0) + 96 : 32),
      });
    }
    return parts;
  }

  #deleteParts(base: Deno.KvKey, parts: number): void {
    for (let part = 0; part < parts; part++) {
      this.#mutations.push({ kind: "delete", key: [...base, part], bytes: 32 });
    }
  }

  /** Reads the messages stored in parts under `prefix`, deleting incomplete ones. */
  async *#readMessages(
    prefix: Deno.KvKey,
  ): AsyncGenerator<{ key: Deno.KvKey; head: StoredHead; payload: Uint8Array }> {
    const incomplete: Deno.KvKey[] = [];
    let current: { key: Deno.KvKey; head: StoredHead; chunks: Uint8Array[] } | undefined;
    const complete = () => {
      const found = current;
      current = undefined;
      if (!found) return undefined;
      if (found.chunks.length === (found.head.parts ?? 1)) {
        const payload = found.chunks.length === 1 ? found.chunks[0] : Buffer.concat(found.chunks);
        return { key: found.key, head: found.head, payload };
      }
      found.chunks.forEach((_, part) => incomplete.push([...found.key, part]));
    };
    for await (const { key, value } of this.#kv.list<StoredHead>({ prefix })) {
      const base = key.slice(0, -1);
      if (key.at(-1) === 0) {
        const done = complete();
        if (done) yield done;
        current = { key: base, head: value, chunks: [value.payload] };
      } else if (current && sameKey(current.key, base)) {
        current.chunks.push(value.payload);
      } else {
        incomplete.push(key);
      }
    }
    const done = complete();
    if (done) yield done;
    for (const key of incomplete) await this.#kv.delete(key);
    if (incomplete.length > 0) {
      logger.warn("discarded {count} parts of incompletely stored messages", {
        count: incomplete.length,
      });
    }
  }

  /**
   * Commits the changes queued so far without waiting for them: a publish is
   * handed to the subscribers in its turn, and acknowledged after {@link durable}.
   * A failed commit is logged (and rejects the waiters of {@link durable}).
   */
  #commitLater(): void {
    // Started after the current loop turn, so that its changes go in one transaction.
    this.#flushing ??= new Promise((resolve) => setImmediate(resolve)).then(() => this.#flush());
  }

  /** Resolves once the changes queued so far are committed (grouped with others). */
  #commitSoon(): Promise<void> {
    this.#nextCommit ??= Promise.withResolvers<void>();
    this.#commitLater();
    return this.#nextCommit.promise;
  }

  async #flush(): Promise<void> {
    try {
      while (this.#mutations.length > 0 || this.#nextCommit) {
        const mutations = this.#mutations;
        const waiting = this.#nextCommit;
        this.#mutations = [];
        this.#nextCommit = undefined;
        try {
          await commitInBatches(this.#kv, mutations);
          waiting?.resolve();
        } catch (error) {
          logger.error("cannot write the MQTT sessions: {error}", { error });
          waiting?.reject(error as Error);
        }
      }
    } finally {
      this.#flushing = undefined;
    }
  }
}

/** The bytes a message takes against the byte bounds: its payload and topic. */
function messageBytes(packet: SessionPacket): number {
  return (packet.payload?.byteLength ?? 0) + Buffer.byteLength(packet.topic ?? "");
}

/** The fields of `packet` that are stored (not the payload, which goes in parts). */
function fieldsOf(packet: SessionPacket): Omit<StoredHead, "payload" | "parts" | "clientId"> {
  const { cmd, topic, qos, retain, dup, messageId } = packet;
  return { cmd, topic, qos, retain, dup, messageId };
}

/**
 * A stored packet as aedes would have made it in this run: a publish gets this
 * broker's id and a new counter, so that aedes matches it like its own
 * (a PUBREL has neither and is matched by its packet id).
 */
function restorePacket(
  head: StoredHead,
  payload: Uint8Array,
  broker: SessionBroker,
): SessionPacket {
  const cmd = head.cmd ?? "publish";
  const packet: SessionPacket = {
    cmd,
    topic: head.topic,
    payload: Buffer.from(payload.buffer, payload.byteOffset, payload.byteLength),
    qos: head.qos ?? 0,
    retain: head.retain ?? false,
    dup: head.dup ?? false,
    messageId: head.messageId,
  };
  if (cmd === "publish") {
    packet.brokerId = broker.id;
    packet.brokerCounter = ++broker.counter;
  }
  return packet;
}

function sameKey(a: Deno.KvKey, b: Deno.KvKey): boolean {
  return a.length === b.length && a.every((part, i) => part === b[i]);
}
