/**
 * The connection manager: admits every WebSocket, TCP, UDP-peer and
 * Unix-socket connection against its listener's limits and the process's
 * descriptor budget, gives it an id, counts its traffic, holds it to its
 * message rate, closes it when idle, and routes bus pushes
 * (`conn/<id>/send`, `device/<deviceId>/send`) to it. A UDP listener's table
 * of peers is full only of bound devices: a new peer evicts the idlest
 * unbound one (never answered, if there is one) instead of being refused.
 *
 * @module
 */

import { getLogger } from "@logtape/logtape";
import type { Bus, Subscription } from "../bus/bus.ts";
import type { MessageSource } from "../bus/message.ts";
import type { CounterValue, GaugeValue, MetricsRegistry } from "../observability/metrics.ts";
import type {
  Connection,
  ConnectionHandle,
  ConnectionInfo,
  ConnectionLimits,
} from "./connection.ts";
import { connectionBudget, descriptorLimit } from "./fd_budget.ts";
import { TokenBucket } from "./token_bucket.ts";
import { eventWarnings } from "../observability/rate_limited_log.ts";

const logger = getLogger(["gateway", "connections"]);

/**
 * Descriptors one connection holds: a guarded HTTP connection three (the
 * client's socket and both ends of its relay to `Deno.serve`), any other one.
 */
function descriptorsOf(protocol: MessageSource["protocol"]): number {
  return protocol === "http" ? 3 : 1;
}

/** Milliseconds between idle sweeps: an idle connection is closed at most this long after its timeout. */
export const IDLE_SWEEP_INTERVAL = 1000;

/** A listener's request to admit one new connection. */
export interface AdmitRequest {
  listener: string;
  protocol: MessageSource["protocol"];
  remoteAddress: string;
  remotePort?: number;
  limits: ConnectionLimits;
  handle: ConnectionHandle;
}

/** Why a connection was refused, as the `reason` label of `gateway_connections_refused_total`. */
type RefusalReason = "listener_limit" | "ip_limit" | "fd_budget";

/** One listener's metric children, resolved once. */
interface ListenerMetrics {
  open: GaugeValue;
  accepted: CounterValue;
  bytesIn: CounterValue;
  bytesOut: CounterValue;
  framesIn: CounterValue;
  framesOut: CounterValue;
  /** Messages dropped for going over their connection's message rate. */
  framesDropped: CounterValue;
  /** Connections closed for going over their message rate. */
  rateLimited: CounterValue;
}

/** What every connection of one manager shares with it. */
interface ManagerContext {
  bus: Bus;
  now: () => number;
  release(connection: TrackedConnection): void;
  /** Moves a UDP peer to the busy end of its listener's eviction order. */
  touched(connection: TrackedConnection): void;
}

/** One admitted connection: its counters, its device binding and its place in the manager's counts. */
class TrackedConnection implements Connection {
  readonly id: string;
  readonly source: MessageSource;
  readonly #info: ConnectionInfo;
  readonly #bucket?: TokenBucket;
  #deviceSubscription?: Subscription;
  #released = false;

  constructor(
    info: ConnectionInfo,
    readonly handle: ConnectionHandle,
    limits: ConnectionLimits,
    /** The key of this connection's remote address in the manager's per-address counts. */
    readonly addressKey: string,
    readonly metrics: ListenerMetrics,
    readonly context: ManagerContext,
  ) {
    this.id = info.id;
    this.#info = info;
    this.source = { listener: info.listener, protocol: info.protocol, connectionId: info.id };
    this.idleTimeout = limits.idleTimeout;
    if (limits.messageRate && limits.messageRate.perSecond > 0) {
      this.#bucket = new TokenBucket(limits.messageRate, context.now);
    }
  }

  /** Milliseconds without traffic before the idle sweep closes it; 0 = never. */
  readonly idleTimeout: number;

  /** The device bound to it, if any. */
  get deviceId(): string | undefined {
    return this.#info.deviceId;
  }

  /** Whether anything (a reply, a push) was sent to it. */
  get answered(): boolean {
    return this.#info.framesOut > 0;
  }

  get lastSeenAt(): number {
    return this.#info.lastSeenAt;
  }

  received(bytes: number, frames = 1): number {
    const info = this.#info;
    info.bytesIn += bytes;
    info.framesIn += frames;
    info.lastSeenAt = this.context.now();
    this.metrics.bytesIn.inc(bytes);
    this.metrics.framesIn.inc(frames);
    if (info.protocol === "udp") this.context.touched(this);
    if (!this.#bucket || frames === 0 || this.#released) return frames;
    const within = this.#bucket.take(frames);
    if (within < frames) this.#overRate(frames - within);
    return within;
  }

  /**
   * Drops what went over the message rate; a connection (all but a UDP peer,
   * which has none to close) is closed: reading on, even only to drop,
   * would keep the event loop for one client.
   */
  #overRate(dropped: number): void {
    this.metrics.framesDropped.inc(dropped);
    const { listener, protocol, remoteAddress } = this.#info;
    const closing = protocol !== "udp";
    eventWarnings.warn(
      logger,
      `rate/${listener}`,
      "listener {listener}: connection {id} ({peer}) went over its message rate of " +
        "{perSecond}/s (burst {burst}): {action}",
      {
        listener,
        id: this.id,
        peer: remoteAddress,
        perSecond: this.#bucket!.rate.perSecond,
        burst: this.#bucket!.rate.burst,
        action: closing ? "closed" : `dropped ${dropped} datagrams`,
      },
    );
    if (!closing) return;
    this.metrics.rateLimited.inc();
    try {
      this.handle.close("message rate exceeded", true);
    } catch (error) {
      logger.debug("closing connection {id} failed: {error}", { id: this.id, error });
    }
  }

  sent(bytes: number, frames = 1): void {
    const info = this.#info;
    info.bytesOut += bytes;
    info.framesOut += frames;
    info.lastSeenAt = this.context.now();
    this.metrics.bytesOut.inc(bytes);
    this.metrics.framesOut.inc(frames);
    if (info.protocol === "udp") this.context.touched(this);
  }

  /**
   * Throws when `deviceId` cannot be one topic level (of `device/<deviceId>/send`);
   * does nothing once the connection is closed.
   */
  bindDevice(deviceId: string): void {
    if (deviceId === "" || /[/+#\0]/.test(deviceId)) {
      const quoted = JSON.stringify(deviceId);
      throw new Error(`device id ${quoted} must be a non-empty topic level (no / + # NUL)`);
    }
    if (this.#released || deviceId === this.#info.deviceId) return;
    this.#deviceSubscription?.unsubscribe();
    this.#deviceSubscription = this.context.bus.subscribe(
      `device/${deviceId}/send`,
      (message) => this.handle.send(message.payload),
      { owner: this.id },
    );
    this.#info.deviceId = deviceId;
    this.source.deviceId = deviceId;
    logger.info("device {deviceId} connected on {listener} ({protocol} {peer}, connection {id})", {
      deviceId,
      listener: this.#info.listener,
      protocol: this.#info.protocol,
      peer: this.#peer,
      id: this.id,
    });
  }

  closed(): void {
    if (this.#released) return;
    this.#released = true;
    this.context.release(this);
    const { deviceId, listener, openedAt, bytesIn, bytesOut } = this.#info;
    const fields = {
      deviceId,
      listener,
      id: this.id,
      peer: this.#peer,
      seconds: Math.round((this.context.now() - openedAt) / 1000),
      bytesIn,
      bytesOut,
    };
    // Bound devices are worth a line; an unbound connection's end is detail (and floods are cheap).
    if (deviceId !== undefined) {
      logger.info("device {deviceId} disconnected from {listener} after {seconds} s", fields);
    } else if (this.#info.protocol !== "http") {
      logger.debug("connection {id} from {peer} on {listener} closed after {seconds} s", fields);
    }
  }

  /** The remote address and port, as one string. */
  get #peer(): string {
    const { remoteAddress, remotePort } = this.#info;
    return remotePort === undefined ? remoteAddress : `${remoteAddress}:${remotePort}`;
  }

  info(): ConnectionInfo {
    return { ...this.#info };
  }
}

/**
 * Tracks every live connection of every listener.
 *
 * @example
 * ```ts
 * import { Bus } from "../bus/bus.ts";
 * import { MetricsRegistry } from "../observability/metrics.ts";
 * import { ConnectionManager } from "./manager.ts";
 *
 * const metrics = new MetricsRegistry();
 * const manager = new ConnectionManager(new Bus(metrics), metrics);
 * const admitted = manager.admit({
 *   listener: "sensors",
 *   protocol: "tcp",
 *   remoteAddress: "127.0.0.1",
 *   limits: { maxConnections: 100, maxPerIp: 10, idleTimeout: 60_000 },
 *   handle: { send: (payload) => console.log(payload), close: (reason) => console.log(reason) },
 * });
 * if ("refused" in admitted) throw new Error(admitted.refused);
 * admitted.received(12);
 * manager.list({ listener: "sensors" }); // [{ id: "c0k3x9", bytesIn: 12, ... }]
 * admitted.closed();
 * manager.stop();
 * ```
 */
export class ConnectionManager {
  readonly #bus: Bus;
  readonly #now: () => number;
  readonly #context: ManagerContext;
  readonly #connections = new Map<string, TrackedConnection>();
  readonly #perListener = new Map<string, number>();
  readonly #perAddress = new Map<string, number>();
  /** Each UDP listener's peers, idlest first (a peer moves to the end on traffic). */
  readonly #udpPeers = new Map<string, Map<string, TrackedConnection>>();
  /** Admitted connections that hold a descriptor of their own (all but UDP peers). */
  #socketConnections = 0;
  readonly #descriptorLimit: number;
  readonly #descriptorBudget: number;
  #nextId = 0;
  /** Tells apart the ids of different processes (and managers) in logs. */
  readonly #idSuffix = crypto.getRandomValues(new Uint32Array(1))[0].toString(36).slice(0, 3);
  #sweeper?: ReturnType<typeof setInterval>;

  readonly #listenerMetrics = new Map<string, ListenerMetrics>();
  readonly #open;
  readonly #accepted;
  readonly #refused;
  readonly #bytes;
  readonly #frames;
  readonly #dropped;
  readonly #rateLimited;
  readonly #evicted;

  constructor(
    bus: Bus,
    metrics: MetricsRegistry,
    options: { maxOpenFiles?: number; now?: () => number } = {},
  ) {
    this.#bus = bus;
    this.#now = options.now ?? Date.now;
    this.#context = {
      bus,
      now: this.#now,
      release: (connection) => this.#release(connection),
      touched: (connection) => {
        const peers = this.#udpPeers.get(connection.source.listener);
        if (peers?.delete(connection.id)) peers.set(connection.id, connection);
      },
    };
    this.#descriptorLimit = options.maxOpenFiles ?? descriptorLimit();
    this.#descriptorBudget = connectionBudget(this.#descriptorLimit);
    this.#open = metrics.gauge("gateway_connections_open", "Open connections.", ["listener"]);
    this.#accepted = metrics.counter(
      "gateway_connections_accepted_total",
      "Connections admitted.",
      ["listener"],
    );
    this.#refused = metrics.counter(
      "gateway_connections_refused_total",
      "Connections refused, by the limit that refused them.",
      ["listener", "reason"],
    );
    this.#bytes = metrics.counter(
      "gateway_connection_bytes_total",
      "Bytes received (in) and sent (out) on connections.",
      ["listener", "direction"],
    );
    this.#frames = metrics.counter(
      "gateway_connection_frames_total",
      "Frames, messages or datagrams received (in) and sent (out) on connections.",
      ["listener", "direction"],
    );
    this.#dropped = metrics.counter(
      "gateway_connection_frames_dropped_total",
      "Frames, messages or datagrams received and dropped, over their connection's messageRate.",
      ["listener", "reason"],
    );
    this.#rateLimited = metrics.counter(
      "gateway_connections_rate_limited_total",
      "Connections closed for going over their messageRate.",
      ["listener"],
    );
    this.#evicted = metrics.counter(
      "gateway_connections_evicted_total",
      "UDP peers forgotten to make room for a new one (the idlest without a bound device).",
      ["listener"],
    );
  }

  /** How many connections are open. */
  get openCount(): number {
    return this.#connections.size;
  }

  /**
   * Admits a connection, or refuses it with a reason naming the limit and the
   * listener: `maxConnections` of the listener, `maxPerIp` of the listener for
   * that remote address, or the process's descriptor budget (not applied to
   * UDP peers, which share their listener's socket). The listener closes a
   * refused connection. A UDP peer over `maxConnections` or `maxPerIp` first
   * evicts (closes through its handle) the idlest peer of that listener (and
   * address) that has no device bound, preferring one never sent anything,
   * and is refused only when every peer there has a device bound.
   */
  admit(request: AdmitRequest): Connection | { refused: string } {
    const { listener, protocol, remoteAddress, limits, handle } = request;
    const addressKey = `${listener}\n${remoteAddress}`;
    if (protocol === "udp") this.#makeRoom(listener, addressKey, limits);
    const onListener = this.#perListener.get(listener) ?? 0;
    if (onListener >= limits.maxConnections) {
      return this.#refuse(
        listener,
        "listener_limit",
        `listener "${listener}" has ${onListener} connections, its maxConnections`,
      );
    }
    const fromAddress = this.#perAddress.get(addressKey) ?? 0;
    if (fromAddress >= limits.maxPerIp) {
      return this.#refuse(
        listener,
        "ip_limit",
        `listener "${listener}" has ${fromAddress} connections from ${remoteAddress}, its maxPerIp`,
      );
    }
    if (protocol !== "udp") {
      if (this.#socketConnections + descriptorsOf(protocol) > this.#descriptorBudget) {
        return this.#refuse(
          listener,
          "fd_budget",
          `listener "${listener}": the gateway holds ${this.#socketConnections} connections, its ` +
            `descriptor budget (open files limit ${this.#descriptorLimit} minus headroom)`,
        );
      }
      this.#socketConnections += descriptorsOf(protocol);
    }

    const id = `c${(this.#nextId++).toString(36)}${this.#idSuffix}`;
    const now = this.#now();
    const metrics = this.#metricsOf(listener);
    const connection = new TrackedConnection(
      {
        id,
        listener,
        protocol,
        remoteAddress,
        remotePort: request.remotePort,
        openedAt: now,
        lastSeenAt: now,
        bytesIn: 0,
        bytesOut: 0,
        framesIn: 0,
        framesOut: 0,
      },
      handle,
      limits,
      addressKey,
      metrics,
      this.#context,
    );
    this.#connections.set(id, connection);
    if (protocol === "udp") {
      let peers = this.#udpPeers.get(listener);
      if (!peers) this.#udpPeers.set(listener, peers = new Map());
      peers.set(id, connection);
    }
    this.#perListener.set(listener, onListener + 1);
    this.#perAddress.set(addressKey, fromAddress + 1);
    metrics.open.inc();
    metrics.accepted.inc();
    this.#bus.subscribe(`conn/${id}/send`, (message) => handle.send(message.payload), {
      owner: id,
    });
    this.#sweeper ??= setInterval(() => this.#closeIdle(), IDLE_SWEEP_INTERVAL);
    return connection;
  }

  /** A snapshot of one connection. */
  get(id: string): ConnectionInfo | undefined {
    return this.#connections.get(id)?.info();
  }

  /** Snapshots of the open connections, of one listener and/or bound to one device. */
  list(filter: { listener?: string; deviceId?: string } = {}): ConnectionInfo[] {
    const infos: ConnectionInfo[] = [];
    for (const connection of this.#connections.values()) {
      const info = connection.info();
      if (filter.listener !== undefined && info.listener !== filter.listener) continue;
      if (filter.deviceId !== undefined && info.deviceId !== filter.deviceId) continue;
      infos.push(info);
    }
    return infos;
  }

  /**
   * Asks the connection's listener to close it (through its handle); the
   * listener then calls `closed()`. False when no open connection has that id.
   */
  close(id: string, reason: string): boolean {
    const connection = this.#connections.get(id);
    if (!connection) return false;
    try {
      connection.handle.close(reason);
    } catch (error) {
      const { listener } = connection.source;
      eventWarnings.warn(
        logger,
        `close/${listener}`,
        "closing connection {id} of listener {listener} failed: {error}",
        {
          id,
          listener,
          error,
        },
      );
    }
    return true;
  }

  /**
   * Stops the idle sweep (the next admitted connection starts it again). Open
   * connections stay open; their listeners close them.
   */
  stop(): void {
    clearInterval(this.#sweeper);
    this.#sweeper = undefined;
  }

  /**
   * Evicts UDP peers of `listener` while it is at `maxConnections` (or the
   * address of `addressKey` at `maxPerIp`): the idlest peer without a bound device,
   * of those never sent anything if there is one, as long as there is one.
   */
  #makeRoom(
    listener: string,
    addressKey: string,
    limits: ConnectionLimits,
  ): void {
    const peers = this.#udpPeers.get(listener);
    if (!peers) return;
    const full = () => (this.#perListener.get(listener) ?? 0) >= limits.maxConnections;
    const fullForAddress = () => (this.#perAddress.get(addressKey) ?? 0) >= limits.maxPerIp;
    while (full() || fullForAddress()) {
      const sameAddress = !full();
      let idlest: TrackedConnection | undefined;
      for (const peer of peers.values()) {
        if (peer.deviceId !== undefined) continue;
        if (sameAddress && peer.addressKey !== addressKey) continue;
        if (!peer.answered) {
          idlest = peer;
          break;
        }
        idlest ??= peer;
      }
      if (!idlest) return;
      this.#evicted.labels({ listener }).inc();
      this.close(idlest.id, "evicted: the listener's peer table is full");
      // A handle that did not release its peer at once must not be tried again.
      if (this.#connections.has(idlest.id)) idlest.closed();
    }
  }

  #refuse(listener: string, reason: RefusalReason, message: string): { refused: string } {
    this.#refused.labels({ listener, reason }).inc();
    return { refused: message };
  }

  #metricsOf(listener: string): ListenerMetrics {
    let metrics = this.#listenerMetrics.get(listener);
    if (!metrics) {
      metrics = {
        open: this.#open.labels({ listener }),
        accepted: this.#accepted.labels({ listener }),
        bytesIn: this.#bytes.labels({ listener, direction: "in" }),
        bytesOut: this.#bytes.labels({ listener, direction: "out" }),
        framesIn: this.#frames.labels({ listener, direction: "in" }),
        framesOut: this.#frames.labels({ listener, direction: "out" }),
        framesDropped: this.#dropped.labels({ listener, reason: "rate_limit" }),
        rateLimited: this.#rateLimited.labels({ listener }),
      };
      this.#listenerMetrics.set(listener, metrics);
    }
    return metrics;
  }

  #release(connection: TrackedConnection): void {
    const { id, source } = connection;
    this.#connections.delete(id);
    const peers = this.#udpPeers.get(source.listener);
    if (peers?.delete(id) && peers.size === 0) this.#udpPeers.delete(source.listener);
    const onListener = this.#perListener.get(source.listener)! - 1;
    if (onListener === 0) this.#perListener.delete(source.listener);
    else this.#perListener.set(source.listener, onListener);
    const fromAddress = this.#perAddress.get(connection.addressKey)! - 1;
    if (fromAddress === 0) this.#perAddress.delete(connection.addressKey);
    else this.#perAddress.set(connection.addressKey, fromAddress);
    if (source.protocol !== "udp") this.#socketConnections -= descriptorsOf(source.protocol);
    connection.metrics.open.dec();
    this.#bus.unsubscribeOwner(id);
    if (this.#connections.size === 0) this.stop();
  }

  #closeIdle(): void {
    const now = this.#now();
    for (const connection of this.#connections.values()) {
      const { idleTimeout } = connection;
      if (idleTimeout > 0 && now - connection.lastSeenAt > idleTimeout) {
        this.close(connection.id, "idle timeout");
      }
    }
  }
}
