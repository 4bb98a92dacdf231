/**
 * An HTTP or HTTPS listener on `Deno.serve` whose handler can be swapped
 * while it serves: a config reload changes what the listener does without
 * closing its socket or any keep-alive connection.
 *
 * @module
 */

import { getLogger } from "@logtape/logtape";

/** Where and how a listener binds. */
export interface HttpBinding {
  host: string;
  port: number;
  /** PEM certificate chain and key; absent for plain HTTP. */
  tls?: { cert: string; key: string };
  /** Milliseconds in-flight requests may take to finish when the listener stops. */
  drainTimeout: number;
}

/** A listener that could not start, naming the listener and the address. */
export class ListenError extends Error {
  constructor(message: string, options?: ErrorOptions) {
    super(message, options);
    this.name = "ListenError";
  }
}

type Handler = (request: Request, info: Deno.ServeHandlerInfo) => Response | Promise<Response>;

const logger = getLogger(["gateway", "listener"]);

/**
 * An identity for a binding: two bindings with the same key can share one socket.
 *
 * @example
 * ```ts
 * import { bindingKey } from "./http.ts";
 * bindingKey({ host: "127.0.0.1", port: 8080, drainTimeout: 1000 }); // "http://127.0.0.1:8080"
 * ```
 */
export function bindingKey(binding: HttpBinding): string {
  const { host, port, tls } = binding;
  return tls ? `https://${host}:${port}\n${tls.cert}\n${tls.key}` : `http://${host}:${port}`;
}

/**
 * One bound HTTP(S) socket.
 *
 * @example
 * ```ts
 * import { HttpListener } from "./http.ts";
 * const listener = new HttpListener('listener "web"', { host: "127.0.0.1", port: 0, drainTimeout: 1000 });
 * listener.start(() => new Response("hello"));
 * console.log(listener.port);
 * await listener.stop();
 * ```
 */
export class HttpListener {
  readonly key: string;
  #handler: Handler = () => new Response(null, { status: 503 });
  #server?: Deno.HttpServer<Deno.NetAddr>;
  #stopping?: Promise<void>;

  constructor(readonly label: string, readonly binding: HttpBinding) {
    this.key = bindingKey(binding);
  }

  /** The bound port (useful when the config asked for port 0). */
  get port(): number {
    return this.#server?.addr.port ?? this.binding.port;
  }

  /** Binds the socket and starts serving with `handler`. Throws {@link ListenError}. */
  start(handler: Handler): void {
    this.#handler = handler;
    const { host, port, tls } = this.binding;
    const where = `${tls ? "https" : "http"}://${host}:${port}`;
    try {
      this.#server = Deno.serve({
        hostname: host,
        port,
        ...(tls ?? {}),
        onListen: () => {},
        onError: (error) => {
          logger.error("{listener}: unhandled error: {error}", {
            listener: this.label,
            error,
          });
          return new Response("internal error", { status: 500 });
        },
      }, (request, info) => this.#handler(request, info));
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
        `${this.label}: cannot listen on ${where}: ${(error as Error).message}`,
        { cause: error },
      );
    }
    logger.info("{listener} serving on {url}", {
      listener: this.label,
      url: `${tls ? "https" : "http"}://${host}:${this.port}`,
    });
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
      const server = this.#server;
      if (!server) return;
      let timer: ReturnType<typeof setTimeout> | undefined;
      const deadline = new Promise<"timeout">((resolve) => {
        timer = setTimeout(() => resolve("timeout"), this.binding.drainTimeout);
      });
      const outcome = await Promise.race([
        server.shutdown().then(() => "drained" as const),
        deadline,
      ]);
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
