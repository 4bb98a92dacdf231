/**
 * Route ordering and the host/header conditions that Hono's path router
 * cannot express, exercised on a tiny Hono app with the gateway's env.
 */

import { Hono } from "hono";
import { assert, assertEquals } from "../helpers/assert.ts";
import { compileConditions, routeOrder, sortRoutes } from "../../src/router/route.ts";
import type { GatewayContext, GatewayEnv, RequestState } from "../../src/pipeline/stage.ts";
import type { RouteConfig } from "../../src/router/config.ts";

type Match = RouteConfig["match"];

/** Runs `accepts` on a request to `url` with `headers`, through a Hono app. */
async function accepted(
  accepts: (c: GatewayContext) => boolean,
  headers: Record<string, string> = {},
  url = "http://gateway.test/any/path",
): Promise<boolean> {
  const app = new Hono<GatewayEnv>();
  app.all("*", (c) => c.text(String(accepts(c))));
  const state: RequestState = {
    route: { name: "-", listener: "test", accessLog: true },
    requestId: "test-request",
    clientIp: "127.0.0.1",
    peerAddress: "127.0.0.1",
    peerTrusted: false,
  };
  const res = await app.fetch(new Request(url, { headers }), state);
  assertEquals(res.status, 200);
  const text = await res.text();
  assert(text === "true" || text === "false", text);
  return text === "true";
}

/** Route stand-ins with a name and the order key of `priority` and `match`. */
function routes(...specs: [string, number, Match][]) {
  return specs.map(([name, priority, match]) => ({ name, order: routeOrder(priority, match) }));
}

const names = (list: { name: string }[]) => list.map((r) => r.name);

Deno.test("routeOrder: [priority, literal segments, no wildcard, params, conditions, length]", () => {
  assertEquals(routeOrder(0, { path: "/api/users" }), [0, 2, 1, 0, 0, 10]);
  assertEquals(routeOrder(5, { path: "/api/*" }), [5, 1, 0, 0, 0, 6]);
  assertEquals(routeOrder(0, { path: "/api/users/:id" }), [0, 2, 1, 1, 0, 14]);
  assertEquals(routeOrder(-1, { path: "/*" }), [-1, 0, 0, 0, 0, 2]);
  assertEquals(routeOrder(0, { path: "/" }), [0, 0, 1, 0, 0, 1]);
  assertEquals(
    routeOrder(0, {
      path: "/x",
      host: "example.com",
      headers: { "x-a": "1", "x-b": "*" },
      methods: ["GET"],
    }),
    [0, 1, 1, 0, 4, 2],
  );
});

Deno.test("sortRoutes: explicit priority beats specificity, negative priority goes last", () => {
  const sorted = sortRoutes(routes(
    ["specific", 0, { path: "/api/users/me" }],
    ["last", -1, { path: "/api/users/me/exact" }],
    ["forced", 10, { path: "/*" }],
  ));
  assertEquals(names(sorted), ["forced", "specific", "last"]);
});

Deno.test("sortRoutes: more literal segments first, then params over wildcard", () => {
  const sorted = sortRoutes(routes(
    ["catch-all", 0, { path: "/*" }],
    ["api-any", 0, { path: "/api/*" }],
    ["user", 0, { path: "/api/users/:id" }],
    ["me", 0, { path: "/api/users/me" }],
    ["users-any", 0, { path: "/api/users/*" }],
  ));
  assertEquals(names(sorted), ["me", "user", "users-any", "api-any", "catch-all"]);
  assertEquals(
    names(sortRoutes(routes(
      ["wild", 0, { path: "/files/*" }],
      ["param", 0, { path: "/files/:name" }],
    ))),
    ["param", "wild"],
  );
});

Deno.test("sortRoutes: with the same path, routes with more conditions go first", () => {
  const sorted = sortRoutes(routes(
    ["plain", 0, { path: "/items" }],
    ["method", 0, { path: "/items", methods: ["POST"] }],
    ["host+header", 0, { path: "/items", host: "*.example.com", headers: { "x-t": "a" } }],
  ));
  assertEquals(names(sorted), ["host+header", "method", "plain"]);
});

Deno.test("sortRoutes: stable for equal keys, and leaves its input alone", () => {
  const input = routes(
    ["first", 0, { path: "/a/*" }],
    ["second", 0, { path: "/b/*" }],
    ["top", 1, { path: "/*" }],
    ["third", 0, { path: "/c/*" }],
  );
  const before = names(input);
  assertEquals(names(sortRoutes(input)), ["top", "first", "second", "third"]);
  assertEquals(names(input), before);
});

Deno.test("compileConditions: no host or headers accepts everything", async () => {
  const accepts = compileConditions({ path: "/*" });
  assert(await accepted(accepts));
  assert(await accepted(accepts, { host: "anything.example" }));
});

Deno.test("compileConditions: *.example.com takes subdomains, not the apex or look-alikes", async () => {
  const accepts = compileConditions({ path: "/*", host: "*.example.com" });
  assert(await accepted(accepts, { host: "shop.example.com" }));
  assert(await accepted(accepts, { host: "a.b.example.com" }));
  assert(!await accepted(accepts, { host: "example.com" }), "apex");
  assert(!await accepted(accepts, { host: ".example.com" }), "empty label");
  assert(!await accepted(accepts, { host: "badexample.com" }), "suffix without the dot");
  assert(!await accepted(accepts, { host: "shop.example.com.evil.org" }));
  assert(!await accepted(accepts), "no Host header");
});

Deno.test("compileConditions: host ignores the port and letter case", async () => {
  const wildcard = compileConditions({ path: "/*", host: "*.Example.COM" });
  assert(await accepted(wildcard, { host: "SHOP.example.com:8443" }));
  const exact = compileConditions({ path: "/*", host: "example.com" });
  assert(await accepted(exact, { host: "example.com:80" }));
  assert(await accepted(exact, { host: "EXAMPLE.com" }));
  assert(!await accepted(exact, { host: "www.example.com" }));
  assert(!await accepted(exact, { host: "example.org:80" }));
  const ipv6 = compileConditions({ path: "/*", host: "[::1]" });
  assert(await accepted(ipv6, { host: "[::1]:8080" }));
});

Deno.test("compileConditions: headers match exact values, '*' only needs presence", async () => {
  const exact = compileConditions({ path: "/*", headers: { "X-Tenant": "acme" } });
  assert(await accepted(exact, { "x-tenant": "acme" }), "header names are case-insensitive");
  assert(!await accepted(exact, { "x-tenant": "ACME" }), "values are exact");
  assert(!await accepted(exact, { "x-tenant": "acme2" }));
  assert(!await accepted(exact), "absent");

  const present = compileConditions({ path: "/*", headers: { "x-debug": "*" } });
  assert(await accepted(present, { "x-debug": "1" }));
  assert(await accepted(present, { "X-Debug": "" }), "an empty value is present");
  assert(!await accepted(present, { "x-debugger": "1" }));
});

Deno.test("compileConditions: every condition must hold", async () => {
  const accepts = compileConditions({
    path: "/*",
    host: "*.example.com",
    headers: { "x-tenant": "acme", "x-debug": "*" },
  });
  const all = { host: "a.example.com", "x-tenant": "acme", "x-debug": "1" };
  assert(await accepted(accepts, all));
  assert(!await accepted(accepts, { ...all, host: "example.com" }));
  assert(!await accepted(accepts, { ...all, "x-tenant": "other" }));
  const { "x-debug": _, ...withoutDebug } = all;
  assert(!await accepted(accepts, withoutDebug));
});
