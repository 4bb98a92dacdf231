/**
 * Raw HTTP/1.1 exchanges for tests that must send bytes no client library
 * would (dot segments, bad Host headers, odd framing).
 *
 * @module
 */

/** What came back on the connection, up to its close. */
export interface RawAnswer {
  /** The status code of the first response (NaN when none came). */
  status: number;
  /** What follows the first response's head. */
  body: string;
  /** Everything received. */
  text: string;
}

/**
 * Writes `request` byte for byte (a whole request: its head ends in an empty
 * line) on a new connection to `127.0.0.1:port` and reads until the peer
 * closes (or resets) it.
 *
 * @example
 * ```ts
 * import { rawExchange } from "./raw_http.ts";
 * const answer = await rawExchange(8080, "GET /x HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n");
 * console.log(answer.status);
 * ```
 */
export async function rawExchange(port: number, request: string): Promise<RawAnswer> {
  const conn = await Deno.connect({ hostname: "127.0.0.1", port });
  const decoder = new TextDecoder();
  let text = "";
  try {
    await conn.write(new TextEncoder().encode(request));
    const buffer = new Uint8Array(64 * 1024);
    for (let n = await conn.read(buffer); n !== null; n = await conn.read(buffer)) {
      text += decoder.decode(buffer.subarray(0, n), { stream: true });
    }
  } catch (error) {
    if (!(error instanceof Deno.errors.ConnectionReset)) throw error;
  } finally {
    try {
      conn.close();
    } catch { /* closed by the peer */ }
  }
  const bodyStart = text.indexOf("\r\n\r\n");
  return {
    status: Number(text.slice(9, 12)),
    body: bodyStart < 0 ? "" : text.slice(bodyStart + 4),
    text,
  };
}

/**
 * `GET target` sent byte for byte (nothing normalises the path on the way),
 * with `Host: host` and `Connection: close`.
 *
 * @example
 * ```ts
 * import { rawGet } from "./raw_http.ts";
 * const { status } = await rawGet(8080, "/api/./admin");
 * ```
 */
export function rawGet(
  port: number,
  target: string,
  host = `127.0.0.1:${port}`,
): Promise<RawAnswer> {
  return rawExchange(port, `GET ${target} HTTP/1.1\r\nHost: ${host}\r\nConnection: close\r\n\r\n`);
}
