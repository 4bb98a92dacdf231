/**
 * The contract between the reverse proxy and the HTTP client that talks to
 * upstream servers. The proxy prepares headers (hop-by-hop removed,
 * X-Forwarded-* added) and decides about retries; the client only moves one
 * request and reports failures precisely enough for those decisions.
 *
 * @module
 */

/** One request to one upstream server. */
export interface UpstreamRequest {
  /** Absolute URL on the chosen target: `http://127.0.0.1:9000/path?query`. */
  url: URL;
  method: string;
  /** Sent as given; the proxy has already prepared them. */
  headers: Headers;
  /** Streamed upstream as it arrives; null for no body. */
  body: ReadableStream<Uint8Array> | null;
  /** Milliseconds to establish the connection (TCP and TLS). */
  connectTimeout: number;
  /** Milliseconds from the request being sent until the response headers arrive. */
  responseTimeout: number;
  /** Aborted when the client goes away; the upstream request is then cancelled. */
  signal?: AbortSignal;
}

/** Why an upstream request failed. */
export type UpstreamErrorKind =
  | "connect" // refused, reset or unreachable before the request was sent
  | "connect-timeout"
  | "response-timeout"
  | "protocol" // the upstream answered something that is not HTTP, or closed mid-response
  | "aborted"; // the client went away

/** A failed upstream request. `requestSent` tells whether a retry could repeat side effects. */
export class UpstreamError extends Error {
  constructor(
    readonly kind: UpstreamErrorKind,
    message: string,
    readonly requestSent: boolean,
    options?: ErrorOptions,
  ) {
    super(message, options);
    this.name = "UpstreamError";
  }
}

/** Moves requests to upstream servers, keeping connections alive between them. */
export interface UpstreamClient {
  /**
   * Sends one request. Resolves with the upstream response as soon as its
   * headers arrive (the body streams); rejects with an {@link UpstreamError}.
   * The response's headers are mutable: the proxy edits them in place.
   */
  request(request: UpstreamRequest): Promise<Response>;
  /** Closes idle connections; in-flight requests finish. */
  close(): void;
}
