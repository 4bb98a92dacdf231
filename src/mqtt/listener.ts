/**
 * A TCP or TLS listener of the broker, on `node:net` / `node:tls`: each
 * accepted socket goes to {@link MqttBroker.handle}. `node:net` sockets are
 * the fastest stream aedes can be given in Deno (measured in bench/mqtt.ts
 * and docs/mqtt.md): they are native Node streams with `cork`, so the several
 * writes of one MQTT packet leave in one syscall. A TLS listener closes a
 * connection whose handshake has not ended `tls.handshakeTimeout` after it
 * was accepted, and holds at most `maxPerIp` handshakes from one address (the
 * broker counts connections only once they are secured).
 *
 * @module
 */

import { createServer as createTcpServer, type Server, type Socket } from "node:net";
import { createServer as createTlsServer } from "node:tls";
import type { MqttBroker } from "./broker.ts";
import { adaptStream } from "./stream_adapter.ts";
import type { MqttListenerConfig } from "./config.ts";

/**
 * A bound broker listener.
 *
 * @example
 * ```ts
 * import { MqttListener } from "./listener.ts";
 * // const listener = await MqttListener.bind("main", config, undefined, broker);
 * // listener.port; listener.close();
 * ```
 */
export class MqttListener {
  private constructor(readonly name: string, readonly server: Server, readonly port: number) {}

  /**
   * Binds `config.host:config.port` (TLS with `pem` when given); rejects with
   * an error naming `mqtt.listeners.<name>` when the address cannot be bound.
   * Sockets go to `broker()` (read per connection, so a listener kept across
   * reloads serves the current broker).
   */
  static bind(
    name: string,
    config: MqttListenerConfig,
    pem: { cert: string; key: string } | undefined,
    broker: () => MqttBroker,
  ): Promise<MqttListener> {
    const limits = {
      maxConnections: config.maxConnections,
      maxPerIp: config.maxPerIp,
      idleTimeout: 0,
    };
    const accept = (socket: Socket) => {
      socket.setNoDelay(true);
      broker().handle(adaptStream(socket), {
        listener: name,
        remoteAddress: socket.remoteAddress ?? "",
        remotePort: socket.remotePort,
        limits,
      });
    };
    const server = pem && config.tls
      ? handshakeGuarded(
        createTlsServer({ cert: pem.cert, key: pem.key }, accept),
        config.tls.handshakeTimeout,
        config.maxPerIp,
      )
      : createTcpServer(accept);
    return new Promise((resolve, reject) => {
      server.once("error", (error) => {
        reject(
          new Error(
            `mqtt.listeners.${name}: cannot listen on ${config.host}:${config.port}: ${error.message}`,
          ),
        );
      });
      server.listen(config.port, config.host, () => {
        const address = server.address();
        const port = typeof address === "object" && address ? address.port : config.port;
        resolve(new MqttListener(name, server, port));
      });
    });
  }

  /** Stops accepting (the port is free again); connected clients stay connected. */
  close(): void {
    this.server.close();
  }
}

/**
 * Makes `server` close connections whose TLS handshake is not over
 * `timeout` ms after they were accepted, and refuse a handshake from an
 * address that already has `maxPerIp` in progress.
 */
function handshakeGuarded(server: Server, timeout: number, maxPerIp: number): Server {
  /** Handshakes in progress: by `address:port`, and how many per address. */
  const pending = new Map<string, ReturnType<typeof setTimeout>>();
  const perIp = new Map<string, number>();
  const done = (address: string, port: number | undefined) => {
    const timer = pending.get(`${address}:${port}`);
    if (timer === undefined) return;
    clearTimeout(timer);
    pending.delete(`${address}:${port}`);
    const count = perIp.get(address)! - 1;
    if (count === 0) perIp.delete(address);
    else perIp.set(address, count);
  };
  server.on("connection", (raw: Socket) => {
    const address = raw.remoteAddress ?? "";
    const port = raw.remotePort;
    const count = perIp.get(address) ?? 0;
    if (count >= maxPerIp) return raw.destroy();
    perIp.set(address, count + 1);
    pending.set(
      `${address}:${port}`,
      setTimeout(() => {
        done(address, port);
        raw.destroy();
      }, timeout),
    );
    raw.once("close", () => done(address, port));
  });
  server.on(
    "secureConnection",
    (socket: Socket) => done(socket.remoteAddress ?? "", socket.remotePort),
  );
  return server;
}
