/**
 * Forwarding and hop-by-hop headers through the real gateway process: a
 * client cannot choose its address (`X-Forwarded-For`, `Forwarded`,
 * `X-Real-IP`) unless its socket peer is a trusted proxy, and cannot make the
 * proxy strip a header a plugin added by naming it in `Connection`.
 */

import { assert, assertEquals, assertStringIncludes } from "../helpers/assert.ts";
import { echoUpstream, gatewayWith } from "../plugins/shipped/shipped.ts";
import { rawExchange } from "../helpers/raw_http.ts";

const SPOOFED = {
  "x-forwarded-for": "6.6.6.6",
  "forwarded": "for=6.6.6.6",
  "x-real-ip": "6.6.6.6",
};

/** A route with a per-client rate limit of one request a minute. */
function limitedRoute(trustedProxies: string[]) {
  return {
    security: { trustedProxies },
    routes: [{
      name: "api",
      rateLimit: { perClient: { rate: 1, per: 60_000 } },
      target: { upstream: "api" },
    }],
  };
}

Deno.test("without trusted proxies, client-sent forwarding headers are replaced", async () => {
  await using upstream = echoUpstream();
  const { gateway, url } = await gatewayWith([], upstream.url, limitedRoute([]));
  await using _gateway = gateway;

  const first = await fetch(`${url}/`, { headers: SPOOFED });
  const seen = (await first.json()).headers;
  assertEquals(seen["x-forwarded-for"], "127.0.0.1");
  assertEquals(seen["forwarded"], "for=127.0.0.1");
  assertEquals(seen["x-real-ip"], "127.0.0.1");

  // Another spoofed address is still the same client to the rate limit.
  const second = await fetch(`${url}/`, { headers: { "x-forwarded-for": "7.7.7.7" } });
  await second.body?.cancel();
  assertEquals(second.status, 429);
});

Deno.test("a trusted peer's X-Forwarded-For names the rightmost untrusted hop", async () => {
  await using upstream = echoUpstream();
  const { gateway, url } = await gatewayWith(
    [],
    upstream.url,
    limitedRoute(["127.0.0.0/8", "::1"]),
  );
  await using _gateway = gateway;

  // The client prepended 6.6.6.6; the trusted proxy (this test) appended 203.0.113.7.
  const forwarded = (client: string) => ({
    headers: { "x-forwarded-for": `6.6.6.6, ${client}`, "forwarded": `for=${client}` },
  });
  const first = await fetch(`${url}/`, forwarded("203.0.113.7"));
  const seen = (await first.json()).headers;
  assertEquals(seen["x-real-ip"], "203.0.113.7");
  assertEquals(seen["x-forwarded-for"], "6.6.6.6, 203.0.113.7, 127.0.0.1");
  assertEquals(seen["forwarded"], "for=203.0.113.7, for=127.0.0.1");

  const again = await fetch(`${url}/`, forwarded("203.0.113.7"));
  await again.body?.cancel();
  assertEquals(again.status, 429, "the same client is limited whatever it prepends");
  const other = await fetch(`${url}/`, forwarded("203.0.113.8"));
  await other.body?.cancel();
  assertEquals(other.status, 200, "another client behind the proxy has its own bucket");
});

Deno.test("the old boolean trustProxy is refused with what to write instead", async () => {
  await using upstream = echoUpstream();
  const { gateway } = await gatewayWith([], upstream.url, {
    security: { trustProxy: true },
    routes: [{ target: { upstream: "api" } }],
  }, { noWait: true });
  let timer: ReturnType<typeof setTimeout> | undefined;
  const running = new Promise<null>((resolve) => timer = setTimeout(() => resolve(null), 15_000));
  const status = await Promise.race([gateway.exited(), running]);
  clearTimeout(timer);
  await gateway.stop();
  assert(status !== null && !status.success, `the gateway started:\n${gateway.output}`);
  assertStringIncludes(gateway.output, "security.trustProxy");
  assertStringIncludes(gateway.output, "trustedProxies");
});

Deno.test("a client's Connection header cannot strip the header api-key adds", async () => {
  await using upstream = echoUpstream();
  const { gateway, url } = await gatewayWith(["api-key"], upstream.url, {
    plugins: {
      settings: {
        "api-key": { keys: { alice: "alice-key-0123456789" }, forwardName: "x-consumer" },
      },
    },
    routes: [{ name: "api", plugins: ["api-key"], target: { upstream: "api" } }],
  });
  await using _gateway = gateway;
  const { text: answer } = await rawExchange(
    Number(new URL(url).port),
    "GET / HTTP/1.1\r\nhost: gw.test\r\nx-api-key: alice-key-0123456789\r\n" +
      "x-trace: client\r\nconnection: close, x-consumer, x-trace\r\n\r\n",
  );
  assertStringIncludes(answer, "HTTP/1.1 200");
  const seen = upstream.seen.at(-1)!.headers;
  assertEquals(seen["x-consumer"], "alice", "the plugin's identity header reached the upstream");
  assertEquals(seen["x-trace"], undefined, "the client's own Connection-named header is dropped");
});
