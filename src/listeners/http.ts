/**
 * An HTTP or HTTPS listener on `Deno.serve` whose handler (and certificate)
 * can be swapped while it serves: a config reload changes what the listener
 * does without closing its socket or any keep-alive connection.
 *
 * With a guard ({@link HttpBinding.guard}), an {@link HttpGuard} accepts the
 * connections, terminates TLS and relays them to this listener's
 * `Deno.serve` on an internal loopback socket; the handler still sees each
 * request's real client in `info.remoteAddr`.
 *
 * @module
 */

import { getLogger } from "@logtape/logtape";
import { ListenError } from "./listen_error.ts";
import { claimSocketPath } from "./unix_socket.ts";
import { isDescriptorExhaustion } from "../connections/fd_guard.ts";
import { messageMeterFor } from "../connections/websocket_messages.ts";
import type { ConnectionManager } from "../connections/manager.ts";
import { errorResponse, GatewayError } from "../errors.ts";
import { HttpGuard, type HttpGuardSettings } from "./http_guard.ts";

/** Where and how a listener binds: a TCP address, or a Unix socket `path`. */
export interface HttpBinding {
  host: string;
  port: number;
  /** A Unix socket path; when set, `host` and `port` are not used. */
  path?: string;
  /** File mode of the Unix socket (octal string such as "660"). */
  mode?: string;
  /** PEM certificate chain and key; absent for plain HTTP. HTTPS needs a `guard`. */
  tls?: { cert: string; key: string };
  /** Milliseconds in-flight requests may take to finish when the listener stops; then they are cut. */
  drainTimeout: number;
  /** Accept through an {@link HttpGuard}: its limits, deadlines and admission. */
  guard?: HttpGuardSettings & {
    /** The listener's name, as the connection manager counts it. */
    listener: string;
    connections: Pick<ConnectionManager, "admit">;
  };
}

type Handler = (request: Request, info: Deno.ServeHandlerInfo) => Response | Promise<Response>;

/** Where a guarded listener's `Deno.serve` binds. */
const INTERNAL_HOST = "127.0.0.1";

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
  #guard?: HttpGuard;
  /** The server accepting now. */
  #server?: Deno.HttpServer<Deno.Addr>;
  /**
   * Every server with connections still open (more than one after an EMFILE
   * rebind), with what aborts it: it closes its connections at once.
   */
  readonly #servers = new Map<Deno.HttpServer<Deno.Addr>, AbortController>();
  #stopping?: Promise<void>;

  constructor(readonly label: string, readonly binding: HttpBinding, handler: Handler) {
    if (binding.tls && !binding.guard) throw new Error(`${label}: HTTPS is served through a guard`);
    this.#handler = handler;
  }

  /** The bound port (useful when the config asked for port 0); 0 on a Unix socket. */
  get port(): number {
    if (this.#guard) return this.#guard.port || this.binding.port;
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
    const { host, port, path, mode, guard, tls } = this.binding;
    if (path !== undefined) await claimSocketPath(path, this.label);
    try {
      if (guard) {
        this.#serve({ hostname: INTERNAL_HOST, port: 0 });
        const { listener, connections, ...settings } = guard;
        this.#guard = new HttpGuard({
          listener,
          label: this.label,
          host,
          port,
          tls,
          settings,
          connections,
        });
        await this.#guard.listen(this.#internalPort());
      } else {
        this.#serve(path !== undefined ? { path } : { hostname: host, port });
      }
    } catch (error) {
      this.#abortServers();
      const code = (error as { code?: unknown }).code;
      if (error instanceof Deno.errors.AddrInUse || code === "EADDRINUSE") {
        throw new ListenError(
          `${this.label}: port ${port} on ${host} is already in use`,
          { cause: error },
        );
      }
      if (error instanceof Deno.errors.PermissionDenied || code === "EACCES") {
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

  /** The port of the guard's internal server. */
  #internalPort(): number {
    return (this.#server!.addr as Deno.NetAddr).port;
  }

  /**
   * Starts one `Deno.serve` on `address`. When the process runs out of file
   * descriptors, Deno.serve's accept loop ends (its `finished` promise
   * rejects with EMFILE) while open connections keep being served; the
   * listener then binds the same address again every 100 ms until
   * descriptors are free (see docs/fd-exhaustion.md).
   */
  #serve(address: { path: string } | { hostname: string; port: number }): void {
    const handler: Handler = this.binding.guard
      ? (request, info) => this.#serveGuarded(request, info)
      : (request, info) => this.#handler(request, info);
    const abort = new AbortController();
    const server = Deno.serve({
      ...address,
      signal: abort.signal,
      onListen: () => {},
      onError: (error) => {
        logger.error("{listener}: unhandled error: {error}", { listener: this.label, error });
        return new Response("internal error", { status: 500 });
      },
    }, handler);
    this.#server = server;
    this.#servers.set(server, abort);
    const bound = "path" in address
      ? address
      : { hostname: address.hostname, port: (server.addr as Deno.NetAddr).port };
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
        this.#rebind(bound);
      },
    );
  }

  #rebind(address: { path: string } | { hostname: string; port: number }): void {
    const retry = setInterval(() => {
      if (this.#stopping) return clearInterval(retry);
      try {
        this.#serve(address);
        clearInterval(retry);
        logger.info("{listener}: accepting again", { listener: this.label });
      } catch {
        // still exhausted (or the port is not free yet): try again on the next tick
      }
    }, 100);
  }

  /**
   * A request relayed by the guard: the handler sees the guarded client (and
   * `https:` when the guard terminated TLS); the guard learns when the request
   * is handled and whether the connection switched protocols. A connection to
   * the internal socket that did not come through the guard is refused.
   */
  #serveGuarded(request: Request, info: Deno.ServeHandlerInfo): Response | Promise<Response> {
    const addr = info.remoteAddr as Deno.NetAddr;
    const connection = addr.hostname === INTERNAL_HOST
      ? this.#guard?.connectionFrom(addr.port)
      : undefined;
    if (connection === undefined) {
      return errorResponse(
        new GatewayError(403, "forbidden", "connections must come through the listener's address"),
      );
    }
    const seen = this.binding.tls && request.url.startsWith("http:")
      ? new Request(`https:${request.url.slice(5)}`, request)
      : request;
    connection.requestStarted();
    const ended = () => connection.requestEnded();
    info.completed.then(ended, ended);
    const response = this.#handler(seen, {
      remoteAddr: connection.client,
      completed: info.completed,
    });
    if (response instanceof Response) {
      if (response.status === 101) connection.upgraded(messageMeterFor(response));
      return response;
    }
    return response.then((answer) => {
      if (answer.status === 101) connection.upgraded(messageMeterFor(answer));
      return answer;
    });
  }

  /** Closes the connections of every server not yet finished (a finished one must not be aborted). */
  #abortServers(): void {
    for (const [server, abort] of this.#servers) {
      this.#servers.delete(server);
      abort.abort();
    }
  }

  /** Replaces the handler; requests already running keep the one they started with. */
  setHandler(handler: Handler): void {
    this.#handler = handler;
  }

  /** Replaces the certificate for new connections (those open keep theirs); HTTPS listeners only. */
  setTls(pem: { cert: string; key: string }): void {
    this.#guard?.setTls(pem);
  }

  /**
   * Stops accepting connections and waits for in-flight requests, at most
   * `drainTimeout` milliseconds; then closes every connection still open.
   * Idempotent.
   */
  stop(): Promise<void> {
    this.#stopping ??= (async () => {
      this.#guard?.stopAccepting();
      let timer: ReturnType<typeof setTimeout> | undefined;
      const deadline = new Promise<"timeout">((resolve) => {
        timer = setTimeout(() => resolve("timeout"), this.binding.drainTimeout);
      });
      const drained = Promise.all([...this.#servers.keys()].map((server) => server.shutdown()));
      const outcome = await Promise.race([drained.then(() => "drained" as const), deadline]);
      clearTimeout(timer);
      if (outcome === "timeout") {
        logger.warn(
          "{listener}: requests still running after {ms} ms drain timeout: closing them",
          {
            listener: this.label,
            ms: this.binding.drainTimeout,
          },
        );
        this.#abortServers();
      }
      await this.#guard?.closeAll("listener stopped");
    })();
    return this.#stopping;
  }
}
