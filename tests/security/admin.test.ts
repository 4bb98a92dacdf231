/**
 * The admin API's doors (the hardening issue's "Tests and checks"), through
 * the real gateway process: every endpoint but `/healthz` and `/readyz` needs
 * `Authorization: Bearer <token>`; a token in the query string, a cookie or
 * Basic credentials does not count; and a request from a web page of another
 * origin is refused even with the right token, while no answer carries CORS
 * headers that would let such a page read it.
 */

import { assert, assertEquals, assertStringIncludes } from "../helpers/assert.ts";
import { ADMIN_TOKEN, startGateway } from "../helpers/gateway.ts";

const ENDPOINTS: [string, string][] = [
  ["GET", "/status"],
  ["GET", "/config"],
  ["GET", "/metrics"],
  ["GET", "/connections"],
  ["GET", "/errors"],
  ["GET", "/errors/some-request-id"],
  ["POST", "/reload"],
  ["DELETE", "/connections/some-id"],
  ["POST", "/stop"],
  ["GET", "/no-such-endpoint"],
];

const CONFIG = {
  listeners: { web: { type: "http", host: "127.0.0.1", port: 0 } },
  routes: [{ target: { respond: { body: "hi" } } }],
};

/** An admin request with exactly the headers given (no token unless in them). */
async function call(
  base: string,
  method: string,
  path: string,
  headers: Record<string, string> = {},
): Promise<Response> {
  const response = await fetch(`${base}${path}`, { method, headers });
  await response.body?.cancel();
  return response;
}

Deno.test("admin endpoints refuse requests without a bearer token in the header", async () => {
  await using gw = await startGateway(CONFIG);
  const base = gw.adminUrl;
  const ways: [string, string, Record<string, string>][] = [
    ["no credentials", "", {}],
    ["token in the query", `?token=${ADMIN_TOKEN}`, {}],
    ["access_token in the query", `?access_token=${ADMIN_TOKEN}`, {}],
    ["token in a cookie", "", { cookie: `token=${ADMIN_TOKEN}` }],
    ["Basic credentials", "", { authorization: `Basic ${btoa(`admin:${ADMIN_TOKEN}`)}` }],
    ["the bare token", "", { authorization: ADMIN_TOKEN }],
    ["an empty bearer", "", { authorization: "Bearer " }],
  ];
  for (const [method, path] of ENDPOINTS) {
    for (const [way, query, headers] of ways) {
      const response = await call(base, method, `${path}${query}`, headers);
      assertEquals(response.status, 401, `${method} ${path} with ${way}`);
      assertEquals(response.headers.get("www-authenticate"), 'Bearer realm="gateway-admin"');
    }
    const wrong = await call(base, method, path, { authorization: "Bearer not-the-token-at-all" });
    assertEquals(wrong.status, 403, `${method} ${path} with a wrong token`);
  }
  // Probes stay open, and the gateway did not stop on any of the refused POST /stop.
  assertEquals((await call(base, "GET", "/healthz")).status, 200);
  assertEquals((await call(base, "GET", "/readyz")).status, 200);
  const status = await call(base, "GET", "/status", { authorization: `Bearer ${ADMIN_TOKEN}` });
  assertEquals(status.status, 200);
});

Deno.test("admin endpoints refuse cross-origin requests, even with the right token", async () => {
  await using gw = await startGateway(CONFIG);
  const base = gw.adminUrl;
  const token = { authorization: `Bearer ${ADMIN_TOKEN}` };
  for (const origin of ["https://evil.example", "null", "http://127.0.0.1:1", "http://localhost"]) {
    for (const [method, path] of ENDPOINTS) {
      const response = await fetch(`${base}${path}`, { method, headers: { ...token, origin } });
      const body = await response.text();
      assertEquals(response.status, 403, `${method} ${path} from ${origin}`);
      assertStringIncludes(body, `"code":"cross_origin"`);
      assertEquals(response.headers.get("access-control-allow-origin"), null);
    }
    // A browser's preflight for the Authorization header gets no CORS grant.
    const preflight = await call(base, "OPTIONS", "/status", {
      origin,
      "access-control-request-method": "GET",
      "access-control-request-headers": "authorization",
    });
    assert(preflight.status >= 400, `preflight from ${origin}: ${preflight.status}`);
    assertEquals(preflight.headers.get("access-control-allow-origin"), null);
  }
  assertEquals((await call(base, "GET", "/readyz")).status, 200, "still running");
  // The admin API's own origin is not a cross-origin request.
  const same = await call(base, "GET", "/status", { ...token, origin: new URL(base).origin });
  assertEquals(same.status, 200);
  const plain = await call(base, "GET", "/status", token);
  assertEquals(plain.headers.get("access-control-allow-origin"), null);
});
