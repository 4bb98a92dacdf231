/**
 * A TCP or TLS listener of the broker, on `node:net` / `node:tls`: each
 * accepted socket goes to {@link MqttBroker.handle}. `node:net` sockets are
 * the fastest stream aedes can be given in Deno (measured in bench/mqtt.ts
 * and docs/mqtt.md): they are native Node streams with `cork`, so the several
 * writes of one MQTT packet leave in one syscall.
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
    const server = pem
      ? createTlsServer({ cert: pem.cert, key: pem.key }, accept)
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
