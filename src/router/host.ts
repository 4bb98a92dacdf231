/**
 * The Host a request names, checked before routing: `Deno.serve` builds
 * `request.url` from the Host header unchecked (`Host: a b` gives
 * `http://a b/`), and a missing Host gets `localhost:<port>` instead.
 *
 * @module
 */

import { GatewayError } from "../errors.ts";

/** A DNS name or IPv4 address, or a bracketed IPv6 address, and an optional port. */
const HOST = /^(?:[A-Za-z0-9._~-]+|\[[0-9A-Fa-f:.]+\])(?::[0-9]{0,5})?$/;
/** What `Deno.serve` puts in the URL when the client named no host. */
const NO_HOST = /^localhost:[0-9]+$/;

/** The last host found valid: nearly every request repeats it. */
let lastValid = "";

function checkOne(host: string, where: string): void {
  if (host === lastValid) return;
  if (!HOST.test(host) || !URL.canParse(`http://${host}/`)) {
    throw new GatewayError(400, "bad_host", `invalid ${where} ${JSON.stringify(host)}`);
  }
  lastValid = host;
}

/**
 * Throws a 400 {@link GatewayError} (`bad_host`) unless the Host header
 * `header` (null when absent) and `authority`, that of `request.url` (built
 * from the Host header unchecked, or an absolute-form request target's; what
 * routing and the proxy use), are valid hosts with an optional port. The
 * header is checked too because `Host: a/b` turns into the URL `http://a/b/...`,
 * a valid authority and another path. A request naming no
 * host at all (HTTP/1.x without Host) is refused too, on plain HTTP only:
 * `Deno.serve` gives no way to tell that case from an HTTP/2 request (no Host
 * header, `:authority` in the URL) whose authority is literally
 * `localhost:<port>`, and HTTP/2 is what HTTPS clients speak (`tls` true).
 *
 * @example
 * ```ts
 * import { checkHost } from "./host.ts";
 * checkHost("example.com:8080", "example.com:8080", false); // valid: returns
 * try {
 *   checkHost("a b", "a b", false);
 * } catch (error) {
 *   console.log((error as Error).message); // invalid Host header "a b"
 * }
 * ```
 */
export function checkHost(header: string | null, authority: string, tls: boolean): void {
  if (header === null) {
    if (!tls && NO_HOST.test(authority)) {
      throw new GatewayError(400, "bad_host", "the request has no Host header");
    }
  } else {
    checkOne(header, "Host header");
  }
  if (authority !== header) checkOne(authority, "request authority");
}
