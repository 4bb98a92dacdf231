/**
 * The baseline {@link UpstreamClient}: Deno's `fetch` over one
 * `Deno.createHttpClient` connection pool.
 *
 * What `fetch` does that a proxy must undo or live with:
 * - It decompresses gzip and br response bodies unless the request's
 *   `Accept-Encoding` is exactly `identity`, yet keeps the
 *   `Content-Encoding` and `Content-Length` headers of the compressed body.
 *   This client therefore always asks for `identity`, so bodies pass through
 *   byte for byte; the price is that upstreams send uncompressed bodies.
 * - It sends a streamed body chunked, dropping `Content-Length`.
 * - It adds `Accept`, `Accept-Language` and `User-Agent` when absent.
 * - It goes through `HTTP_PROXY`/`HTTPS_PROXY` from the environment (even to
 *   loopback targets) unless `NO_PROXY` exempts the target.
 * - It cannot tell when the connection is established, so connect and
 *   response timeouts form one deadline (their sum), reported as
 *   `response-timeout` with `requestSent` true: a timeout is never taken as
 *   proof that the request was not sent. The deadline also covers streaming
 *   the request body up.
 *
 * @module
 */

import { type UpstreamClient, UpstreamError, type UpstreamRequest } from "./client.ts";

/**
 * Creates a fetch-based upstream client with a keep-alive pool.
 *
 * @example
 * ```ts
 * import { createFetchClient } from "./fetch_client.ts";
 * await using server = Deno.serve(
 *   { port: 0, hostname: "127.0.0.1", onListen() {} },
 *   () => new Response("hello"),
 * );
 * const client = createFetchClient();
 * const response = await client.request({
 *   url: new URL(`http://127.0.0.1:${server.addr.port}/`),
 *   method: "GET",
 *   headers: new Headers({ host: `127.0.0.1:${server.addr.port}` }),
 *   body: null,
 *   connectTimeout: 1000,
 *   responseTimeout: 5000,
 * });
 * await response.text(); // "hello"
 * client.close();
 * ```
 */
export function createFetchClient(): UpstreamClient {
  const pool = Deno.createHttpClient({ allowHost: true });
  return {
    async request(request: UpstreamRequest): Promise<Response> {
      const deadline = new AbortController();
      const timer = setTimeout(
        () => deadline.abort(),
        request.connectTimeout + request.responseTimeout,
      );
      request.headers.set("accept-encoding", "identity");
      try {
        const init: RequestInit & { client: Deno.HttpClient; duplex: "half" } = {
          method: request.method,
          headers: request.headers,
          body: request.body,
          client: pool,
          redirect: "manual",
          signal: request.signal
            ? AbortSignal.any([request.signal, deadline.signal])
            : deadline.signal,
          duplex: "half",
        };
        return await fetch(request.url, init);
      } catch (error) {
        if (request.signal?.aborted) {
          throw new UpstreamError("aborted", "the client went away", true, { cause: error });
        }
        if (deadline.signal.aborted) {
          throw new UpstreamError(
            "response-timeout",
            `no response headers within ${request.connectTimeout + request.responseTimeout} ms`,
            true,
            { cause: error },
          );
        }
        const detail = error instanceof Error && error.cause instanceof Error
          ? error.cause.message
          : String(error);
        if (detail.includes("(Connect)")) {
          throw new UpstreamError("connect", detail, false, { cause: error });
        }
        throw new UpstreamError("protocol", detail, true, { cause: error });
      } finally {
        clearTimeout(timer);
      }
    },
    close(): void {
      pool.close();
    },
  };
}
