/**
 * The canonical request path: the policy case by case, then a seeded fuzzer
 * of 100,000 generated paths (dot segments, encodings, slashes) checking that
 * canonicalisation is idempotent and a fixed point of the URL parser the
 * proxy uses, and a fuzzer through a listener (Deno.serve, the real router
 * and proxy, raw HTTP/1.1) checking that the route that matched and the path
 * the upstream received agree on one canonical path.
 */

import { assert, assertEquals } from "../helpers/assert.ts";
import { canonicalPath } from "../../src/router/canonical_path.ts";
import { GatewayError } from "../../src/errors.ts";
import { buildListenerApp } from "../../src/router/app.ts";
import { TrustedProxies } from "../../src/security/trusted_proxies.ts";
import { buildRouteTable } from "../../src/router/table.ts";
import { GatewayConfig } from "../../src/sections.ts";
import { HttpMetrics } from "../../src/observability/http_metrics.ts";
import { MetricsRegistry } from "../../src/observability/metrics.ts";
import { createHttp1Client } from "../../src/upstreams/http1_client.ts";
import { UpstreamConfig } from "../../src/upstreams/config.ts";
import { Upstream } from "../../src/upstreams/upstream.ts";
import { TargetStatePool } from "../../src/upstreams/target_state.ts";
import { seededRandom } from "../helpers/random.ts";

Deno.test("canonicalPath removes dot segments, merges slashes, normalises escapes", () => {
  const cases: [string, string][] = [
    ["/", "/"],
    ["/api/admin/users", "/api/admin/users"],
    ["/api/./admin/users", "/api/admin/users"],
    ["/api/x/../admin/users", "/api/admin/users"],
    ["/api/%2e/admin/users", "/api/admin/users"],
    ["/api/x/%2E%2e/admin", "/api/admin"],
    ["/api//admin///users", "/api/admin/users"],
    ["//", "/"],
    ["/a/", "/a/"],
    ["/a/.", "/a/"],
    ["/a/b/..", "/a/"],
    ["/a/..", "/"],
    ["/a//", "/a/"],
    ["/%7euser/%41%7A", "/~user/Az"],
    ["/a%2fb", "/a%2Fb"],
    ["/a%2F..%2Fb", "/a%2F..%2Fb"],
    ["/%c3%a9", "/%C3%A9"],
    ["/a%20b%25", "/a%20b%25"],
    ['/a"<>^`{|}#b', "/a%22%3C%3E%5E%60%7B%7C%7D%23b"],
    ["/a:b@c!$&'()*+,;=", "/a:b@c!$&'()*+,;="],
    ["/...", "/..."],
    ["/.well-known/x", "/.well-known/x"],
  ];
  for (const [raw, canonical] of cases) assertEquals(canonicalPath(raw), canonical, raw);
});

Deno.test("canonicalPath refuses what it cannot make safe, with 400 bad_path", () => {
  for (
    const raw of [
      "/..",
      "/a/../..",
      "/%2e%2e",
      "/a\\b",
      "/a%00",
      "/a%",
      "/a%4",
      "/a%g0",
      "/é",
      "/a b",
      "a",
      "",
    ]
  ) {
    let refused: unknown;
    try {
      canonicalPath(raw);
    } catch (error) {
      refused = error;
    }
    assert(refused instanceof GatewayError, `${JSON.stringify(raw)} must be refused`);
    assertEquals([refused.status, refused.code], [400, "bad_path"], raw);
  }
});

/** Segment pieces: dots, encoded dots and slashes, escapes of unreserved and reserved bytes. */
const PIECES = [
  "q",
  "x",
  "Q",
  "",
  ".",
  "..",
  "%2e",
  "%2E",
  "%2e%2E",
  ".%2e",
  "%71",
  "%2F",
  "%2f",
  "%5C",
  "%25",
  "%252e",
  "%20",
  "%7E",
  "~",
  "a.b",
  "...",
  "{",
  "#",
  ":@",
  "%c3%a9",
];
/** Pieces that get a path refused (`%2` may instead join the next piece into an escape). */
const REFUSED = ["%00", "%", "%2", "%g1", "\\", "\u00e9"];

/** A generated path under `/p/`: 1–7 pieces joined by one to three slashes. */
function generatePath(next: () => number): string {
  const piece = () =>
    next() < 0.03
      ? REFUSED[Math.floor(next() * REFUSED.length)]
      : PIECES[Math.floor(next() * PIECES.length)];
  let path = "/p";
  const count = 1 + Math.floor(next() * 7);
  for (let i = 0; i < count; i++) {
    path += "/".repeat(next() < 0.85 ? 1 : 2 + Math.floor(next() * 2));
    path += piece();
    if (next() < 0.2) path += piece();
  }
  return path;
}

const FUZZ_COUNT = 100_000;

Deno.test("fuzz: canonical paths are idempotent and survive the proxy's URL parser unchanged", () => {
  const next = seededRandom(12);
  let refused = 0;
  for (let i = 0; i < FUZZ_COUNT; i++) {
    const raw = generatePath(next);
    let canonical: string;
    try {
      canonical = canonicalPath(raw);
    } catch (error) {
      assert(error instanceof GatewayError && error.status === 400, `${raw}: ${error}`);
      refused++;
      continue;
    }
    assertEquals(canonicalPath(canonical), canonical, `idempotent for ${raw}`);
    assertEquals(new URL(`http://upstream.test${canonical}`).pathname, canonical, raw);
    assert(!/\/\/|\/\.\.?(\/|$)|%(2[eE]|[a-f][0-9a-fA-F]|[0-9A-F][a-f])/.test(canonical), raw);
  }
  assert(refused > 0 && refused < FUZZ_COUNT / 2, `${refused} refused: the generator is balanced`);
});

/** An upstream recording the raw paths it receives. */
function recordingUpstream(seen: string[]) {
  return Deno.serve({ hostname: "127.0.0.1", port: 0, onListen() {} }, (request) => {
    const url = request.url;
    seen.push(url.slice(url.indexOf("/", url.indexOf("//") + 2)));
    return new Response("ok");
  });
}

/** Reads one HTTP/1.1 response off `reader` (`buffer` keeps what follows it); returns its status. */
async function readResponse(
  reader: ReadableStreamDefaultReader<Uint8Array>,
  buffer: { text: string },
) {
  // One character per byte, so lengths compare with Content-Length.
  const decoder = new TextDecoder("latin1");
  for (;;) {
    const end = buffer.text.indexOf("\r\n\r\n");
    if (end >= 0) {
      const length = Number(/\r\ncontent-length: *(\d+)/i.exec(buffer.text.slice(0, end))?.[1]);
      if (buffer.text.length >= end + 4 + length) {
        const status = Number(buffer.text.slice(9, 12));
        buffer.text = buffer.text.slice(end + 4 + length);
        return status;
      }
    }
    const { value, done } = await reader.read();
    if (done) throw new Error("connection closed mid-response");
    buffer.text += decoder.decode(value, { stream: true });
  }
}

const THROUGH_COUNT = 100_000;

Deno.test("fuzz: the route that matched and the path the upstream got are one canonical path", async () => {
  const seenP: string[] = [];
  const seenQ: string[] = [];
  await using upstreamP = recordingUpstream(seenP);
  await using upstreamQ = recordingUpstream(seenQ);
  const client = createHttp1Client();
  const upstreams = new Map<string, Upstream>();
  for (const [name, server] of [["p", upstreamP], ["q", upstreamQ]] as const) {
    const config = UpstreamConfig.parse({
      targets: [`http://127.0.0.1:${server.addr.port}`],
      retries: 0,
    });
    upstreams.set(name, new Upstream(name, config, client, new TargetStatePool()));
  }
  const config = GatewayConfig.parse({
    listeners: { web: { type: "http", port: 0 } },
    routes: [
      { name: "q", match: { path: "/p/q/*" }, target: { upstream: "q" } },
      { name: "p", match: { path: "/p/*" }, target: { upstream: "p" } },
    ],
  });
  const metrics = new HttpMetrics(new MetricsRegistry());
  const routes = buildRouteTable(config, { upstreams, client, metrics });
  const handler = buildListenerApp({
    listener: "web",
    routes,
    metrics,
    accessLog: false,
    trustedProxies: new TrustedProxies([]),
  });
  await using gateway = Deno.serve({ hostname: "127.0.0.1", port: 0, onListen() {} }, handler);
  const conn = await Deno.connect({ hostname: "127.0.0.1", port: gateway.addr.port });
  const reader = conn.readable.getReader();
  const buffer = { text: "" };
  const encoder = new TextEncoder();
  const next = seededRandom(34);
  try {
    for (let i = 0; i < THROUGH_COUNT; i++) {
      const raw = generatePath(next);
      let canonical: string | undefined;
      try {
        canonical = canonicalPath(raw);
      } catch {
        canonical = undefined;
      }
      const before = seenP.length + seenQ.length;
      await conn.write(encoder.encode(`GET ${raw} HTTP/1.1\r\nHost: gw.test\r\n\r\n`));
      const status = await readResponse(reader, buffer);
      if (canonical === undefined) {
        assertEquals(status, 400, raw);
        assertEquals(seenP.length + seenQ.length, before, `${raw} reached an upstream`);
        continue;
      }
      const routedQ = canonical === "/p/q" || canonical.startsWith("/p/q/");
      const routedP = !routedQ && (canonical === "/p" || canonical.startsWith("/p/"));
      if (!routedP && !routedQ) {
        assertEquals(status, 404, raw);
        continue;
      }
      assertEquals(status, 200, raw);
      const seen = routedQ ? seenQ : seenP;
      assertEquals(seenP.length + seenQ.length, before + 1, raw);
      assertEquals(seen.at(-1), canonical, `${raw} routed to ${routedQ ? "q" : "p"}`);
    }
  } finally {
    reader.releaseLock();
    conn.close();
    client.close();
  }
});
