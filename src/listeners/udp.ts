/**
 * A UDP listener: each datagram becomes a bus message whose source is the
 * sending peer, and `reply` sends a datagram back to that peer. Peers are
 * tracked by the connection manager like connections (limits, idle timeout,
 * admin listing, pushes on `conn/<id>/send`, message rate), keyed by address
 * and port. Source addresses cost nothing to forge, so the table of peers
 * keeps only what is useful: when it is full, a new peer evicts the idlest
 * one that has no device bound, preferring one that was never sent anything
 * (a reply or a push), instead of being refused. A peer over its message
 * rate has its excess datagrams dropped (there is no connection to close).
 *
 * @module
 */

import { getLogger } from "@logtape/logtape";
import type { UdpListenerConfig } from "./config.ts";
import type { Bus } from "../bus/bus.ts";
import type { Connection } from "../connections/connection.ts";
import type { ConnectionManager } from "../connections/manager.ts";
import { compileTopicTemplate, type TemplateValues } from "../bus/topic_template.ts";
import { eventWarnings } from "../observability/rate_limited_log.ts";

const logger = getLogger(["gateway", "listener", "udp"]);

/** What a UDP listener needs from the rest of the gateway. */
export interface UdpListenerDeps {
  bus: Bus;
  connections: ConnectionManager;
}

/**
 * One bound UDP socket.
 *
 * @example
 * ```ts
 * import { UdpListener } from "./udp.ts";
 * import { UdpListenerConfig } from "./config.ts";
 * import { Bus } from "../bus/bus.ts";
 * import { ConnectionManager } from "../connections/manager.ts";
 * import { MetricsRegistry } from "../observability/metrics.ts";
 * const metrics = new MetricsRegistry();
 * const bus = new Bus(metrics);
 * const connections = new ConnectionManager(bus, metrics);
 * const udp = new UdpListener("sensors", UdpListenerConfig.parse({ type: "udp", port: 0 }), {
 *   bus,
 *   connections,
 * });
 * udp.start();
 * await udp.stop();
 * connections.stop();
 * ```
 */
export class UdpListener {
  #config: UdpListenerConfig;
  #topic: (values: TemplateValues) => string;
  #socket?: Deno.DatagramConn;
  #peers = new Map<string, Connection>();
  #stopping?: Promise<void>;
  #receiving?: Promise<void>;

  constructor(
    readonly name: string,
    config: UdpListenerConfig,
    readonly deps: UdpListenerDeps,
  ) {
    this.#config = config;
    this.#topic = compileTopicTemplate(config.topic);
  }

  /** The bound port (useful when the config asked for port 0). */
  get port(): number {
    return (this.#socket?.addr as Deno.NetAddr | undefined)?.port ?? this.#config.port;
  }

  /** Binds the socket and starts receiving. Throws an error naming the listener and port. */
  start(): void {
    const { host, port } = this.#config;
    try {
      this.#socket = Deno.listenDatagram({ transport: "udp", hostname: host, port });
    } catch (error) {
      const why = error instanceof Deno.errors.AddrInUse
        ? "is already in use"
        : `cannot be bound: ${(error as Error).message}`;
      throw new Error(`listener "${this.name}": UDP port ${port} on ${host} ${why}`, {
        cause: error,
      });
    }
    logger.info("listener {listener} receiving on udp://{host}:{port}", {
      listener: this.name,
      host,
      port: this.port,
    });
    this.#receiving = this.#receive(this.#socket);
  }

  async #receive(socket: Deno.DatagramConn): Promise<void> {
    // One byte more than allowed, so an oversized datagram shows as too long instead of truncated.
    const buffer = new Uint8Array(this.#config.maxDatagramSize + 1);
    for (;;) {
      let received: [Uint8Array, Deno.Addr];
      try {
        received = await socket.receive(buffer);
      } catch (error) {
        if (this.#stopping) return;
        eventWarnings.warn(
          logger,
          `udp/${this.name}/receive`,
          "listener {listener}: receive failed, retrying: {error}",
          { listener: this.name, error },
        );
        await new Promise((resolve) => setTimeout(resolve, 100));
        continue;
      }
      const [data, addr] = received;
      this.#handle(socket, data, addr as Deno.NetAddr);
    }
  }

  #handle(socket: Deno.DatagramConn, data: Uint8Array, addr: Deno.NetAddr): void {
    const config = this.#config;
    const peerKey = `${addr.hostname}:${addr.port}`;
    if (data.length > config.maxDatagramSize) {
      eventWarnings.warn(
        logger,
        `udp/${this.name}/oversized`,
        "listener {listener}: dropped a datagram from {peer} over maxDatagramSize ({max} bytes)",
        { listener: this.name, peer: peerKey, max: config.maxDatagramSize },
      );
      return;
    }
    const peer = this.#peers.get(peerKey) ?? this.#admit(socket, addr, peerKey);
    // Over the peer's message rate: dropped (and counted by the manager).
    if (!peer || peer.received(data.length) === 0) return;
    const source = peer.source;
    const topic = this.#topic({
      listener: this.name,
      connectionId: peer.id,
      deviceId: source.deviceId,
      remoteAddress: addr.hostname,
    });
    this.deps.bus.publish({
      topic,
      payload: data.slice(),
      source,
      meta: { remotePort: String(addr.port) },
      reply: (answer) => this.#send(socket, peer, addr, answer),
    });
  }

  #admit(socket: Deno.DatagramConn, addr: Deno.NetAddr, peerKey: string): Connection | undefined {
    const admitted = this.deps.connections.admit({
      listener: this.name,
      protocol: "udp",
      remoteAddress: addr.hostname,
      remotePort: addr.port,
      limits: this.#config.limits,
      handle: {
        send: (payload) => this.#send(socket, connection, addr, payload),
        close: () => {
          this.#peers.delete(peerKey);
          connection.closed();
        },
      },
    });
    if ("refused" in admitted) {
      eventWarnings.warn(
        logger,
        `udp/${this.name}/refused`,
        "listener {listener}: refused datagrams from {peer}: {reason}",
        { listener: this.name, peer: peerKey, reason: admitted.refused },
      );
      return undefined;
    }
    const connection: Connection = admitted;
    this.#peers.set(peerKey, connection);
    return connection;
  }

  #send(socket: Deno.DatagramConn, peer: Connection, addr: Deno.NetAddr, payload: Uint8Array) {
    if (payload.length > this.#config.maxDatagramSize) {
      throw new Error(
        `listener "${this.name}": a reply of ${payload.length} bytes is over maxDatagramSize`,
      );
    }
    peer.sent(payload.length);
    socket.send(payload, addr).catch((error) =>
      eventWarnings.warn(
        logger,
        `udp/${this.name}/send`,
        "listener {listener}: send to {peer} failed: {error}",
        { listener: this.name, peer: `${addr.hostname}:${addr.port}`, error },
      )
    );
  }

  /** Closes the socket and forgets every peer. Idempotent. */
  stop(): Promise<void> {
    this.#stopping ??= (async () => {
      this.#socket?.close();
      await this.#receiving;
      for (const peer of [...this.#peers.values()]) peer.closed();
      this.#peers.clear();
    })();
    return this.#stopping;
  }
}
