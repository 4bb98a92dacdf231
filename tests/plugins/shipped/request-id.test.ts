/**
 * The shipped request-id plugin through the real gateway: the id kept or
 * replaced, forwarded and echoed (also on routes without an upstream), tags
 * sent upstream and not forgeable, counters in /metrics, bad settings refused.
 */

import { assert, assertEquals, assertMatch, assertStringIncludes } from "../../helpers/assert.ts";
import { type Echo, echoUpstream, gatewayWith, metric } from "./shipped.ts";

const SETTINGS = {
  header: "x-correlation-id",
  tags: { env: "test", team: "edge" },
  derive: ["route", "method", "clientIp"],
};

const ROUTES = [
  { name: "api", match: { path: "/api/*" }, target: { upstream: "api" } },
  { name: "health", match: { path: "/health" }, target: { respond: { body: "ok" } } },
];

Deno.test("request-id: keeps a good id, replaces a bad one, forwards, echoes, tags and counts", async () => {
  await using upstream = echoUpstream();
  const { gateway, url } = await gatewayWith(["request-id"], upstream.url, {
    plugins: { global: ["request-id"], settings: { "request-id": SETTINGS } },
    routes: ROUTES,
  });
  await using _gateway = gateway;

  const kept = await fetch(`${url}/api/orders`, {
    headers: { "x-correlation-id": "trace:abc-123", "x-gateway-tags": "admin=true" },
  });
  const keptEcho = await kept.json() as Echo;
  assertEquals(kept.headers.get("x-correlation-id"), "trace:abc-123");
  assertEquals(keptEcho.headers["x-correlation-id"], "trace:abc-123");
  assertEquals(
    keptEcho.headers["x-gateway-tags"],
    "env=test,team=edge,route=api,method=GET,clientIp=127.0.0.1",
    "the client's own tags header is replaced",
  );

  const replaced = await fetch(`${url}/api/orders`, {
    method: "POST",
    headers: { "x-correlation-id": "not ok; has spaces" },
    body: "{}",
  });
  const replacedEcho = await replaced.json() as Echo;
  const id = replaced.headers.get("x-correlation-id")!;
  assertMatch(id, /^[0-9a-f-]{36}$/, "a malformed id is replaced by the gateway's");
  assertEquals(replacedEcho.headers["x-correlation-id"], id);
  assertEquals(replaced.headers.get("x-request-id"), id, "the same id as the gateway's own");
  assertStringIncludes(replacedEcho.headers["x-gateway-tags"], "method=POST");

  const health = await fetch(`${url}/health`, { headers: { "x-correlation-id": "probe-1" } });
  assertEquals(await health.text(), "ok");
  assertEquals(health.headers.get("x-correlation-id"), "probe-1", "echoed without an upstream");

  assertEquals(upstream.seen.length, 2);
  const sample = (name: string, labels: string) =>
    metric(gateway, `gateway_plugin_${name}{plugin="request-id",${labels}}`);
  assertEquals(await sample("access_requests_total", 'route="api"'), 2);
  assertEquals(await sample("access_requests_total", 'route="health"'), 1);
  assertEquals(await sample("access_tags_total", 'route="api",tag="env=test"'), 2);
  assertEquals(await sample("access_tags_total", 'route="api",tag="team=edge"'), 2);
});

Deno.test("request-id: without settings it uses x-request-id and tags the route", async () => {
  await using upstream = echoUpstream();
  const { gateway, url } = await gatewayWith(["request-id"], upstream.url, {
    plugins: { global: ["request-id"] },
    routes: ROUTES,
  });
  await using _gateway = gateway;
  const res = await fetch(`${url}/api/x`, { headers: { "x-request-id": "given-1" } });
  const echo = await res.json() as Echo;
  assertEquals(res.headers.get("x-request-id"), "given-1");
  assertEquals(echo.headers["x-request-id"], "given-1");
  assertEquals(echo.headers["x-gateway-tags"], "route=api");
});

Deno.test("request-id: bad settings stop the gateway from starting, naming the setting", async () => {
  await using upstream = echoUpstream();
  const { gateway } = await gatewayWith(["request-id"], upstream.url, {
    plugins: {
      global: ["request-id"],
      settings: { "request-id": { derive: ["route", "userAgent"], tags: { env: "a b" } } },
    },
    routes: ROUTES,
  }, { noWait: true });
  await using _gateway = gateway;
  const status = await gateway.exited();
  assert(!status.success, "the gateway must refuse the config");
  assertStringIncludes(gateway.output, "plugins.settings.request-id");
  assertStringIncludes(gateway.output, "/derive/1");
  assertStringIncludes(gateway.output, "/tags/env");
});
