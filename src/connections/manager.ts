/**
 * The connection manager: admits every WebSocket, TCP, UDP-peer and
 * Unix-socket connection against its listener's limits and the process's
 * descriptor budget, gives it an id, counts its traffic, closes it when idle,
 * and routes bus pushes (`conn/<id>/send`, `device/<deviceId>/send`) to it.
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

const logger = getLogger(["gateway", "connections"]);

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
}

/** What every connection of one manager shares with it. */
interface ManagerContext {
  bus: Bus;
  now: () => number;
  release(connection: TrackedConnection): void;
}

/** One admitted connection: its counters, its device binding and its place in the manager's counts. */
class TrackedConnection implements Connection {
  readonly id: string;
  readonly source: MessageSource;
  readonly #info: ConnectionInfo;
  #deviceSubscription?: Subscription;
  #released = false;

  constructor(
    info: ConnectionInfo,
    readonly handle: ConnectionHandle,
    readonly idleTimeout: number,
    /** The key of this connection's remote address in the manager's per-address counts. */
    readonly addressKey: string,
    readonly metrics: ListenerMetrics,
    readonly context: ManagerContext,
  ) {
    this.id = info.id;
    this.#info = info;
    this.source = { listener: info.listener, protocol: info.protocol, connectionId: info.id };
  }

  get lastSeenAt(): number {
    return this.#info.lastSeenAt;
  }

  received(bytes: number, frames = 1): void {
    const info = this.#info;
    info.bytesIn += bytes;
    info.framesIn += frames;
    info.lastSeenAt = this.context.now();
    this.metrics.bytesIn.inc(bytes);
    this.metrics.framesIn.inc(frames);
  }

  sent(bytes: number, frames = 1): void {
    const info = this.#info;
    info.bytesOut += bytes;
    info.framesOut += frames;
    info.lastSeenAt = this.context.now();
    this.metrics.bytesOut.inc(bytes);
    this.metrics.framesOut.inc(frames);
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
  }

  closed(): void {
    if (this.#released) return;
    this.#released = true;
    this.context.release(this);
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

  constructor(
    bus: Bus,
    metrics: MetricsRegistry,
    options: { maxOpenFiles?: number; now?: () => number } = {},
  ) {
    this.#bus = bus;
    this.#now = options.now ?? Date.now;
    this.#context = { bus, now: this.#now, release: (connection) => this.#release(connection) };
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
   * refused connection.
   */
  admit(request: AdmitRequest): Connection | { refused: string } {
    const { listener, protocol, remoteAddress, limits, handle } = request;
    const onListener = this.#perListener.get(listener) ?? 0;
    if (onListener >= limits.maxConnections) {
      return this.#refuse(
        listener,
        "listener_limit",
        `listener "${listener}" has ${onListener} connections, its maxConnections`,
      );
    }
    const addressKey = `${listener}\n${remoteAddress}`;
    const fromAddress = this.#perAddress.get(addressKey) ?? 0;
    if (fromAddress >= limits.maxPerIp) {
      return this.#refuse(
        listener,
        "ip_limit",
        `listener "${listener}" has ${fromAddress} connections from ${remoteAddress}, its maxPerIp`,
      );
    }
    if (protocol !== "udp") {
      if (this.#socketConnections >= this.#descriptorBudget) {
        return this.#refuse(
          listener,
          "fd_budget",
          `listener "${listener}": the gateway holds ${this.#socketConnections} connections, its ` +
            `descriptor budget (open files limit ${this.#descriptorLimit} minus headroom)`,
        );
      }
      this.#socketConnections++;
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
      limits.idleTimeout,
      addressKey,
      metrics,
      this.#context,
    );
    this.#connections.set(id, connection);
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
      logger.warn("closing connection {id} of listener {listener} failed: {error}", {
        id,
        listener: connection.source.listener,
        error,
      });
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
      };
      this.#listenerMetrics.set(listener, metrics);
    }
    return metrics;
  }

  #release(connection: TrackedConnection): void {
    const { id, source } = connection;
    this.#connections.delete(id);
    const onListener = this.#perListener.get(source.listener)! - 1;
    if (onListener === 0) this.#perListener.delete(source.listener);
    else this.#perListener.set(source.listener, onListener);
    const fromAddress = this.#perAddress.get(connection.addressKey)! - 1;
    if (fromAddress === 0) this.#perAddress.delete(connection.addressKey);
    else this.#perAddress.set(connection.addressKey, fromAddress);
    if (source.protocol !== "udp") this.#socketConnections--;
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
