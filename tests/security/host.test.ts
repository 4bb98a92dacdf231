/**
 * Item 13 of the hardening issue: an invalid Host is refused with 400
 * `bad_host` before routing, and so is an HTTP/1.1 request without Host.
 * Raw HTTP/1.1 over `Deno.connect` (fetch would not send these), through the
 * real gateway process.
 */

import { assertEquals, assertStringIncludes } from "../helpers/assert.ts";
import { startGateway } from "../helpers/gateway.ts";
import { rawExchange } from "../helpers/raw_http.ts";

/** One raw request whose head is `head` (without its final CRLF), closed after it. */
const raw = (port: number, head: string) =>
  rawExchange(port, `${head}\r\nConnection: close\r\n\r\n`);

Deno.test("an invalid or missing Host is refused with 400 bad_host before any route", async () => {
  await using gw = await startGateway({
    listeners: { web: { type: "http", host: "127.0.0.1", port: 0 } },
    routes: [{ name: "all", target: { respond: { body: "routed" } } }],
  });
  const port = await gw.port("web");

  const good = await raw(port, "GET /x HTTP/1.1\r\nHost: example.com:8080");
  assertEquals([good.status, good.body], [200, "routed"]);
  assertEquals((await raw(port, "GET /x HTTP/1.1\r\nHost: [::1]:80")).status, 200);
  assertEquals((await raw(port, "GET /x HTTP/1.0")).status, 400, "HTTP/1.0 without Host");

  for (
    const host of ["a b", "[::1", "a/b", "a@b", "a?b", "a#b", "999.1.1.1", "h:99999", "a\tb"]
  ) {
    const { status, body } = await raw(port, `GET /x HTTP/1.1\r\nHost: ${host}`);
    assertEquals(status, 400, `Host ${JSON.stringify(host)}`);
    assertStringIncludes(body, `"code":"bad_host"`);
  }
  const missing = await raw(port, "GET /x HTTP/1.1");
  assertEquals(missing.status, 400, "HTTP/1.1 without Host");
  assertStringIncludes(missing.body, "no Host header");
  // Control characters never reach the gateway: Deno.serve refuses them itself.
  assertEquals((await raw(port, "GET /x HTTP/1.1\r\nHost: a\u0001b")).status, 400);
  // An absolute-form target names the authority checked and used.
  assertEquals((await raw(port, "GET http://good.test/x HTTP/1.1\r\nHost: good.test")).status, 200);
});
