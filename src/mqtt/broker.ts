/**
 * The embedded MQTT 3.1.1 broker: one `aedes` instance for the life of the
 * module (sessions, retained messages and subscriptions survive reloads, and
 * restarts through its {@link KvPersistence}), fed byte streams by the
 * TCP/TLS listeners and the WebSocket route target.
 *
 * - Every stream is admitted by the connection manager (protocol `mqtt`),
 *   which enforces its listener's limits and can close it; its bytes are
 *   sampled into the manager every second and when it closes.
 * - Authentication, ACLs and the bridges' outbound queues are a
 *   {@link BrokerPolicy} that a reload swaps without dropping clients.
 * - A publish that an `out` mapping of a bridge takes is queued on disk in
 *   `authorizePublish`, which aedes runs before it acknowledges the
 *   publisher; a queue that refuses it disconnects the publisher without an
 *   ack, so the publisher sends it again later.
 * - Publishes reach the subscribers in publish order, and a QoS 1 or 2
 *   publish is acknowledged (PUBACK, PUBREC) only once it is on disk for
 *   every persistent session it reaches ({@link PublishOrder}).
 * - A denied publish disconnects the client (MQTT 3.1.1 has no negative
 *   PUBACK, MQTT-3.3.5-2); a denied subscription gets return code 0x80.
 * - Until its CONNECT is accepted a stream may send packets of at most
 *   {@link CONNECT_PACKET_LIMIT} bytes, then `maxPacketSize`; a larger packet
 *   closes it as soon as its fixed header arrives ({@link PacketLimit}).
 * - An empty client id with clean session 0 gets CONNACK 2, identifier
 *   rejected (MQTT-3.1.3-8): it would leave a session no one can resume.
 * - {@link StorageLimits} refuse an anonymous client's persistent session
 *   (CONNACK 5) and subscriptions beyond a client's or the sessions' bound
 *   (0x80).
 *
 * @module
 */

import type { Duplex } from "node:stream";
import { Buffer } from "node:buffer";
import { getLogger } from "@logtape/logtape";
import { eventWarnings } from "../observability/rate_limited_log.ts";
import { Aedes, type AuthenticateError, type Client } from "aedes";
import type { MessageSource } from "../bus/message.ts";
import type { Connection, ConnectionLimits } from "../connections/connection.ts";
import type { ConnectionManager } from "../connections/manager.ts";
import type { CounterValue } from "../observability/metrics.ts";
import type { Acl } from "./acl.ts";
import type { Authenticator } from "./auth.ts";
import type { OutboundMessage } from "./queue.ts";
import { QueueFullError } from "./queue.ts";
import type { KvPersistence } from "./persistence.ts";
import type { StorageLimits } from "./storage_limits.ts";
import { limitPackets, PacketLimit } from "./packet_limit.ts";
import { PublishOrder } from "./publish_order.ts";
import { AckGate } from "./ack_gate.ts";

const logger = getLogger(["gateway", "mqtt", "broker"]);
/** Milliseconds between samples of the streams' byte counts. */
const SAMPLE_INTERVAL = 1000;
/** The largest packet (remaining length, bytes) a client may send before its CONNECT is accepted. */
export const CONNECT_PACKET_LIMIT = 64 * 1024;

/** A byte stream the broker serves, with running byte counts. */
export type MqttStream = Duplex & { readonly bytesRead: number; readonly bytesWritten: number };

/** Where a stream came from. */
export interface StreamOrigin {
  /** The listener name (or the route name for MQTT over WebSocket). */
  listener: string;
  remoteAddress: string;
  remotePort?: number;
  limits: ConnectionLimits;
}

/** Something that takes local publishes upstream (a bridge). */
export interface Forwarder {
  /** Whether it takes messages on `topic`. */
  takes(topic: string): boolean;
  /** Queues `message` (on disk for QoS ≥ 1); rejects with a QueueFullError when it cannot. */
  forward(message: OutboundMessage): Promise<boolean>;
}

/** What a reload may change without dropping clients. */
export interface BrokerPolicy {
  auth: Authenticator;
  acl: Acl;
  forwarders: readonly Forwarder[];
}

/** The broker's counters, resolved once. */
export interface BrokerCounters {
  messagesIn: CounterValue;
  messagesOut: CounterValue;
  denied: (action: "connect" | "publish" | "subscribe") => CounterValue;
  refused: CounterValue;
}

interface Tracked {
  stream: MqttStream;
  connection: Connection;
  limit: PacketLimit;
  gate: AckGate;
  read: number;
  written: number;
}

/** The error aedes turns into CONNACK return code `returnCode`. */
function refusal(returnCode: 2 | 4 | 5, message: string): AuthenticateError {
  const error = new Error(message) as AuthenticateError;
  error.returnCode = returnCode;
  return error;
}

/**
 * The broker.
 *
 * @example
 * ```ts
 * import { Bus } from "../bus/bus.ts";
 * import { ConnectionManager } from "../connections/manager.ts";
 * import { MetricsRegistry } from "../observability/metrics.ts";
 * import { Acl } from "./acl.ts";
 * import { Authenticator } from "./auth.ts";
 * import { MqttBroker } from "./broker.ts";
 * import { MqttSessionsConfig } from "./config.ts";
 * import { KvPersistence } from "./persistence.ts";
 * import { StorageLimits, StorageRefusals } from "./storage_limits.ts";
 *
 * const metrics = new MetricsRegistry();
 * const limits = new StorageLimits({ maxSubscriptions: 100, anonymous: false }, new StorageRefusals());
 * const connections = new ConnectionManager(new Bus(metrics), metrics);
 * const policy = { auth: new Authenticator({}, true), acl: new Acl(undefined), forwarders: [] };
 * const broker = await MqttBroker.create(policy, connections, {
 *   messagesIn: metrics.counter("in", "in").labels(),
 *   messagesOut: metrics.counter("out", "out").labels(),
 *   denied: () => metrics.counter("denied", "denied").labels(),
 *   refused: metrics.counter("refused", "refused").labels(),
 * }, {
 *   connectTimeout: 30_000,
 *   keepaliveLimit: 0,
 *   maxClientIdLength: 256,
 *   maxPacketSize: 1024 * 1024,
 *   persistence: new KvPersistence(
 *     await Deno.openKv(":memory:"),
 *     MqttSessionsConfig.parse({}),
 *     limits,
 *   ),
 *   limits,
 * });
 * await broker.close();
 * ```
 */
export class MqttBroker {
  readonly aedes: Aedes;
  policy: BrokerPolicy;
  readonly #connections: ConnectionManager;
  readonly #tracked = new Map<Duplex, Tracked>();
  readonly #persistence: KvPersistence;
  /** Clients whose CONNECT asked for a persistent session with an empty client id. */
  readonly #anonymousSessions = new WeakSet<Client>();
  #sampler?: ReturnType<typeof setInterval>;

  private constructor(
    aedes: Aedes,
    policy: BrokerPolicy,
    connections: ConnectionManager,
    counters: BrokerCounters,
    persistence: KvPersistence,
    maxPacketSize: number,
    limits: StorageLimits,
  ) {
    this.aedes = aedes;
    this.#persistence = persistence;
    this.policy = policy;
    this.#connections = connections;
    // A client's acknowledgements wait in its AckGate, so aedes reads its next packets meanwhile.
    const gateOf = (client: Client | null) =>
      client ? this.#tracked.get(client.conn as Duplex)?.gate : undefined;
    const order = new PublishOrder(aedes, (client) => {
      // A publish from inside the gateway (the bus, a bridge) has no acknowledgement to hold back.
      if (!client) return Promise.resolve();
      const durable = persistence.durable();
      const gate = gateOf(client);
      if (!gate) return durable;
      gate.holdUntil(durable);
      return Promise.resolve();
    });
    aedes.preConnect = (client, packet, done) => {
      if (packet.clientId === "" && !packet.clean) this.#anonymousSessions.add(client);
      done(null, true);
    };
    aedes.authenticate = (client, username, password, done) => {
      if (this.#anonymousSessions.delete(client)) {
        counters.denied("connect").inc();
        eventWarnings.warn(
          logger,
          "mqtt/refused",
          "client refused: an empty client id needs clean session 1",
          {},
        );
        return done(refusal(2, "an empty client id needs clean session 1"), false);
      }
      this.policy.auth.check(username, password).then((ok) => {
        if (ok && !limits.admitsConnect(client, username || undefined)) {
          return done(refusal(5, "a persistent session needs a user name"), false);
        }
        if (ok) {
          if (username) (client as BrokerClient).user = username;
          return done(null, true);
        }
        counters.denied("connect").inc();
        if (!username) {
          eventWarnings.warn(
            logger,
            "mqtt/refused",
            "client {clientId} refused: no user name (mqtt.allowAnonymous is false)",
            {
              clientId: client.id,
            },
          );
          return done(refusal(5, "not authorized: a user name is required"), false);
        }
        eventWarnings.warn(
          logger,
          "mqtt/bad-credentials",
          "client {clientId} refused: bad user name or password (user {username})",
          {
            clientId: client.id,
            username,
          },
        );
        done(refusal(4, "bad user name or password"), false);
      }, (error) => done(error, false));
    };
    aedes.authorizePublish = (client, packet, callback) => {
      const subject = { clientId: client?.id ?? "-", username: userOf(client) };
      if (client && !this.policy.acl.canPublish(subject, packet.topic)) {
        counters.denied("publish").inc();
        return callback(new Error(`not authorized to publish on ${packet.topic}`));
      }
      // A QoS 1 publish is published here, before aedes writes its PUBACK (see PublishOrder).
      const accept = () => {
        if (packet.qos !== 1) return callback(null);
        const published = order.publishAhead(packet, client);
        const gate = gateOf(client);
        if (!gate) return published.then(() => callback(null), callback);
        // Its PUBACK, which aedes writes next, leaves once the publish's writes are on disk.
        gate.holdUntil(published.then(() => persistence.durable()));
        callback(null);
      };
      const forwarders = this.policy.forwarders.filter((f) => f.takes(packet.topic));
      if (forwarders.length === 0) return accept();
      const message: OutboundMessage = {
        topic: packet.topic,
        payload: new Uint8Array(packet.payload as Uint8Array),
        qos: packet.qos,
        retain: packet.retain,
      };
      Promise.all(forwarders.map((f) => f.forward(message))).then(
        accept,
        (error) => {
          if (error instanceof QueueFullError) counters.refused.inc();
          eventWarnings.warn(
            logger,
            "mqtt/publish-refused",
            "publish on {topic} by client {clientId} not accepted: {error}",
            {
              topic: packet.topic,
              clientId: subject.clientId,
              error: (error as Error).message,
            },
          );
          callback(error as Error);
        },
      );
    };
    aedes.authorizeSubscribe = (client, subscription, callback) => {
      const subject = { clientId: client.id, username: userOf(client) };
      if (!this.policy.acl.canSubscribe(subject, subscription.topic)) {
        counters.denied("subscribe").inc();
        return callback(null, null);
      }
      const admitted = limits.admitSubscription(client, subscription, persistence);
      callback(null, admitted ? subscription : null);
    };
    aedes.on("unsubscribe", (topics, client) => limits.unsubscribed(client, topics));
    aedes.authorizeForward = (client, packet) => {
      const subject = { clientId: client.id, username: userOf(client) };
      if (!this.policy.acl.canReceive(subject, packet.topic)) return null;
      counters.messagesOut.inc();
      this.#connectionOf(client)?.sent(0, 1);
      return packet;
    };
    aedes.on("publish", (_packet, client) => {
      if (client) {
        counters.messagesIn.inc();
        this.#connectionOf(client)?.received(0, 1);
      }
    });
    aedes.on("connackSent", (connack, client) => {
      const tracked = this.#tracked.get(client.conn as Duplex);
      if (connack.returnCode === 0 && tracked) tracked.limit.limit = maxPacketSize;
    });
    aedes.on("clientError", (client, error) => {
      logger.info("client {clientId}: {error}", { clientId: client.id, error: error.message });
    });
    aedes.on("connectionError", (client, error) => {
      logger.info("connection of client {clientId} failed: {error}", {
        clientId: client.id ?? "-",
        error: error.message,
      });
    });
  }

  /** Starts a broker with `policy`, once `persistence` has loaded the stored sessions. */
  static async create(
    policy: BrokerPolicy,
    connections: ConnectionManager,
    counters: BrokerCounters,
    options: {
      connectTimeout: number;
      keepaliveLimit: number;
      maxClientIdLength: number;
      maxPacketSize: number;
      persistence: KvPersistence;
      limits: StorageLimits;
    },
  ): Promise<MqttBroker> {
    const aedes = await Aedes.createBroker({
      persistence: options.persistence,
      connectTimeout: options.connectTimeout,
      keepaliveLimit: options.keepaliveLimit,
      maxClientsIdLength: options.maxClientIdLength,
      // Slow subscribers are disconnected by their keepalive, not by a drain timer.
      drainTimeout: 0,
    });
    return new MqttBroker(
      aedes,
      policy,
      connections,
      counters,
      options.persistence,
      options.maxPacketSize,
      options.limits,
    );
  }

  /** Topics holding a retained message. */
  get retainedCount(): number {
    return this.#persistence.retainedCount;
  }

  /** The connection that carries `client`, when the client is connected through one. */
  #connectionOf(client: Client | null): Connection | undefined {
    return client ? this.#tracked.get(client.conn as Duplex)?.connection : undefined;
  }

  /** The bus source of `client`'s publishes: its connection's. */
  sourceOf(client: Client): MessageSource {
    return this.#connectionOf(client)?.source ?? { listener: "mqtt", protocol: "mqtt" };
  }

  /**
   * Serves one byte stream: admits it to the connection manager (destroying it
   * when refused) and hands it to aedes.
   */
  handle(stream: MqttStream, origin: StreamOrigin): void {
    const admitted = this.#connections.admit({
      listener: origin.listener,
      protocol: "mqtt",
      remoteAddress: origin.remoteAddress,
      remotePort: origin.remotePort,
      limits: origin.limits,
      handle: {
        send() {
          throw new Error("MQTT connections take messages by topic, not conn/<id>/send");
        },
        close: () => stream.destroy(),
      },
    });
    if ("refused" in admitted) {
      eventWarnings.warn(
        logger,
        "mqtt/connection-refused",
        "MQTT connection from {address} refused: {reason}",
        {
          address: origin.remoteAddress,
          reason: admitted.refused,
        },
      );
      stream.destroy();
      return;
    }
    const limit = new PacketLimit(CONNECT_PACKET_LIMIT);
    limitPackets(stream, limit);
    const gate = new AckGate(stream);
    const tracked: Tracked = { stream, connection: admitted, limit, gate, read: 0, written: 0 };
    this.#tracked.set(stream, tracked);
    stream.once("close", () => {
      this.#sample(tracked);
      this.#tracked.delete(stream);
      admitted.closed();
      if (this.#tracked.size === 0) {
        clearInterval(this.#sampler);
        this.#sampler = undefined;
      }
    });
    this.#sampler ??= setInterval(() => {
      for (const entry of this.#tracked.values()) this.#sample(entry);
    }, SAMPLE_INTERVAL);
    this.aedes.handle(stream);
  }

  /**
   * Publishes a message from inside the gateway (the bus, a bridge) to the
   * broker's subscribers; resolves once it is handed to them (its writes for
   * persistent sessions are queued, not waited for).
   */
  publish(message: OutboundMessage): Promise<void> {
    const { promise, resolve, reject } = Promise.withResolvers<void>();
    this.aedes.publish({
      cmd: "publish",
      topic: message.topic,
      payload: Buffer.from(
        message.payload.buffer,
        message.payload.byteOffset,
        message.payload.byteLength,
      ),
      qos: message.qos,
      retain: message.retain,
      dup: false,
    }, (error) => error ? reject(error) : resolve());
    return promise;
  }

  /** The connected clients, for `GET /mqtt`. */
  clients(): {
    clientId: string;
    username?: string;
    connectionId?: string;
    subscriptions: number;
  }[] {
    // aedes keeps its clients and their subscriptions on fields its types leave out.
    const clients = (this.aedes as unknown as { clients: Record<string, BrokerClient> }).clients;
    return Object.values(clients).map((client) => ({
      clientId: client.id,
      username: userOf(client),
      connectionId: this.#connectionOf(client)?.id,
      subscriptions: Object.keys(client.subscriptions ?? {}).length,
    }));
  }

  /** Disconnects every client logged in as a user for which `stale` is true; returns how many. */
  closeUsers(stale: (username: string) => boolean): number {
    const clients = (this.aedes as unknown as { clients: Record<string, BrokerClient> }).clients;
    const closing = Object.values(clients).filter((client) => {
      const username = userOf(client);
      return username !== undefined && stale(username);
    });
    for (const client of closing) client.close();
    return closing.length;
  }

  /** Closes every client and the broker, then the session store (after its last writes). */
  async close(): Promise<void> {
    clearInterval(this.#sampler);
    this.#sampler = undefined;
    await new Promise<void>((resolve) => this.aedes.close(() => resolve()));
    await this.#persistence.close();
  }

  #sample(entry: Tracked): void {
    const read = entry.stream.bytesRead ?? 0;
    const written = entry.stream.bytesWritten ?? 0;
    if (read > entry.read) entry.connection.received(read - entry.read, 0);
    if (written > entry.written) entry.connection.sent(written - entry.written, 0);
    entry.read = read;
    entry.written = written;
  }
}

/** A client with the fields aedes's types leave out. */
type BrokerClient = Client & { subscriptions?: Record<string, unknown>; user?: string };

/** The user name a client connected with, when it gave one. */
function userOf(client: Client | null): string | undefined {
  return (client as BrokerClient | null)?.user;
}
