/**
 * A one-route Hono app on a loopback port, for testing stages and targets
 * over real HTTP. The client address is taken from the `x-test-client-ip`
 * request header (default `127.0.0.1`); the request id is `test-request`.
 *
 * @module
 */

import { Hono } from "hono";
import type { GatewayEnv, Target } from "../../src/pipeline/stage.ts";

/** Where a test server listens; `await using` shuts it down. */
export interface TestServer extends AsyncDisposable {
  /** `http://127.0.0.1:<port>`, without a trailing slash. */
  url: string;
  port: number;
}

/**
 * Serves `handler` (usually `chain(stages, target)`) for every path and method.
 *
 * @example
 * ```ts
 * import { serveTarget } from "./test_server.ts";
 * await using server = serveTarget(() => new Response("ok"));
 * await (await fetch(server.url)).text(); // "ok"
 * ```
 */
export function serveTarget(handler: Target): TestServer {
  const app = new Hono<GatewayEnv>();
  app.all("*", (c) => handler(c));
  const server = Deno.serve(
    { hostname: "127.0.0.1", port: 0, onListen() {} },
    (request) =>
      app.fetch(request, {
        clientIp: request.headers.get("x-test-client-ip") ?? "127.0.0.1",
        peerAddress: request.headers.get("x-test-client-ip") ?? "127.0.0.1",
        requestId: "test-request",
        route: { name: "test-route", listener: "test" },
      }),
  );
  return {
    url: `http://127.0.0.1:${server.addr.port}`,
    port: server.addr.port,
    [Symbol.asyncDispose]: () => server.shutdown(),
  };
}
