/**
 * A one-route Hono app on a loopback port, for testing stages and targets
 * over real HTTP. By default the client address is taken from the
 * `x-test-client-ip` request header (else `127.0.0.1`) and the request id is
 * `test-request`.
 *
 * @module
 */

import { Hono } from "hono";
import type { GatewayEnv, RequestState, Target } from "../../src/pipeline/stage.ts";

/** Where a test server listens; `await using` shuts it down. */
export interface TestServer extends AsyncDisposable {
  /** `http://127.0.0.1:<port>`, without a trailing slash. */
  url: string;
  port: number;
}

/** Where the handler is mounted and what the request state holds. */
export interface TestServerOptions {
  /** Hono path pattern (default `*`), for targets that read route params. */
  path?: string;
  /** Request-state fields to fix instead of the defaults. */
  state?: Partial<Pick<RequestState, "clientIp" | "peerAddress" | "peerTrusted" | "requestId">>;
  /** Route name in the request state (default `test-route`). */
  route?: string;
}

/**
 * Serves `handler` (usually `chain(stages, target)`) on a loopback port.
 *
 * @example
 * ```ts
 * import { serveTarget } from "./test_server.ts";
 * await using server = serveTarget(() => new Response("ok"));
 * await (await fetch(server.url)).text(); // "ok"
 * ```
 */
export function serveTarget(handler: Target, options: TestServerOptions = {}): TestServer {
  const app = new Hono<GatewayEnv>();
  app.all(options.path ?? "*", (c) => handler(c));
  const route = { name: options.route ?? "test-route", listener: "test" };
  const server = Deno.serve(
    { hostname: "127.0.0.1", port: 0, onListen() {} },
    (request) => {
      const address = request.headers.get("x-test-client-ip") ?? "127.0.0.1";
      return app.fetch(request, {
        clientIp: address,
        peerAddress: address,
        peerTrusted: false,
        requestId: "test-request",
        route,
        ...options.state,
      });
    },
  );
  return {
    url: `http://127.0.0.1:${server.addr.port}`,
    port: server.addr.port,
    [Symbol.asyncDispose]: () => server.shutdown(),
  };
}

/**
 * A TCP server on 127.0.0.1 that closes every connection unanswered (a
 * transport failure for an HTTP client), counting them.
 *
 * @example
 * ```ts
 * import { serveDropper } from "./test_server.ts";
 * await using dropper = serveDropper();
 * await fetch(dropper.url).catch(() => {});
 * dropper.seen.connections; // 1
 * ```
 */
export function serveDropper(): AsyncDisposable & { url: string; seen: { connections: number } } {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const seen = { connections: 0 };
  const accepting = (async () => {
    for await (const conn of listener) {
      seen.connections++;
      conn.close();
    }
  })();
  return {
    url: `http://127.0.0.1:${listener.addr.port}`,
    seen,
    async [Symbol.asyncDispose]() {
      listener.close();
      await accepting;
    },
  };
}
