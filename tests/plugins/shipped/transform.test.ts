/**
 * The shipped transform plugin through the real gateway: header set/remove
 * and JSON path set/remove on requests and responses, per-route rules, bodies
 * that are not JSON left alone, and bad paths refused at start.
 */

import { assert, assertEquals, assertStringIncludes } from "../../helpers/assert.ts";
import { type Echo, echoUpstream, gatewayWith } from "./shipped.ts";

const SETTINGS = {
  request: {
    headers: { remove: ["cookie"], set: { "x-source": "gateway" } },
    json: {
      remove: ["$.password", "$.items[1]"],
      set: { "$.meta.via": "gateway", "$['odd key'][0]": { deep: true } },
    },
  },
  response: {
    headers: { remove: ["x-internal"], set: { "x-transformed": "yes" } },
    json: { remove: ["$.secret"], set: { "$.served.by": "gw" } },
  },
  routes: { users: { response: { json: { set: { "$.route": "users" } } } } },
};

/** Echoes JSON with a secret and an internal header; `/text` answers text that looks like JSON. */
function upstreamAnswer(request: Request, echo: Echo): Response {
  const { pathname } = new URL(request.url);
  if (pathname.endsWith("/text")) {
    return new Response(`{"secret":"visible"}`, {
      headers: { "content-type": "text/plain", "x-internal": "1" },
    });
  }
  const type = pathname.endsWith("/vendor") ? "application/vnd.acme+json" : "application/json";
  return new Response(JSON.stringify({ echo, secret: "s3cret", keep: 1 }), {
    headers: { "content-type": type, "x-internal": "1" },
  });
}

const ROUTES = [
  {
    name: "users",
    match: { path: "/users/*" },
    plugins: ["transform"],
    target: { upstream: "api" },
  },
  { name: "api", match: { path: "/*" }, plugins: ["transform"], target: { upstream: "api" } },
];

Deno.test("transform: rewrites headers and JSON bodies both ways, per route", async () => {
  await using upstream = echoUpstream(upstreamAnswer);
  const { gateway, url } = await gatewayWith(["transform"], upstream.url, {
    plugins: { settings: { transform: SETTINGS } },
    routes: ROUTES,
  });
  await using _gateway = gateway;

  const res = await fetch(`${url}/orders`, {
    method: "POST",
    headers: { "content-type": "application/json; charset=utf-8", cookie: "session=1" },
    body: JSON.stringify({ user: "ann", password: "hunter2", items: ["a", "b", "c"] }),
  });
  assertEquals(res.status, 200);
  assertEquals(res.headers.get("x-transformed"), "yes");
  assertEquals(res.headers.get("x-internal"), null);
  const answer = await res.json();
  assertEquals(answer.secret, undefined, "response path removed");
  assertEquals(answer.served, { by: "gw" }, "response path set");
  assertEquals(answer.keep, 1);
  assertEquals(answer.route, undefined, "the users route's rule does not apply here");
  const echo = answer.echo as Echo;
  assertEquals(JSON.parse(echo.body), {
    user: "ann",
    items: ["a", "c"],
    meta: { via: "gateway" },
    "odd key": [{ deep: true }],
  });
  assertEquals(echo.headers.cookie, undefined);
  assertEquals(echo.headers["x-source"], "gateway");

  const users = await (await fetch(`${url}/users/1/vendor`)).json();
  assertEquals(users.route, "users", "route rules run after the top-level ones");
  assertEquals(users.served, { by: "gw" });
  assertEquals(users.secret, undefined, "application/*+json is JSON too");
});

Deno.test("transform: bodies that are not JSON, or do not parse, pass unchanged", async () => {
  await using upstream = echoUpstream(upstreamAnswer);
  const { gateway, url } = await gatewayWith(["transform"], upstream.url, {
    plugins: { settings: { transform: SETTINGS } },
    routes: ROUTES,
  });
  await using _gateway = gateway;

  const plain = `{"password":"hunter2"}`;
  const text = await fetch(`${url}/text`, {
    method: "POST",
    headers: { "content-type": "text/plain" },
    body: plain,
  });
  assertEquals(await text.text(), `{"secret":"visible"}`, "a text/plain response is untouched");
  assertEquals(text.headers.get("x-transformed"), "yes", "headers are still transformed");
  assertEquals(upstream.seen.at(-1)!.body, plain, "a text/plain request is untouched");
  assertEquals(upstream.seen.at(-1)!.headers["x-source"], "gateway");

  const broken = `{"password": "hunter2"`;
  const res = await fetch(`${url}/orders`, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: broken,
  });
  assertEquals(res.status, 200);
  await res.body?.cancel();
  assertEquals(upstream.seen.at(-1)!.body, broken, "JSON that does not parse goes on as it is");
});

Deno.test("transform: bad paths and headers are refused at start with their place", async () => {
  await using upstream = echoUpstream();
  const { gateway } = await gatewayWith(["transform"], upstream.url, {
    plugins: {
      settings: {
        transform: {
          request: { json: { set: { "a.b": 1 } }, headers: { set: { "content-length": "1" } } },
          routes: { users: { response: { json: { remove: ["$.items[*]"] } } } },
        },
      },
    },
    routes: ROUTES,
  }, { noWait: true });
  await using _gateway = gateway;
  const status = await gateway.exited();
  assert(!status.success, "the gateway must refuse the config");
  assertStringIncludes(
    gateway.output,
    `plugins.settings.transform: request.headers.set["content-length"]: the gateway sets this header itself`,
  );
  assertStringIncludes(
    gateway.output,
    `request.json.set["a.b"]: the path "a.b" must start with "$"`,
  );
  assertStringIncludes(
    gateway.output,
    `routes.users.response.json.remove[0]: the path "$.items[*]" has unexpected "[*]" at offset 7`,
  );
});
