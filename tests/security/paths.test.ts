/**
 * Item 1 of the hardening issue: dot segments, encoded dots and doubled
 * slashes must not route a request past the route that protects its
 * canonical path. Raw HTTP/1.1 over `Deno.connect`, because `fetch`
 * normalises the path before sending it; through the real gateway process,
 * with an upstream that records the raw path it receives.
 */

import { assertEquals } from "../helpers/assert.ts";
import { gatewayWith } from "../plugins/shipped/shipped.ts";
import { rawGet } from "../helpers/raw_http.ts";

/** An upstream recording the raw request path (Deno.serve does not normalise it). */
function rawPathUpstream() {
  const seen: string[] = [];
  const server = Deno.serve({ hostname: "127.0.0.1", port: 0, onListen() {} }, (request) => {
    const url = request.url;
    const path = url.slice(url.indexOf("/", url.indexOf("//") + 2));
    seen.push(path);
    return new Response(`upstream saw ${path}`);
  });
  return {
    seen,
    url: `http://127.0.0.1:${server.addr.port}`,
    [Symbol.asyncDispose]: () => server.shutdown(),
  };
}

const BYPASSES = [
  "/api/./admin/users",
  "/api/x/../admin/users",
  "/api/%2e/admin/users",
  "/api/%2E%2e/api/admin/users",
  "/api//admin/users",
  "/api/x/%2e%2e/admin/users",
  "/api/%61dmin/users",
  "/api/admin/./users",
];

Deno.test("dot segments and encodings cannot skip the api-key route guarding /api/admin/*", async () => {
  await using upstream = rawPathUpstream();
  const { gateway, url } = await gatewayWith(["api-key"], upstream.url, {
    plugins: { settings: { "api-key": { keys: { alice: "alice-key-0123456789" } } } },
    routes: [
      {
        name: "admin",
        match: { path: "/api/admin/*" },
        plugins: ["api-key"],
        target: { upstream: "api" },
      },
      { name: "public", match: { path: "/api/*" }, target: { upstream: "api" } },
    ],
  });
  await using _gateway = gateway;
  const port = Number(new URL(url).port);

  assertEquals((await rawGet(port, "/api/admin/users")).status, 401);
  for (const path of BYPASSES) {
    assertEquals((await rawGet(port, path)).status, 401, `${path} must meet the api-key route`);
  }
  assertEquals(upstream.seen, [], "no bypass reached the upstream");

  // The public route still works, and the upstream gets the canonical path it was routed by.
  assertEquals((await rawGet(port, "/api/x/./y/../%7Ez//w")).status, 200);
  assertEquals((await rawGet(port, "/api/a%2fb")).status, 200);
  assertEquals(upstream.seen, ["/api/x/~z/w", "/api/a%2Fb"]);
});

Deno.test("dot segments cannot skip a deny route; malformed paths are refused with 400", async () => {
  await using upstream = rawPathUpstream();
  const { gateway, url } = await gatewayWith([], upstream.url, {
    routes: [
      {
        name: "deny-admin",
        match: { path: "/api/admin/*" },
        target: { respond: { status: 403, body: "denied" } },
      },
      { name: "public", match: { path: "/api/*" }, target: { upstream: "api" } },
    ],
  });
  await using _gateway = gateway;
  const port = Number(new URL(url).port);

  for (const path of BYPASSES) {
    assertEquals((await rawGet(port, path)).status, 403, `${path} must meet the deny route`);
  }
  for (
    const path of [
      "/api/../..",
      "/api/../../admin/users",
      "/api\\admin\\users",
      "/api/%00/admin",
      "/api/%2/admin",
      "/api/%zz",
      "/api/\u00e9",
    ]
  ) {
    assertEquals((await rawGet(port, path)).status, 400, `${path} must be refused`);
  }
  assertEquals(upstream.seen, [], "nothing reached the upstream");
});
