/**
 * An HTTP or HTTPS listener on `Deno.serve` whose handler can be swapped
 * while it serves: a config reload changes what the listener does without
 * closing its socket or any keep-alive connection.
 *
 * @module
 */

import { getLogger } from "@logtape/logtape";
import { ListenError } from "./listen_error.ts";
import { claimSocketPath } from "./unix_socket.ts";
import { isDescriptorExhaustion } from "../connections/fd_guard.ts";

/** Where and how a listener binds: a TCP address, or a Unix socket `path`. */
export interface HttpBinding {
  host: string;
  port: number;
  /** A Unix socket path; when set, `host` and `port` are not used. */
  path?: string;
  /** File mode of the Unix socket (octal string such as "660"). */
  mode?: string;
  /** PEM certificate chain and key; absent for plain HTTP. */
  tls?: { cert: string; key: string };
  /** Milliseconds in-flight requests may take to finish when the listener stops. */
  drainTimeout: number;
}

type Handler = (request: Request, info: Deno.ServeHandlerInfo) => Response | Promise<Response>;

const logger = getLogger(["gateway", "listener"]);

/**
 * One bound HTTP(S) socket.
 *
 * @example
 * ```ts
 * import { HttpListener } from "./http.ts";
 * const listener = new HttpListener(
 *   'listener "web"',
 *   { host: "127.0.0.1", port: 0, drainTimeout: 1000 },
 *   () => new Response("hello"),
 * );
 * await listener.start();
 * console.log(listener.port);
 * await listener.stop();
 * ```
 */
export class HttpListener {
  #handler: Handler;
  /** The server accepting now. */
  #server?: Deno.HttpServer<Deno.Addr>;
  /** Every server with connections still open (more than one after an EMFILE rebind). */
  readonly #servers = new Set<Deno.HttpServer<Deno.Addr>>();
  #stopping?: Promise<void>;

  constructor(readonly label: string, readonly binding: HttpBinding, handler: Handler) {
    this.#handler = handler;
  }

  /** The bound port (useful when the config asked for port 0); 0 on a Unix socket. */
  get port(): number {
    const addr = this.#server?.addr;
    return addr?.transport === "tcp" ? addr.port : this.binding.path ? 0 : this.binding.port;
  }

  /** The URL clients use, for logs and the admin API. */
  get url(): string {
    const { host, path, tls } = this.binding;
    return path !== undefined
      ? `http+unix://${path}`
      : `${tls ? "https" : "http"}://${host}:${this.port}`;
  }

  /**
   * Binds the socket and starts serving. A Unix socket path left behind by a
   * process that died is reclaimed, and the socket gets its configured mode.
   * Throws {@link ListenError}.
   */
  async start(): Promise<void> {
    const { host, port, path, mode } = this.binding;
    if (path !== undefined) await claimSocketPath(path, this.label);
    try {
      this.#serve();
    } catch (error) {
      if (error instanceof Deno.errors.AddrInUse) {
        throw new ListenError(
          `${this.label}: port ${port} on ${host} is already in use`,
          { cause: error },
        );
      }
      if (error instanceof Deno.errors.PermissionDenied) {
        throw new ListenError(
          `${this.label}: not allowed to listen on ${host}:${port} (ports below 1024 need privileges)`,
          { cause: error },
        );
      }
      throw new ListenError(
        `${this.label}: cannot listen on ${path ?? `${host}:${port}`}: ${(error as Error).message}`,
        { cause: error },
      );
    }
    if (path !== undefined && mode !== undefined) await Deno.chmod(path, parseInt(mode, 8));
    logger.info("{listener} serving on {url}", { listener: this.label, url: this.url });
  }

  /**
   * Starts one `Deno.serve`. When the process runs out of file descriptors,
   * Deno.serve's accept loop ends (its `finished` promise rejects with EMFILE)
   * while open connections keep being served; the listener then binds again
   * every 100 ms until descriptors are free (see docs/fd-exhaustion.md).
   */
  #serve(): void {
    const { host, path, tls } = this.binding;
    // this.port: a rebind takes the port bound before, also when the config asked for port 0.
    const address = path !== undefined
      ? { path }
      : { hostname: host, port: this.port, ...(tls ?? {}) };
    const server = Deno.serve({
      ...address,
      onListen: () => {},
      onError: (error) => {
        logger.error("{listener}: unhandled error: {error}", { listener: this.label, error });
        return new Response("internal error", { status: 500 });
      },
    }, (request, info) => this.#handler(request, info));
    this.#server = server;
    this.#servers.add(server);
    server.finished.then(
      () => this.#servers.delete(server),
      (error) => {
        if (this.#stopping || !isDescriptorExhaustion(error)) {
          logger.error("{listener}: stopped serving: {error}", { listener: this.label, error });
          return;
        }
        logger.warn(
          "{listener}: out of file descriptors; open connections are still served, " +
            "new ones are refused until descriptors free up",
          { listener: this.label },
        );
        this.#rebind();
      },
    );
  }

  #rebind(): void {
    const retry = setInterval(() => {
      if (this.#stopping) return clearInterval(retry);
      try {
        this.#serve();
        clearInterval(retry);
        logger.info("{listener}: accepting again", { listener: this.label });
      } catch {
        // still exhausted (or the port is not free yet): try again on the next tick
      }
    }, 100);
  }

  /** Replaces the handler; requests already running keep the one they started with. */
  setHandler(handler: Handler): void {
    this.#handler = handler;
  }

  /**
   * Stops accepting connections and waits for in-flight requests, at most
   * `drainTimeout` milliseconds. Idempotent.
   */
  stop(): Promise<void> {
    this.#stopping ??= (async () => {
      if (this.#servers.size === 0) return;
      let timer: ReturnType<typeof setTimeout> | undefined;
      const deadline = new Promise<"timeout">((resolve) => {
        timer = setTimeout(() => resolve("timeout"), this.binding.drainTimeout);
      });
      const drained = Promise.all([...this.#servers].map((server) => server.shutdown()));
      const outcome = await Promise.race([drained.then(() => "drained" as const), deadline]);
      clearTimeout(timer);
      if (outcome === "timeout") {
        logger.warn("{listener}: requests still running after {ms} ms drain timeout", {
          listener: this.label,
          ms: this.binding.drainTimeout,
        });
      }
    })();
    return this.#stopping;
  }
}
