/**
 * Routing through the real gateway process: priority, specificity, methods,
 * host and header conditions, listeners, static files (with traversal
 * attempts over raw TCP), and the traffic limits (413, 431, 429, CORS).
 */

import { assert, assertEquals, assertStringIncludes } from "../helpers/assert.ts";
import { startGateway } from "../helpers/gateway.ts";
import { rawGet } from "../helpers/raw_http.ts";

const say = (body: string) => ({ respond: { body } });

Deno.test("routes: explicit priority, then specificity, then config order", async () => {
  await using gw = await startGateway({
    listeners: {
      web: { type: "http", host: "127.0.0.1", port: 0 },
      internal: { type: "http", host: "127.0.0.1", port: 0 },
    },
    routes: [
      { name: "catch-all", match: { path: "/*" }, target: say("catch-all") },
      { name: "api-any", match: { path: "/api/*" }, target: say("api-any") },
      { name: "user", match: { path: "/api/users/:id" }, target: say("user") },
      { name: "me", match: { path: "/api/users/me" }, target: say("me") },
      {
        name: "post-only",
        match: { path: "/api/items", methods: ["POST"] },
        target: say("post-items"),
      },
      {
        name: "tenant",
        match: { path: "/api/items", headers: { "x-tenant": "acme" } },
        target: say("acme-items"),
      },
      {
        name: "host",
        match: { path: "/api/items", host: "*.example.com" },
        target: say("example-items"),
      },
      { name: "forced", priority: 10, match: { path: "/api/forced/*" }, target: say("forced") },
      { name: "forced-specific", match: { path: "/api/forced/exact" }, target: say("specific") },
      {
        name: "internal-only",
        listeners: ["internal"],
        match: { path: "/internal" },
        target: say("internal"),
      },
    ],
  });
  const port = await gw.port("web");
  const admin = await gw.port("internal");
  const get = async (path: string, init: RequestInit = {}, p = port) => {
    const res = await fetch(`http://127.0.0.1:${p}${path}`, init);
    return `${res.status} ${await res.text()}`;
  };
  assertEquals(await get("/api/users/me"), "200 me");
  assertEquals(await get("/api/users/42"), "200 user");
  assertEquals(await get("/api/other"), "200 api-any");
  assertEquals(await get("/elsewhere"), "200 catch-all");
  assertEquals(await get("/api/items", { method: "POST" }), "200 post-items");
  assertEquals(await get("/api/items", { headers: { "x-tenant": "acme" } }), "200 acme-items");
  const byHost = (await rawGet(port, "/api/items", "shop.example.com")).text;
  assertStringIncludes(byHost, "example-items");
  assertStringIncludes((await rawGet(port, "/api/items", "example.com")).text, "api-any");
  assertEquals(await get("/api/items"), "200 api-any");
  assertEquals(await get("/api/forced/exact"), "200 forced", "priority beats specificity");
  assertEquals(await get("/internal", {}, admin), "200 internal");
  assertEquals(
    await get("/internal"),
    "200 catch-all",
    "a route limited to a listener is not on others",
  );
});

Deno.test("no matching route: 404 with a JSON error and a request id", async () => {
  await using gw = await startGateway({
    listeners: { web: { type: "http", host: "127.0.0.1", port: 0 } },
    routes: [{ match: { path: "/only", methods: ["GET"] }, target: say("x") }],
  });
  const port = await gw.port("web");
  const res = await fetch(`http://127.0.0.1:${port}/missing`, {
    headers: { "x-request-id": "abc-123" },
  });
  assertEquals(res.status, 404);
  assertEquals(res.headers.get("x-request-id"), "abc-123");
  const body = await res.json();
  assertEquals(body.error.code, "no_route");
  assertEquals(body.error.requestId, "abc-123");
  const wrongMethod = await fetch(`http://127.0.0.1:${port}/only`, { method: "DELETE" });
  assertEquals(wrongMethod.status, 404);
  await wrongMethod.body?.cancel();
});

Deno.test("static files: content types, index, and no way out of the root", async () => {
  await using gw = await startGateway({
    listeners: { web: { type: "http", host: "127.0.0.1", port: 0 } },
    routes: [{
      match: { path: "/files/*" },
      target: { static: { root: "site", stripPrefix: "/files" } },
    }],
  }, {
    files: {
      "site/index.html": "<h1>home</h1>",
      "site/app.js": "console.log(1)",
      "site/data.json": "{}",
      "secret.txt": "TOP SECRET",
    },
  });
  const port = await gw.port("web");
  const index = await fetch(`http://127.0.0.1:${port}/files/`);
  assertEquals(index.headers.get("content-type")?.split(";")[0], "text/html");
  assertEquals(await index.text(), "<h1>home</h1>");
  const js = await fetch(`http://127.0.0.1:${port}/files/app.js`);
  assertStringIncludes(js.headers.get("content-type") ?? "", "javascript");
  await js.body?.cancel();
  await Deno.symlink(`${gw.dir}/secret.txt`, `${gw.dir}/site/link.txt`);
  for (
    const attempt of [
      "/files/../secret.txt",
      "/files/%2e%2e/secret.txt",
      "/files/%2E%2E%2Fsecret.txt",
      "/files/..%2fsecret.txt",
      "/files/..%5csecret.txt",
      "/files//etc/passwd",
      `/files/${gw.dir}/secret.txt`,
      "/files/%00secret.txt",
      "/files/link.txt",
    ]
  ) {
    const response = (await rawGet(port, attempt, "x")).text;
    const status = Number(response.split(" ")[1]);
    assert(status >= 400 && status < 500, `${attempt} → ${response.split("\r\n")[0]}`);
    assert(!response.includes("TOP SECRET"), `${attempt} leaked the file`);
    assert(!response.includes("root:"), `${attempt} leaked /etc/passwd`);
  }
});

Deno.test("limits: 413 for a large Content-Length, 431 for too many headers, 429 with Retry-After, CORS", async () => {
  await using gw = await startGateway({
    listeners: { web: { type: "http", host: "127.0.0.1", port: 0 } },
    routes: [
      {
        name: "small",
        match: { path: "/small" },
        limits: { maxBodySize: "1KB", maxHeaderCount: 20 },
        target: say("ok"),
      },
      {
        name: "limited",
        match: { path: "/limited" },
        rateLimit: { perClient: { rate: 3, per: "1m", burst: 3 } },
        target: say("ok"),
      },
      {
        name: "cors",
        match: { path: "/cors" },
        cors: { origins: ["https://app.example.com"], methods: ["GET", "PUT"], maxAge: 600 },
        target: say("ok"),
      },
    ],
  });
  const port = await gw.port("web");
  const base = `http://127.0.0.1:${port}`;
  const big = await fetch(`${base}/small`, { method: "POST", body: "x".repeat(5000) });
  assertEquals(big.status, 413);
  await big.body?.cancel();
  const headers = Object.fromEntries(Array.from({ length: 30 }, (_, i) => [`x-h${i}`, "v"]));
  const many = await fetch(`${base}/small`, { headers });
  assertEquals(many.status, 431);
  await many.body?.cancel();

  const statuses: number[] = [];
  let retryAfter: string | null = null;
  for (let i = 0; i < 5; i++) {
    const res = await fetch(`${base}/limited`);
    statuses.push(res.status);
    if (res.status === 429) retryAfter = res.headers.get("retry-after");
    await res.body?.cancel();
  }
  assertEquals(statuses, [200, 200, 200, 429, 429]);
  assert(Number(retryAfter) >= 1, `Retry-After: ${retryAfter}`);

  const preflight = await fetch(`${base}/cors`, {
    method: "OPTIONS",
    headers: { origin: "https://app.example.com", "access-control-request-method": "PUT" },
  });
  assertEquals(preflight.status, 204);
  assertEquals(preflight.headers.get("access-control-allow-origin"), "https://app.example.com");
  assertStringIncludes(preflight.headers.get("access-control-allow-methods") ?? "", "PUT");
  const actual = await fetch(`${base}/cors`, { headers: { origin: "https://app.example.com" } });
  assertEquals(actual.headers.get("access-control-allow-origin"), "https://app.example.com");
  await actual.body?.cancel();
  const foreign = await fetch(`${base}/cors`, { headers: { origin: "https://evil.example" } });
  assertEquals(foreign.headers.get("access-control-allow-origin"), null);
  await foreign.body?.cancel();
});
