/**
 * The listener handler built directly: routes filtered by listener, the 404
 * and 500 JSON errors, request ids, client address and per-route metrics.
 * No sockets: the handler is called with a fake `Deno.ServeHandlerInfo`.
 */

import { assert, assertEquals, assertMatch, assertStringIncludes } from "../helpers/assert.ts";
import { buildListenerApp, type ServeHandler } from "../../src/router/app.ts";
import { buildRouteTable } from "../../src/router/table.ts";
import type { CompiledRoute } from "../../src/router/route.ts";
import { GatewayConfig } from "../../src/sections.ts";
import { HttpMetrics } from "../../src/observability/http_metrics.ts";
import { MetricsRegistry } from "../../src/observability/metrics.ts";
import type { UpstreamClient } from "../../src/upstreams/client.ts";
import { TrustedProxies } from "../../src/security/trusted_proxies.ts";

const info: Deno.ServeHandlerInfo = {
  remoteAddr: { transport: "tcp", hostname: "127.0.0.1", port: 1 },
  completed: Promise.resolve(),
};

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;

const unusedClient: UpstreamClient = {
  request() {
    throw new Error("the upstream client must not be used by respond routes");
  },
  close() {},
};

const say = (body: string) => ({ respond: { body } });

/** Routes from a config of respond targets, with the registry they record into. */
function build(routes: unknown[]) {
  const config = GatewayConfig.parse({
    listeners: {
      web: { type: "http", port: 0 },
      internal: { type: "http", port: 0 },
    },
    routes,
  });
  const registry = new MetricsRegistry();
  const metrics = new HttpMetrics(registry);
  const table = buildRouteTable(config, { upstreams: new Map(), client: unusedClient, metrics });
  const app = (listener: string, list: CompiledRoute[] = table, trusted: string[] = []) =>
    buildListenerApp({
      listener,
      routes: list,
      metrics,
      accessLog: false,
      trustedProxies: new TrustedProxies(trusted),
    });
  return { table, registry, app };
}

async function call(handler: ServeHandler, path: string, init: RequestInit = {}) {
  const res = await handler(new Request(`http://gateway.test${path}`, init), info);
  return { res, text: await res.text() };
}

Deno.test("a route limited to other listeners is not served on this one", async () => {
  const { app } = build([
    {
      name: "internal-only",
      listeners: ["internal"],
      match: { path: "/internal" },
      target: say("internal"),
    },
    { name: "everywhere", match: { path: "/shared" }, target: say("shared") },
  ]);
  const web = app("web");
  const internal = app("internal");
  assertEquals((await call(internal, "/internal")).text, "internal");
  assertEquals((await call(web, "/internal")).res.status, 404);
  assertEquals((await call(web, "/shared")).text, "shared");
  assertEquals((await call(internal, "/shared")).text, "shared");
});

Deno.test("routes run in priority and specificity order, whatever the config order", async () => {
  const { app } = build([
    { name: "catch-all", target: say("catch-all") },
    { name: "user", match: { path: "/users/:id" }, target: say("user") },
    { name: "me", match: { path: "/users/me" }, target: say("me") },
    {
      name: "tenant",
      match: { path: "/users/:id", headers: { "x-tenant": "acme" } },
      target: say("tenant"),
    },
  ]);
  const web = app("web");
  assertEquals((await call(web, "/users/me")).text, "me");
  assertEquals((await call(web, "/users/7")).text, "user");
  assertEquals((await call(web, "/users/7", { headers: { "x-tenant": "acme" } })).text, "tenant");
  assertEquals((await call(web, "/other")).text, "catch-all");
});

Deno.test("no route: 404 JSON with no_route, the method and path, and a request id", async () => {
  const { app } = build([{ match: { path: "/only", methods: ["GET"] }, target: say("x") }]);
  const web = app("web");
  const { res, text } = await call(web, "/missing?q=1", { method: "POST" });
  assertEquals(res.status, 404);
  assertStringIncludes(res.headers.get("content-type") ?? "", "application/json");
  const body = JSON.parse(text);
  assertEquals(body.error.status, 404);
  assertEquals(body.error.code, "no_route");
  assertEquals(body.error.message, "no route for POST /missing");
  assertMatch(body.error.requestId, UUID);
  assertEquals(res.headers.get("x-request-id"), body.error.requestId);

  const wrongMethod = await call(web, "/only", { method: "DELETE" });
  assertEquals(wrongMethod.res.status, 404);
  assertEquals(JSON.parse(wrongMethod.text).error.code, "no_route");
});

Deno.test("a well-formed X-Request-Id is kept; a malformed one is replaced", async () => {
  const web = build([]).app("web");
  const idOf = async (given: string) => {
    const { res, text } = await call(web, "/", { headers: { "x-request-id": given } });
    const id = JSON.parse(text).error.requestId;
    assertEquals(res.headers.get("x-request-id"), id);
    return id;
  };
  assertEquals(await idOf("abc-123"), "abc-123");
  assertEquals(await idOf("trace:01.A_b-c"), "trace:01.A_b-c");
  const longest = "x".repeat(128);
  assertEquals(await idOf(longest), longest);
  for (const bad of ["has space", "x".repeat(200), "a/b", "<script>", "é"]) {
    const id = await idOf(bad);
    assertMatch(id, UUID, JSON.stringify(bad));
  }
  const first = await idOf("not ok");
  const second = await idOf("not ok");
  assert(first !== second, "each replacement is a fresh id");
});

Deno.test("requests are counted per listener, route and status; in-flight returns to 0", async () => {
  const { app, registry } = build([
    { name: "hello", match: { path: "/hello" }, target: say("hi") },
    { name: "teapot", match: { path: "/tea" }, target: { respond: { status: 418 } } },
  ]);
  const web = app("web");
  for (let i = 0; i < 3; i++) assertEquals((await call(web, "/hello")).text, "hi");
  assertEquals((await call(web, "/tea")).res.status, 418);
  assertEquals((await call(web, "/nowhere")).res.status, 404);
  const text = registry.render();
  const lines = text.split("\n");
  const has = (line: string) => assert(lines.includes(line), `no line ${line} in:\n${text}`);
  has('gateway_http_requests_total{listener="web",route="hello",status="200"} 3');
  has('gateway_http_requests_total{listener="web",route="teapot",status="418"} 1');
  has('gateway_http_requests_total{listener="web",route="-",status="404"} 1');
  has('gateway_http_request_duration_seconds_count{listener="web",route="hello"} 3');
  has('gateway_http_requests_in_flight{listener="web"} 0');
});

Deno.test("a target that throws answers 500 JSON and is counted under its route", async () => {
  const { table, app, registry } = build([
    { name: "sync", match: { path: "/sync" }, target: say("unused") },
    { name: "async", match: { path: "/async" }, target: say("unused") },
  ]);
  const failing = table.map((route): CompiledRoute => ({
    ...route,
    handle: route.name === "sync"
      ? () => {
        throw new Error("boom");
      }
      : () => Promise.reject(new Error("later boom")),
  }));
  const web = app("web", failing);
  for (const path of ["/sync", "/async"]) {
    const { res, text } = await call(web, path, { headers: { "x-request-id": "req-500" } });
    assertEquals(res.status, 500, path);
    assertEquals(JSON.parse(text), {
      error: {
        status: 500,
        code: "internal_error",
        message: "the gateway failed to handle this request",
        requestId: "req-500",
      },
    });
    assertEquals(res.headers.get("x-request-id"), "req-500");
  }
  const metrics = registry.render();
  assertStringIncludes(
    metrics,
    'gateway_http_requests_total{listener="web",route="sync",status="500"} 1',
  );
  assertStringIncludes(
    metrics,
    'gateway_http_requests_total{listener="web",route="async",status="500"} 1',
  );
  assertStringIncludes(metrics, 'gateway_http_requests_in_flight{listener="web"} 0');
});

Deno.test("the client address is the rightmost untrusted X-Forwarded-For hop of a trusted peer", async () => {
  const { table, app } = build([{ name: "ip", target: say("unused") }]);
  const echoIp = table.map((route): CompiledRoute => ({
    ...route,
    handle: (c) => new Response(c.env.clientIp),
  }));
  const forwarded = { headers: { "x-forwarded-for": "6.6.6.6, 203.0.113.7 , 10.0.0.1" } };
  assertEquals((await call(app("web", echoIp), "/", forwarded)).text, "127.0.0.1");
  const trusted = ["127.0.0.0/8", "10.0.0.0/8"];
  assertEquals((await call(app("web", echoIp, trusted), "/", forwarded)).text, "203.0.113.7");
  assertEquals((await call(app("web", echoIp, trusted), "/")).text, "127.0.0.1");
  assertEquals((await call(app("web", echoIp, ["10.0.0.0/8"]), "/", forwarded)).text, "127.0.0.1");
});
