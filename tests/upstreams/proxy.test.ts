import { serveTarget } from "../helpers/test_server.ts";
import { deepStrictEqual as assertEquals, ok as assert } from "node:assert/strict";
import { UpstreamConfig } from "../../src/upstreams/config.ts";
import { createHttp1Client } from "../../src/upstreams/http1_client.ts";
import { createUpstreamTarget, type UpstreamRouteTarget } from "../../src/upstreams/proxy.ts";
import { Upstream } from "../../src/upstreams/upstream.ts";
import { TargetStatePool } from "../../src/upstreams/target_state.ts";

const loopback = { port: 0, hostname: "127.0.0.1", onListen() {} };
const MB = 1024 * 1024;

/** A real upstream server that counts the requests it handles. */
interface Backend extends AsyncDisposable {
  url: string;
  port: number;
  hits: number;
}

function startBackend(
  handler: (request: Request) => Response | Promise<Response> = () => new Response("ok"),
  port = 0,
): Backend {
  const server = Deno.serve({ ...loopback, port }, (request) => {
    backend.hits++;
    return handler(request);
  });
  const backend = {
    url: `http://127.0.0.1:${server.addr.port}`,
    port: server.addr.port,
    hits: 0,
    [Symbol.asyncDispose]: () => server.shutdown(),
  };
  return backend;
}

/** A handler that answers only when the gateway gives up on the request. */
function hangingHandler(request: Request): Promise<Response> {
  return new Promise((resolve) => {
    request.signal.addEventListener("abort", () => resolve(new Response("too late")));
  });
}

/** A loopback URL where nothing listens. */
function closedUrl(): string {
  // 127.0.0.2, where no other test listens: tests running in parallel bind 127.0.0.1 ports,
  // and one could take this port between its release and the request.
  const listener = Deno.listen({ hostname: "127.0.0.2", port: 0 });
  listener.close();
  return `http://127.0.0.2:${listener.addr.port}`;
}

/** The gateway under test: a Hono app whose only route proxies to upstream "api". */
interface Gateway extends AsyncDisposable {
  url: string;
  upstream: Upstream;
}

function startGateway(
  config: Record<string, unknown>,
  route: Partial<UpstreamRouteTarget> = {},
  now?: () => number,
): Gateway {
  const client = createHttp1Client();
  const upstream = new Upstream(
    "api",
    UpstreamConfig.parse(config),
    client,
    new TargetStatePool(),
    now,
  );
  const proxy = createUpstreamTarget({ upstream: "api", ...route }, upstream, client);
  const server = serveTarget(async (c) => {
    const response = await proxy(c);
    response.headers.set("x-test-upstream-target", c.env.upstreamTarget ?? "");
    return response;
  }, {
    // clientIp is what a proxy in front reported; peerAddress is that proxy.
    state: {
      clientIp: "192.0.2.7",
      peerAddress: "198.51.100.20",
      peerTrusted: true,
      requestId: "req-1",
    },
  });
  upstream.start();
  return {
    url: server.url,
    upstream,
    async [Symbol.asyncDispose]() {
      await upstream.stop();
      await server[Symbol.asyncDispose]();
      client.close();
    },
  };
}

async function send(url: string, init?: RequestInit) {
  const response = await fetch(url, init);
  return { status: response.status, headers: response.headers, text: await response.text() };
}

async function sendMany(url: string, count: number): Promise<string[]> {
  const bodies: string[] = [];
  for (let i = 0; i < count; i++) bodies.push((await send(url)).text);
  return bodies;
}

/** A stream of `size` bytes in 64 KiB chunks; `beforeSecondChunk` runs once, after the first. */
function generatedBody(size: number, beforeSecondChunk: () => Promise<void>) {
  let sent = 0;
  return new ReadableStream<Uint8Array>({
    async pull(controller) {
      if (sent === 64 * 1024) await beforeSecondChunk();
      const chunk = new Uint8Array(Math.min(64 * 1024, size - sent)).fill(sent % 251);
      sent += chunk.length;
      controller.enqueue(chunk);
      if (sent === size) controller.close();
    },
  });
}

async function countBytes(body: ReadableStream<Uint8Array>, onFirstChunk = () => {}) {
  let total = 0;
  for await (const chunk of body) {
    if (total === 0) onFirstChunk();
    total += chunk.length;
  }
  return total;
}

function parseError(text: string) {
  return JSON.parse(text).error as { status: number; code: string; message: string };
}

Deno.test("proxy forwards path, query and body, sets X-Forwarded-* and Via, strips hop-by-hop", async () => {
  await using backend = startBackend(async (request) =>
    Response.json({
      method: request.method,
      path: request.url.slice(request.url.indexOf("/", 8)),
      headers: Object.fromEntries(request.headers),
      body: await request.text(),
    }, {
      headers: {
        connection: "x-private",
        "x-private": "secret",
        "keep-alive": "timeout=5",
        "proxy-authenticate": "Basic",
        upgrade: "foo",
        "x-kept": "yes",
      },
    })
  );
  await using gateway = startGateway({ targets: [backend.url] }, { stripPrefix: "/api/" });
  const response = await send(`${gateway.url}/api/users/7?sort=name&x=%20`, {
    method: "PATCH",
    body: "payload",
    headers: {
      // Headers the client's Connection names go where the request enters the
      // listener (tests/security/proxy_headers.test.ts), not here.
      connection: "keep-alive",
      "keep-alive": "300",
      "proxy-authorization": "Basic abc",
      te: "trailers",
      upgrade: "h2c",
      "x-forwarded-for": "203.0.113.9",
      via: "1.0 edge",
      "x-custom": "kept",
    },
  });
  assertEquals(response.status, 200);
  const seen = JSON.parse(response.text);
  assertEquals([seen.method, seen.path, seen.body], [
    "PATCH",
    "/users/7?sort=name&x=%20",
    "payload",
  ]);
  const gatewayHost = gateway.url.slice("http://".length);
  assertEquals(seen.headers["host"], backend.url.slice("http://".length));
  assertEquals(
    seen.headers["x-forwarded-for"],
    "203.0.113.9, 198.51.100.20",
    "the socket peer is appended",
  );
  assertEquals(seen.headers["x-forwarded-proto"], "http");
  assertEquals(seen.headers["x-forwarded-host"], gatewayHost);
  assertEquals(seen.headers["via"], "1.0 edge, 1.1 gateway");
  assertEquals(seen.headers["x-custom"], "kept");
  for (
    const name of ["connection", "keep-alive", "proxy-authorization", "te", "upgrade"]
  ) {
    assertEquals(seen.headers[name], undefined, `${name} reached the upstream`);
  }
  assertEquals(response.headers.get("x-kept"), "yes");
  for (const name of ["connection", "x-private", "keep-alive", "proxy-authenticate", "upgrade"]) {
    assertEquals(response.headers.get(name), null, `${name} reached the client`);
  }
  assertEquals(response.headers.get("x-test-upstream-target"), backend.url);
});

Deno.test("proxy keeps the client's Host with preserveHost and strips prefixes at segment boundaries", async () => {
  await using backend = startBackend((request) =>
    Response.json({ host: request.headers.get("host"), url: request.url })
  );
  await using gateway = startGateway({ targets: [backend.url] }, {
    stripPrefix: "/api",
    preserveHost: true,
  });
  const pathOf = async (path: string) => {
    const seen = JSON.parse((await send(gateway.url + path)).text);
    assertEquals(seen.host, gateway.url.slice("http://".length));
    return seen.url.slice(seen.url.indexOf("/", 8));
  };
  assertEquals(await pathOf("/api"), "/");
  assertEquals(await pathOf("/api?q=1"), "/?q=1");
  assertEquals(await pathOf("/api/"), "/");
  assertEquals(await pathOf("/apiary"), "/apiary");
  assertEquals(await pathOf("/other/api"), "/other/api");
});

Deno.test("round-robin spreads requests evenly", async () => {
  await using a = startBackend(() => new Response("a"));
  await using b = startBackend(() => new Response("b"));
  await using c = startBackend(() => new Response("c"));
  await using gateway = startGateway({ targets: [a.url, b.url, c.url] });
  assertEquals((await sendMany(gateway.url, 6)).join(""), "abcabc");
  await sendMany(gateway.url, 24);
  assertEquals([a.hits, b.hits, c.hits], [10, 10, 10]);
});

Deno.test("weighted balancing follows the weights", async () => {
  await using a = startBackend(() => new Response("a"));
  await using b = startBackend(() => new Response("b"));
  await using gateway = startGateway({
    balance: "weighted",
    targets: [{ url: a.url, weight: 3 }, { url: b.url, weight: 1 }],
  });
  await sendMany(gateway.url, 40);
  assertEquals([a.hits, b.hits], [30, 10]);
  assertEquals(gateway.upstream.snapshot().targets.map((t) => t.requests), [30, 10]);
});

Deno.test("least-connections avoids a target still streaming a response", async () => {
  const finishBody = Promise.withResolvers<void>();
  await using slow = startBackend(() => {
    const body = new ReadableStream({
      async start(controller) {
        controller.enqueue(new TextEncoder().encode("slow "));
        await finishBody.promise;
        controller.enqueue(new TextEncoder().encode("done"));
        controller.close();
      },
    });
    return new Response(body);
  });
  await using fast = startBackend(() => new Response("fast"));
  await using gateway = startGateway({
    balance: "least-connections",
    targets: [slow.url, fast.url],
  });
  const streaming = await fetch(gateway.url);
  assertEquals(gateway.upstream.snapshot().targets.map((t) => t.inFlight), [1, 0]);
  assertEquals(await sendMany(gateway.url, 5), ["fast", "fast", "fast", "fast", "fast"]);
  finishBody.resolve();
  assertEquals(await streaming.text(), "slow done");
  assertEquals(gateway.upstream.snapshot().targets.map((t) => t.inFlight), [0, 0]);
  assertEquals([slow.hits, fast.hits], [1, 5]);
});

Deno.test("a failing target is ejected by passive health, requests fail over, and it returns", async () => {
  const clock = { now: 0 };
  await using live = startBackend(() => new Response("live"));
  const flaky = startBackend(() => new Response("flaky"));
  await flaky[Symbol.asyncDispose]();
  await using gateway = startGateway(
    { targets: [live.url, flaky.url], retries: 1, passive: { failures: 2, ejectFor: 1000 } },
    {},
    () => clock.now,
  );
  assertEquals(await sendMany(gateway.url, 6), Array(6).fill("live"));
  const [, ejected] = gateway.upstream.snapshot().targets;
  assertEquals([ejected.healthy, ejected.ejectedUntil, ejected.failures], [false, 1000, 2]);

  await using revived = startBackend(() => new Response("revived"), flaky.port);
  clock.now = 1000;
  assertEquals(gateway.upstream.snapshot().targets[1].healthy, true);
  const bodies = await sendMany(gateway.url, 4);
  assertEquals(bodies.filter((body) => body === "revived").length, 2);
  assertEquals(revived.hits, 2);
});

Deno.test("active health checks take a target out and bring it back", async () => {
  let failing = false;
  let servedByB = 0;
  await using a = startBackend(() => new Response("a"));
  await using b = startBackend((request) => {
    if (new URL(request.url).pathname === "/health") {
      return new Response(null, { status: failing ? 503 : 200 });
    }
    servedByB++;
    return new Response("b");
  });
  await using gateway = startGateway({
    targets: [a.url, b.url],
    healthCheck: { path: "/health", interval: 10, healthyThreshold: 1, unhealthyThreshold: 1 },
  });
  const bHealthy = async (healthy: boolean) => {
    const giveUpAt = Date.now() + 10_000;
    while (gateway.upstream.snapshot().targets[1].healthy !== healthy) {
      if (Date.now() > giveUpAt) {
        throw new Error(`b never became ${healthy ? "healthy" : "unhealthy"}`);
      }
      await new Promise((resolve) => setTimeout(resolve, 5));
    }
  };
  failing = true;
  await bHealthy(false);
  assertEquals(await sendMany(gateway.url, 4), ["a", "a", "a", "a"]);
  assertEquals(servedByB, 0);
  failing = false;
  await bHealthy(true);
  assertEquals((await sendMany(gateway.url, 4)).sort(), ["a", "a", "b", "b"]);
  assertEquals(servedByB, 2);
});

Deno.test("the circuit breaker opens, turns half-open and closes again", async () => {
  const clock = { now: 0 };
  const url = closedUrl();
  await using gateway = startGateway(
    {
      targets: [url],
      retries: 0,
      passive: { failures: 100 },
      breaker: { failures: 2, openFor: 1000 },
    },
    {},
    () => clock.now,
  );
  const breakerState = () => gateway.upstream.snapshot().targets[0].breaker;
  assertEquals((await send(gateway.url)).status, 502);
  assertEquals(breakerState(), "closed");
  assertEquals((await send(gateway.url)).status, 502);
  assertEquals(breakerState(), "open");
  const refused = await send(gateway.url);
  assertEquals([refused.status, parseError(refused.text).code], [503, "no_healthy_target"]);

  clock.now = 1000;
  assertEquals(breakerState(), "half-open");
  // The target comes back where the closed URL pointed.
  let hits = 0;
  await using _back = Deno.serve(
    { hostname: "127.0.0.2", port: Number(new URL(url).port), onListen() {} },
    () => (hits++, new Response("back")),
  );
  assertEquals((await send(gateway.url)).text, "back");
  assertEquals(breakerState(), "closed");
  assertEquals(hits, 1);
});

Deno.test("idempotent requests without a body are retried on another target", async () => {
  await using hanging = startBackend(hangingHandler);
  await using good = startBackend(() => new Response("good"));
  await using gateway = startGateway({
    targets: [hanging.url, good.url],
    retries: 1,
    timeouts: { connect: 100, response: 100 },
    passive: { failures: 100 },
  });
  const response = await send(gateway.url);
  assertEquals([response.status, response.text], [200, "good"]);
  assertEquals([hanging.hits, good.hits], [1, 1]);
  assertEquals(response.headers.get("x-test-upstream-target"), good.url);
});

Deno.test("POST and requests with a body are never retried", async () => {
  await using hanging = startBackend(hangingHandler);
  await using good = startBackend(() => new Response("good"));
  await using gateway = startGateway({
    targets: [hanging.url, good.url],
    retries: 3,
    timeouts: { connect: 100, response: 100 },
    passive: { failures: 100 },
  });
  const post = await send(gateway.url, { method: "POST", body: "order" });
  assertEquals([post.status, parseError(post.text).code], [504, "upstream_timeout"]);
  assertEquals([hanging.hits, good.hits], [1, 0]);
  await send(gateway.url); // round-robin: the next POST goes to the hanging target again
  const put = await send(gateway.url, { method: "PUT", body: "document" });
  assertEquals([put.status, parseError(put.text).code], [504, "upstream_timeout"]);
  assertEquals([hanging.hits, good.hits], [2, 1]);
});

Deno.test("a POST to an unreachable target is not retried", async () => {
  await using good = startBackend(() => new Response("good"));
  await using gateway = startGateway({
    targets: [closedUrl(), good.url],
    retries: 3,
    passive: { failures: 100 },
  });
  const post = await send(gateway.url, { method: "POST" });
  assertEquals([post.status, parseError(post.text).code], [502, "upstream_unreachable"]);
  assertEquals(good.hits, 0);
  assertEquals(gateway.upstream.snapshot().targets[0].failures, 1);
});

Deno.test("a 20 MB response streams through without being buffered", async () => {
  const clientGotFirstChunk = Promise.withResolvers<void>();
  await using backend = startBackend(() =>
    new Response(generatedBody(20 * MB, () => clientGotFirstChunk.promise))
  );
  await using gateway = startGateway({ balance: "least-connections", targets: [backend.url] });
  const response = await fetch(gateway.url, { signal: AbortSignal.timeout(30_000) });
  const received = await countBytes(response.body!, () => clientGotFirstChunk.resolve());
  assertEquals(received, 20 * MB);
  assertEquals(gateway.upstream.snapshot().targets[0].inFlight, 0);
});

Deno.test("a 20 MB request body streams through without being buffered", async () => {
  const upstreamGotFirstChunk = Promise.withResolvers<void>();
  await using backend = startBackend(async (request) => {
    const received = await countBytes(request.body!, () => upstreamGotFirstChunk.resolve());
    return new Response(String(received));
  });
  await using gateway = startGateway({ targets: [backend.url] });
  const response = await send(gateway.url, {
    method: "POST",
    body: generatedBody(20 * MB, () => upstreamGotFirstChunk.promise),
    signal: AbortSignal.timeout(30_000),
    duplex: "half",
  } as RequestInit);
  assertEquals([response.status, response.text], [200, String(20 * MB)]);
});

Deno.test("compressed responses pass through byte for byte", async () => {
  const plain = new TextEncoder().encode("compress me ".repeat(1000));
  const compressed = new Uint8Array(
    await new Response(new Blob([plain]).stream().pipeThrough(new CompressionStream("gzip")))
      .arrayBuffer(),
  );
  await using backend = startBackend(() =>
    new Response(compressed, { headers: { "content-encoding": "gzip" } })
  );
  await using gateway = startGateway({ targets: [backend.url] });
  const connection = await Deno.connect({
    hostname: "127.0.0.1",
    port: Number(new URL(gateway.url).port),
  });
  await connection.write(
    new TextEncoder().encode(
      "GET / HTTP/1.1\r\nHost: gw\r\nAccept-Encoding: gzip, br\r\nConnection: close\r\n\r\n",
    ),
  );
  const raw = new Uint8Array(await new Response(connection.readable).arrayBuffer());
  const headerEnd = raw.findIndex((_, i) =>
    raw[i] === 13 && raw[i + 1] === 10 && raw[i + 2] === 13 && raw[i + 3] === 10
  );
  const head = new TextDecoder().decode(raw.subarray(0, headerEnd)).toLowerCase();
  assert(head.includes("content-encoding: gzip"), head);
  assert(head.includes(`content-length: ${compressed.length}`), head);
  assertEquals(raw.subarray(headerEnd + 4), compressed);
});

Deno.test("upstream failures map to 502, 503 and 504 JSON errors", async (t) => {
  await t.step("connection refused: 502 upstream_unreachable", async () => {
    const url = closedUrl();
    await using gateway = startGateway({ targets: [url], retries: 0 });
    const response = await send(gateway.url);
    const error = parseError(response.text);
    assertEquals([response.status, error.code], [502, "upstream_unreachable"]);
    assert(error.message.includes('upstream "api"') && !response.text.includes(url), error.message);
    assertEquals(JSON.parse(response.text).error.requestId, "req-1");
  });

  await t.step("no response in time: 504 upstream_timeout", async () => {
    await using backend = startBackend(hangingHandler);
    await using gateway = startGateway({
      targets: [backend.url],
      timeouts: { connect: 50, response: 50 },
    });
    const response = await send(gateway.url);
    const error = parseError(response.text);
    assertEquals([response.status, error.code], [504, "upstream_timeout"]);
    assert(error.message.includes('upstream "api"'), error.message);
  });

  await t.step("not HTTP: 502 bad_upstream_response", async () => {
    const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
    const answering = (async () => {
      for await (const connection of listener) {
        await connection.read(new Uint8Array(4096));
        await connection.write(new TextEncoder().encode("SSH-2.0-OpenSSH\r\n\r\n"));
        connection.close();
      }
    })();
    await using gateway = startGateway({
      targets: [`http://127.0.0.1:${listener.addr.port}`],
      retries: 0,
    });
    const response = await send(gateway.url);
    const error = parseError(response.text);
    assertEquals([response.status, error.code], [502, "bad_upstream_response"]);
    assert(error.message.includes('upstream "api"'), error.message);
    listener.close();
    await answering;
  });

  await t.step("every target out: 503 no_healthy_target", async () => {
    await using gateway = startGateway({ targets: [closedUrl()], passive: { failures: 1 } });
    assertEquals((await send(gateway.url)).status, 502);
    const response = await send(gateway.url);
    const error = parseError(response.text);
    assertEquals([response.status, error.code], [503, "no_healthy_target"]);
    assert(error.message.includes('upstream "api"'), error.message);
  });
});
