/**
 * TCP listeners. In `bus` mode each connection's byte stream is cut into
 * frames, each frame is published on the bus, and replies go back framed the
 * same way. In `proxy` mode each connection is piped both ways to a target of
 * an upstream (an L4 proxy).
 *
 * @module
 */

import { getLogger } from "@logtape/logtape";
import { eventWarnings } from "../observability/rate_limited_log.ts";
import type { TcpListenerConfig } from "./config.ts";
import type { Upstream, UpstreamTarget } from "../upstreams/upstream.ts";
import { compileTopicTemplate } from "../bus/topic_template.ts";
import { createFrameCodec } from "./framing.ts";
import { ListenError } from "./listen_error.ts";
import {
  admitConnection,
  closeQuietly,
  type FramedServing,
  type ListenerServices,
  peerOf,
  serveFramedConnection,
  StreamServer,
  writeAll,
} from "./stream_connection.ts";

/** What a TCP listener needs: the bus and connection manager, and the upstreams for proxy mode. */
export interface TcpListenerServices extends ListenerServices {
  upstreams: Pick<ReadonlyMap<string, Upstream>, "get">;
}

const RELAY_BUFFER_SIZE = 16 * 1024;

const logger = getLogger(["gateway", "listener"]);

/**
 * One TCP listener, from its config. Every connection goes through the
 * connection manager first (limits; refused ones are closed at once).
 *
 * In proxy mode a connection goes to the target the upstream picks; when
 * connecting fails, the failure is reported to that target and the next one
 * is tried, up to the upstream's `retries` extra attempts, each within its
 * `timeouts.connect`. Connecting counts as the target's success. When one side
 * ends its stream the other side's write half is closed; when both have ended,
 * or either fails, both sockets are closed.
 *
 * @example
 * ```ts
 * import { TcpListener } from "./tcp.ts";
 * import { Bus } from "../bus/bus.ts";
 * import { TcpListenerConfig } from "./config.ts";
 * import type { Connection } from "../connections/connection.ts";
 *
 * const bus = new Bus();
 * const connections = {
 *   admit: (): Connection | { refused: string } => ({ refused: "demo admits nobody" }),
 * };
 * const config = TcpListenerConfig.parse({ type: "tcp", port: 0 });
 * const listener = new TcpListener("plc", config, { bus, connections, upstreams: new Map() });
 * listener.start();
 * console.log(listener.port);
 * await listener.stop();
 * ```
 */
export class TcpListener {
  readonly #label: string;
  readonly #serve: (conn: Deno.Conn) => Promise<void>;
  #listener?: Deno.TcpListener;
  #server?: StreamServer;
  #stopped?: Promise<void>;

  /**
   * Throws when the framing is invalid. In proxy mode the upstream is looked
   * up in `services.upstreams` for each connection, so a listener kept across
   * a reload proxies to the current config's upstream.
   */
  constructor(
    readonly name: string,
    readonly config: TcpListenerConfig,
    readonly services: TcpListenerServices,
  ) {
    this.#label = `listener "${name}"`;
    if (config.mode === "proxy") {
      this.#serve = (conn) => this.#proxy(conn);
    } else {
      const serving: FramedServing = {
        listener: name,
        protocol: "tcp",
        codec: createFrameCodec(config.framing),
        topic: compileTopicTemplate(config.topic),
        handshake: config.handshake,
        limits: config.limits,
      };
      this.#serve = (conn) => serveFramedConnection(conn, serving, services);
    }
  }

  /** The bound port (useful when the config asked for port 0). */
  get port(): number {
    return this.#listener?.addr.port ?? this.config.port;
  }

  /** Binds the port and starts accepting. Throws a {@link ListenError} naming the listener and address. */
  start(): void {
    const { host, port } = this.config;
    try {
      this.#listener = Deno.listen({ hostname: host, port });
    } catch (error) {
      const reason = error instanceof Deno.errors.AddrInUse
        ? `port ${port} on ${host} is already in use`
        : error instanceof Deno.errors.PermissionDenied
        ? `not allowed to listen on ${host}:${port} (ports below 1024 need privileges)`
        : `cannot listen on ${host}:${port}: ${(error as Error).message}`;
      throw new ListenError(`${this.#label}: ${reason}`, { cause: error });
    }
    this.#server = new StreamServer(this.#label, this.#listener, (conn) => {
      // Frames and proxied bytes go out as soon as they are written (no Nagle delay).
      (conn as Deno.TcpConn).setNoDelay(true);
      return this.#serve(conn);
    });
    logger.info("{listener} accepting TCP on {host}:{port} ({mode})", {
      listener: this.#label,
      host,
      port: this.port,
      mode: this.config.mode,
    });
  }

  /** Stops accepting and closes every connection of this listener. Idempotent. */
  stop(): Promise<void> {
    this.#stopped ??= this.#server?.stop() ?? Promise.resolve();
    return this.#stopped;
  }

  async #proxy(client: Deno.Conn): Promise<void> {
    const peer = peerOf(client);
    const connection = admitConnection(
      client,
      peer,
      {
        listener: this.name,
        protocol: "tcp",
        limits: { ...this.config.limits, messageRate: undefined }, // it relays bytes, not messages
      },
      this.services.connections,
      {
        send: () => {
          throw new Error(`${this.#label} is a proxy: its connections take no messages`);
        },
        close: (reason) => {
          logger.info("{listener}: closing {peer}: {reason}", {
            listener: this.#label,
            peer: peer.label,
            reason,
          });
          closeQuietly(client);
        },
      },
    );
    if (connection === undefined) return;
    try {
      const upstream = this.services.upstreams.get(this.config.upstream ?? "");
      const picked = upstream && await this.#connectUpstream(upstream);
      if (picked === undefined) {
        eventWarnings.warn(
          logger,
          `tcp/${this.name}/no-target`,
          "{listener}: no target of upstream {upstream} took {peer}",
          {
            listener: this.#label,
            upstream: this.config.upstream,
            peer: peer.label,
          },
        );
        return;
      }
      const { server, target } = picked;
      const closeBoth = () => {
        closeQuietly(client);
        closeQuietly(server);
      };
      await Promise.all([
        relay(client, server, (bytes) => connection.received(bytes)).catch(closeBoth),
        relay(server, client, (bytes) => connection.sent(bytes)).catch(closeBoth),
      ]);
      closeBoth();
      target.release();
    } finally {
      closeQuietly(client);
      connection.closed();
    }
  }

  /** A connection to a target of `upstream`, failing over to others; undefined when none took it. */
  async #connectUpstream(
    upstream: Upstream,
  ): Promise<{ server: Deno.Conn; target: UpstreamTarget } | undefined> {
    const tried = new Set<UpstreamTarget>();
    for (let attempt = 0; attempt <= upstream.config.retries; attempt++) {
      const target = upstream.pick(tried);
      if (target === undefined) return undefined;
      tried.add(target);
      const url = new URL(target.url);
      try {
        const server = await Deno.connect({
          hostname: url.hostname.replace(/^\[(.*)\]$/, "$1"),
          port: Number(url.port) || (url.protocol === "https:" ? 443 : 80),
          signal: AbortSignal.timeout(upstream.config.timeouts.connect),
        });
        server.setNoDelay(true);
        target.reportSuccess();
        return { server, target };
      } catch (error) {
        const reason = `connect: ${(error as Error).message}`;
        target.reportFailure(reason);
        target.release();
        eventWarnings.warn(
          logger,
          `tcp/${this.name}/target-failed`,
          "{listener}: upstream {upstream} target {target} failed: {reason}",
          {
            listener: this.#label,
            upstream: upstream.name,
            target: target.url,
            reason,
          },
        );
      }
    }
    return undefined;
  }
}

/** Copies `from` to `to` until `from` ends, then closes the write half of `to`. */
async function relay(
  from: Deno.Conn,
  to: Deno.Conn,
  count: (bytes: number) => void,
): Promise<void> {
  const buffer = new Uint8Array(RELAY_BUFFER_SIZE);
  for (let n; (n = await from.read(buffer)) !== null;) {
    await writeAll(to, buffer.subarray(0, n));
    count(n);
  }
  await to.closeWrite();
}
