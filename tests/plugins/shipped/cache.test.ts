/**
 * The shipped cache plugin through the real gateway: HIT/MISS, what is and is
 * not stored (methods, statuses, Cache-Control, Set-Cookie, Vary, size,
 * Authorization), keys by vary headers, TTL, LRU bounds, counters, and bad
 * settings refused.
 */

import { assert, assertEquals, assertStringIncludes } from "../../helpers/assert.ts";
import { echoUpstream, gatewayWith, metric } from "./shipped.ts";

/** An upstream whose answers count how often each path reached it, shaped by the path. */
function countingUpstream() {
  const hits = new Map<string, number>();
  return echoUpstream((request) => {
    const { pathname } = new URL(request.url);
    const n = (hits.get(pathname) ?? 0) + 1;
    hits.set(pathname, n);
    const language = request.headers.get("accept-language") ?? "";
    const headers: Record<string, string> = {
      "content-type": "application/json",
      "x-request-id": "upstream-id",
    };
    let status = 200;
    let body = JSON.stringify({ path: pathname, n, language });
    if (pathname.endsWith("/no-store")) headers["cache-control"] = "no-store";
    if (pathname.endsWith("/private")) headers["cache-control"] = "private, max-age=60";
    if (pathname.endsWith("/max-age-0")) headers["cache-control"] = "max-age=0";
    if (pathname.endsWith("/cookie")) headers["set-cookie"] = "session=1";
    if (pathname.endsWith("/vary-other")) headers.vary = "accept-encoding";
    if (pathname.endsWith("/vary-language")) headers.vary = "Accept-Language";
    if (pathname.endsWith("/error")) status = 500;
    if (pathname.endsWith("/big")) body = JSON.stringify({ n, pad: "x".repeat(4096) });
    if (pathname.endsWith("/stream")) {
      return new Response(ReadableStream.from([new TextEncoder().encode(body)]), { headers });
    }
    return new Response(request.method === "HEAD" ? null : body, { status, headers });
  });
}

async function get(url: string, init?: RequestInit) {
  const res = await fetch(url, init);
  const text = await res.text();
  return { status: res.status, cache: res.headers.get("x-cache"), headers: res.headers, text };
}

const ROUTES = [
  { name: "short", match: { path: "/short/*" }, plugins: ["cache"], target: { upstream: "api" } },
  { name: "api", match: { path: "/*" }, plugins: ["cache"], target: { upstream: "api" } },
];

Deno.test("cache: MISS then HIT for GET and HEAD; what must not be stored is not", async () => {
  await using upstream = countingUpstream();
  const { gateway, url } = await gatewayWith(["cache"], upstream.url, {
    plugins: {
      settings: {
        cache: {
          ttl: "1m",
          vary: ["accept-language"],
          maxEntryBytes: "1KB",
          routes: { short: { ttl: "200ms" } },
        },
      },
    },
    routes: ROUTES,
  });
  await using _gateway = gateway;

  const first = await get(`${url}/items?page=1`);
  assertEquals(first.cache, "MISS");
  const second = await get(`${url}/items?page=1`);
  assertEquals(second.cache, "HIT");
  assertEquals(second.text, first.text, "the stored body");
  assertEquals(second.headers.get("content-type"), "application/json");
  assert(second.headers.get("age") !== null, "a hit says its age");
  assertEquals(
    [...second.headers.keys()].filter((name) => name.startsWith("x-cache")),
    ["x-cache"],
    "no bookkeeping header reaches the client",
  );
  assert(
    second.headers.get("x-request-id") !== "upstream-id" &&
      second.headers.get("x-request-id") !== first.headers.get("x-request-id"),
    "a hit carries its own request id",
  );
  assertEquals(JSON.parse((await get(`${url}/items?page=2`)).text).n, 2, "the query is in the key");

  const de = await get(`${url}/items?page=1`, { headers: { "accept-language": "de" } });
  assertEquals([de.cache, JSON.parse(de.text).language], ["MISS", "de"], "vary headers key");
  assertEquals(
    (await get(`${url}/items?page=1`, { headers: { "accept-language": "de" } })).cache,
    "HIT",
  );

  assertEquals((await get(`${url}/items?page=1`, { method: "HEAD" })).cache, "MISS");
  const head = await get(`${url}/items?page=1`, { method: "HEAD" });
  assertEquals([head.cache, head.text], ["HIT", ""]);

  const post = await get(`${url}/items?page=1`, { method: "POST", body: "{}" });
  assertEquals(post.cache, null, "POST is not cached");
  const authorized = await get(`${url}/items?page=1`, { headers: { authorization: "Bearer t" } });
  assertEquals(authorized.cache, null, "requests with Authorization bypass the cache");

  for (
    const path of [
      "no-store",
      "private",
      "max-age-0",
      "cookie",
      "vary-other",
      "error",
      "big",
      "stream",
    ]
  ) {
    await get(`${url}/never/${path}`);
    const again = await get(`${url}/never/${path}`);
    assertEquals(again.cache, "MISS", `${path} is not stored`);
    assertEquals(JSON.parse(again.text).n, 2, `${path} reached the upstream twice`);
  }
  await get(`${url}/ok/vary-language`);
  assertEquals((await get(`${url}/ok/vary-language`)).cache, "HIT", "Vary within `vary` is fine");

  await get(`${url}/short/a`);
  assertEquals((await get(`${url}/short/a`)).cache, "HIT");
  await new Promise((resolve) => setTimeout(resolve, 400));
  const expired = await get(`${url}/short/a`);
  assertEquals([expired.cache, JSON.parse(expired.text).n], ["MISS", 2], "expired after its ttl");

  const sample = (name: string, route: string) =>
    metric(gateway, `gateway_plugin_${name}{plugin="cache",route="${route}"}`);
  assertEquals(await sample("cache_hits_total", "api"), 4);
  assertEquals(await sample("cache_hits_total", "short"), 1);
  assertEquals(await sample("cache_misses_total", "short"), 2);
});

Deno.test("cache: at most maxEntries entries, least recently used evicted first", async () => {
  await using upstream = countingUpstream();
  const { gateway, url } = await gatewayWith(["cache"], upstream.url, {
    plugins: { settings: { cache: { maxEntries: 2 } } },
    routes: ROUTES,
  });
  await using _gateway = gateway;
  const seq: (string | null)[] = [];
  for (const path of ["a", "b", "a", "c", "a", "b"]) seq.push((await get(`${url}/${path}`)).cache);
  assertEquals(seq, ["MISS", "MISS", "HIT", "MISS", "HIT", "MISS"], "c evicted b, not a");
});

Deno.test("cache: at most maxBytes bytes", async () => {
  await using upstream = countingUpstream();
  const { gateway, url } = await gatewayWith(["cache"], upstream.url, {
    plugins: { settings: { cache: { maxBytes: "10KB", maxEntryBytes: "8KB" } } },
    routes: ROUTES,
  });
  await using _gateway = gateway;
  await get(`${url}/1/big`);
  assertEquals((await get(`${url}/1/big`)).cache, "HIT");
  await get(`${url}/2/big`);
  await get(`${url}/3/big`);
  assertEquals((await get(`${url}/1/big`)).cache, "MISS", "two more 4 KB bodies pushed it out");
  assertEquals((await get(`${url}/3/big`)).cache, "HIT");
});

Deno.test("cache: bad settings stop the gateway from starting, naming each problem", async () => {
  await using upstream = countingUpstream();
  const { gateway } = await gatewayWith(["cache"], upstream.url, {
    plugins: {
      settings: {
        cache: { ttl: "10 parsecs", maxBytes: -1, routes: { api: { statuses: [99], vari: [] } } },
      },
    },
    routes: ROUTES,
  }, { noWait: true });
  await using _gateway = gateway;
  const status = await gateway.exited();
  assert(!status.success, "the gateway must refuse the config");
  assertStringIncludes(
    gateway.output,
    `plugins.settings.cache: ttl: invalid duration "10 parsecs"`,
  );
  assertStringIncludes(
    gateway.output,
    "routes.api.vari is not a setting (use ttl, vary, statuses)",
  );
  assertStringIncludes(gateway.output, "maxBytes: invalid size -1");
  assertStringIncludes(gateway.output, "routes.api.statuses must be an array of HTTP status codes");
});
