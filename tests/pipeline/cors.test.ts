import { assert, assertEquals } from "../helpers/assert.ts";
import { CorsConfig } from "../../src/pipeline/config.ts";
import { createCorsStage } from "../../src/pipeline/cors.ts";
import { chain, type Target } from "../../src/pipeline/stage.ts";
import { serveTarget } from "../helpers/test_server.ts";

/** Serves `target` behind a CORS stage built from config as a user would write it. */
function serveWithCors(config: Record<string, unknown>, target: Target = () => new Response("ok")) {
  return serveTarget(chain([createCorsStage(CorsConfig.parse(config))], target));
}

function preflight(url: string, origin: string, headers: Record<string, string> = {}) {
  return fetch(url, {
    method: "OPTIONS",
    headers: { origin, "access-control-request-method": "PUT", ...headers },
  });
}

Deno.test("preflight from an allowed origin answers 204 without reaching the target", async () => {
  let targetCalls = 0;
  await using server = serveWithCors({
    origins: ["https://app.example.com"],
    methods: ["get", "put"],
    headers: ["content-type", "x-token"],
    credentials: true,
    maxAge: 600,
  }, () => {
    targetCalls += 1;
    return new Response("target");
  });
  const res = await preflight(server.url, "https://app.example.com");
  assertEquals(res.status, 204);
  assertEquals(await res.text(), "");
  const h = res.headers;
  assertEquals(h.get("access-control-allow-origin"), "https://app.example.com");
  assertEquals(h.get("access-control-allow-methods"), "GET, PUT");
  assertEquals(h.get("access-control-allow-headers"), "content-type, x-token");
  assertEquals(h.get("access-control-allow-credentials"), "true");
  assertEquals(h.get("access-control-max-age"), "600");
  assertEquals(h.get("vary"), "Origin");
  assertEquals(targetCalls, 0);
});

Deno.test("preflight from another origin answers 403", async () => {
  await using server = serveWithCors({ origins: ["https://app.example.com"] });
  const res = await preflight(server.url, "https://evil.example.net");
  assertEquals(res.status, 403);
  assertEquals(res.headers.get("access-control-allow-origin"), null);
  const body = await res.json();
  assertEquals([body.error.code, body.error.requestId], ["cors_origin_denied", "test-request"]);
});

Deno.test("preflight without configured methods and headers allows what it asks for", async () => {
  await using server = serveWithCors({});
  const res = await preflight(server.url, "https://any.example", {
    "access-control-request-headers": "content-type, x-trace",
  });
  assertEquals(res.status, 204);
  assertEquals(res.headers.get("access-control-allow-origin"), "*");
  assertEquals(res.headers.get("access-control-allow-methods"), "PUT");
  assertEquals(res.headers.get("access-control-allow-headers"), "content-type, x-trace");
  assertEquals(res.headers.get("access-control-allow-credentials"), null);
  assertEquals(res.headers.get("access-control-max-age"), null);
  assertEquals(res.headers.get("vary"), null);
});

Deno.test("OPTIONS without Access-Control-Request-Method is passed to the target", async () => {
  await using server = serveWithCors({}, (c) => new Response(`target ${c.req.method}`));
  const res = await fetch(server.url, { method: "OPTIONS", headers: { origin: "https://a.test" } });
  assertEquals([res.status, await res.text()], [200, "target OPTIONS"]);
  assertEquals(res.headers.get("access-control-allow-origin"), "*");
});

Deno.test("any origin without credentials gets '*' and exposed headers", async () => {
  await using server = serveWithCors({ exposeHeaders: ["x-request-id", "x-total"] });
  const res = await fetch(server.url, { headers: { origin: "https://a.test" } });
  assertEquals(await res.text(), "ok");
  assertEquals(res.headers.get("access-control-allow-origin"), "*");
  assertEquals(res.headers.get("access-control-expose-headers"), "x-request-id, x-total");
  assertEquals(res.headers.get("vary"), null);
});

Deno.test("any origin with credentials is refused by the config", () => {
  const result = CorsConfig.safeParse({ credentials: true });
  assert(!result.success, "origins ['*'] with credentials must not parse");
  assertEquals(result.error.issues[0].path, ["credentials"]);
});

Deno.test("a listed origin is echoed; others get no CORS headers but Vary", async () => {
  await using server = serveWithCors({ origins: ["https://app.example.com"] });
  const allowed = await fetch(server.url, { headers: { origin: "https://app.example.com" } });
  assertEquals(await allowed.text(), "ok");
  assertEquals(allowed.headers.get("access-control-allow-origin"), "https://app.example.com");
  assertEquals(allowed.headers.get("vary"), "Origin");

  const denied = await fetch(server.url, { headers: { origin: "https://evil.test" } });
  assertEquals([denied.status, await denied.text()], [200, "ok"]);
  assertEquals(denied.headers.get("access-control-allow-origin"), null);
  assertEquals(denied.headers.get("vary"), "Origin");

  const noOrigin = await fetch(server.url);
  assertEquals(await noOrigin.text(), "ok");
  assertEquals(noOrigin.headers.get("access-control-allow-origin"), null);
});

Deno.test("wildcard origin patterns match subdomains only", async () => {
  await using server = serveWithCors({
    origins: ["https://*.example.com", "http://localhost:8080"],
  });
  const cases: [string, boolean][] = [
    ["https://a.example.com", true],
    ["https://a.b.example.com", true],
    ["http://localhost:8080", true],
    ["https://example.com", false],
    ["https://evilexample.com", false],
    ["https://a.example.com.evil.test", false],
    ["http://a.example.com", false],
    ["https://a.example.com:8443", false],
    ["http://localhost:9090", false],
  ];
  for (const [origin, allowed] of cases) {
    const res = await fetch(server.url, { headers: { origin } });
    await res.body?.cancel();
    assertEquals(
      res.headers.get("access-control-allow-origin"),
      allowed ? origin : null,
      origin,
    );
  }
});

Deno.test("CORS headers are added to a response whose headers are immutable", async () => {
  await using server = serveWithCors(
    {},
    () => Response.redirect("http://127.0.0.1/elsewhere", 302),
  );
  const res = await fetch(server.url, {
    headers: { origin: "https://a.test" },
    redirect: "manual",
  });
  await res.body?.cancel();
  assertEquals(res.status, 302);
  assertEquals(res.headers.get("location"), "http://127.0.0.1/elsewhere");
  assertEquals(res.headers.get("access-control-allow-origin"), "*");
});

Deno.test("the stage keeps the target's Vary values", async () => {
  await using server = serveWithCors(
    { origins: ["https://a.test"] },
    () => new Response("ok", { headers: { vary: "Accept-Encoding" } }),
  );
  const res = await fetch(server.url, { headers: { origin: "https://a.test" } });
  await res.body?.cancel();
  const vary = res.headers.get("vary") ?? "";
  assert(vary.includes("Accept-Encoding") && vary.includes("Origin"), vary);
});
