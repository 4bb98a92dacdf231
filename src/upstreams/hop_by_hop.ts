/**
 * Hop-by-hop headers (RFC 9110, 7.6.1): the ones that never cross a proxy,
 * and the client's own `Connection`-named headers, which are removed where the
 * request enters the gateway, before plugins run, so that a client cannot
 * name a header a plugin adds (an identity header, say) and have the proxy
 * strip it.
 *
 * @module
 */

/** Connection-level headers that never cross a proxy, besides `proxy-*`. */
const HOP_BY_HOP = new Set([
  "connection",
  "keep-alive",
  "te",
  "trailer",
  "transfer-encoding",
  "upgrade",
]);

/**
 * Whether header `name` (lower case) stops at every hop: a hop-by-hop header
 * or `proxy-*`.
 *
 * @example
 * ```ts
 * import { isHopByHop } from "./hop_by_hop.ts";
 * console.assert(isHopByHop("keep-alive") && !isHopByHop("x-consumer"));
 * ```
 */
export function isHopByHop(name: string): boolean {
  return HOP_BY_HOP.has(name) || name.startsWith("proxy-");
}

/**
 * The names a `Connection` header value lists (lower case), or undefined when
 * there is none.
 *
 * @example
 * ```ts
 * import { connectionNamed } from "./hop_by_hop.ts";
 * console.assert(connectionNamed("close, X-Trace")?.has("x-trace"));
 * ```
 */
export function connectionNamed(connection: string | null): Set<string> | undefined {
  if (connection === null) return undefined;
  return new Set(connection.toLowerCase().split(",").map((token) => token.trim()));
}

/**
 * The client's request without the headers its `Connection` header names
 * (other than the standard hop-by-hop ones, which every target already
 * ignores and a WebSocket upgrade needs), and with those names taken out of
 * `Connection` too, so that applying it again (the proxy after the plugin
 * stage) removes nothing a plugin added. The same object when `Connection`
 * names nothing else.
 *
 * @example
 * ```ts
 * import { withoutConnectionNamed } from "./hop_by_hop.ts";
 * const request = new Request("http://gw/", {
 *   headers: { connection: "x-consumer", "x-consumer": "admin" },
 * });
 * console.assert(!withoutConnectionNamed(request).headers.has("x-consumer"));
 * ```
 */
export function withoutConnectionNamed(request: Request): Request {
  const named = connectionNamed(request.headers.get("connection"));
  if (named === undefined) return request;
  // `close` is an option of the connection, not a header name.
  const standard = (name: string) => name === "close" || isHopByHop(name);
  const dropped = [...named].filter((name) => name !== "" && !standard(name));
  if (dropped.length === 0) return request;
  const headers = new Headers(request.headers);
  for (const name of dropped) headers.delete(name);
  const kept = [...named].filter(standard);
  if (kept.length > 0) headers.set("connection", kept.join(", "));
  else headers.delete("connection");
  return new Request(request, { headers });
}
