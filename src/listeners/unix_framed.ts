/**
 * Unix-socket listeners with `protocol: "framed"`: framed messages to and
 * from the bus, served exactly like a bus-mode TCP listener's connections.
 * (`protocol: "http"` Unix sockets are HTTP listeners.)
 *
 * @module
 */

import { getLogger } from "@logtape/logtape";
import type { UnixListenerConfig } from "./config.ts";
import { compileTopicTemplate } from "../bus/topic_template.ts";
import { createFrameCodec } from "./framing.ts";
import { ListenError } from "./listen_error.ts";
import {
  type FramedServing,
  type ListenerServices,
  serveFramedConnection,
  StreamServer,
} from "./stream_connection.ts";
import { claimSocketPath } from "./unix_socket.ts";

const logger = getLogger(["gateway", "listener"]);

/**
 * One framed Unix-socket listener. `config.path` is used as given (the
 * caller resolves it against the config file's directory).
 *
 * Starting removes a stale socket file left by a process that died (a
 * socket nobody answers on), refuses to start when another process answers on
 * it or when the path is not a socket, binds, and sets the file mode from the
 * config. Stopping closes every connection and the socket, which removes its
 * file.
 *
 * @example
 * ```ts
 * import { UnixFramedListener } from "./unix_framed.ts";
 * import { Bus } from "../bus/bus.ts";
 * import { UnixListenerConfig } from "./config.ts";
 * import type { Connection } from "../connections/connection.ts";
 *
 * const connections = {
 *   admit: (): Connection | { refused: string } => ({ refused: "demo admits nobody" }),
 * };
 * const path = `${Deno.makeTempDirSync()}/gateway.sock`;
 * const config = UnixListenerConfig.parse({ type: "unix", path, protocol: "framed" });
 * const listener = new UnixFramedListener("local", config, { bus: new Bus(), connections });
 * await listener.start();
 * await listener.stop();
 * ```
 */
export class UnixFramedListener {
  readonly #label: string;
  readonly #serving: FramedServing;
  #server?: StreamServer;
  #stopped?: Promise<void>;

  /** Throws when the config is not a framed one or its framing is invalid. */
  constructor(
    readonly name: string,
    readonly config: UnixListenerConfig,
    readonly services: ListenerServices,
  ) {
    this.#label = `listener "${name}"`;
    if (config.protocol !== "framed") {
      throw new Error(
        `${this.#label}: protocol "${config.protocol}" is not served by this listener`,
      );
    }
    this.#serving = {
      listener: name,
      protocol: "unix",
      codec: createFrameCodec(config.framing),
      topic: compileTopicTemplate(config.topic),
      handshake: config.handshake,
      limits: config.limits,
    };
  }

  /** Binds the socket file and starts accepting. Throws a {@link ListenError} naming the listener and path. */
  async start(): Promise<void> {
    const { path } = this.config;
    await claimSocketPath(path, this.#label);
    let listener: Deno.UnixListener;
    try {
      listener = Deno.listen({ transport: "unix", path });
    } catch (error) {
      throw new ListenError(
        `${this.#label}: cannot listen on ${path}: ${(error as Error).message}`,
        { cause: error },
      );
    }
    try {
      await Deno.chmod(path, parseInt(this.config.mode, 8));
    } catch (error) {
      listener.close();
      throw new ListenError(
        `${this.#label}: cannot set mode ${this.config.mode} on ${path}: ${
          (error as Error).message
        }`,
        { cause: error },
      );
    }
    this.#server = new StreamServer(
      this.#label,
      listener,
      (conn) => serveFramedConnection(conn, this.#serving, this.services),
    );
    logger.info("{listener} accepting framed messages on {path}", { listener: this.#label, path });
  }

  /**
   * Stops accepting and closes every connection; closing the socket removes
   * its file. Idempotent.
   */
  stop(): Promise<void> {
    this.#stopped ??= this.#server?.stop() ?? Promise.resolve();
    return this.#stopped;
  }
}
