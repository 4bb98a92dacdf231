/**
 * Reverse proxying through the real gateway process to real upstream
 * servers started here: balancing, active and passive health, failover,
 * circuit breaker, retries, streaming, forwarded headers and error mapping.
 */

import { assert, assertEquals, assertStringIncludes } from "../helpers/assert.ts";
import { freePort, type GatewayProcess, startGateway } from "../helpers/gateway.ts";
import { until } from "../helpers/wait.ts";

/** A real upstream server that answers with its name and counts hits. */
class TestUpstream {
  hits = 0;
  healthy = true;
  readonly server: Deno.HttpServer<Deno.NetAddr>;
  constructor(
    readonly name: string,
    handler?: (req: Request) => Response | Promise<Response>,
    port = 0,
  ) {
    this.server = Deno.serve({ hostname: "127.0.0.1", port, onListen() {} }, (req) => {
      if (new URL(req.url).pathname === "/health") {
        return new Response(null, { status: this.healthy ? 200 : 503 });
      }
      this.hits++;
      return handler ? handler(req) : new Response(this.name);
    });
  }
  get url(): string {
    return `http://127.0.0.1:${this.server.addr.port}`;
  }
  async [Symbol.asyncDispose]() {
    await this.server.shutdown();
  }
}

function proxyConfig(
  port: number,
  upstream: Record<string, unknown>,
  route: Record<string, unknown> = {},
) {
  return {
    listeners: { web: { type: "http", host: "127.0.0.1", port } },
    routes: [{ name: "api", match: { path: "/*" }, target: { upstream: "api" }, ...route }],
    upstreams: { api: upstream },
  };
}

async function getText(url: string, init?: RequestInit): Promise<string> {
  const res = await fetch(url, init);
  return await res.text();
}

async function targetState(gw: GatewayProcess, url: string): Promise<Record<string, unknown>> {
  const status = await (await gw.admin("/status")).json();
  return status.upstreams.api.targets.find((t: { url: string }) => t.url === url);
}

Deno.test("balancing: round-robin, weighted and least-connections distributions", async () => {
  await using a = new TestUpstream("a");
  await using b = new TestUpstream("b");
  await using c = new TestUpstream("c");
  const counts = async (n: number) => {
    const seen: Record<string, number> = {};
    for (let i = 0; i < n; i++) {
      const name = await getText(`http://127.0.0.1:${port}/`);
      seen[name] = (seen[name] ?? 0) + 1;
    }
    return seen;
  };

  await using gw = await startGateway(proxyConfig(0, { targets: [a.url, b.url, c.url] }));
  const port = await gw.port("web");
  assertEquals(await counts(30), { a: 10, b: 10, c: 10 });

  await gw.writeConfig({
    ...proxyConfig(0, {
      balance: "weighted",
      targets: [{ url: a.url, weight: 1 }, { url: b.url, weight: 2 }, { url: c.url, weight: 3 }],
    }),
    admin: {
      host: "127.0.0.1",
      port: 0,
      token: "test-admin-token-0123456789",
    },
  });
  const reload = await gw.admin("/reload", { method: "POST" });
  assertEquals(reload.status, 200, await reload.clone().text());
  await reload.body?.cancel();
  assertEquals(await counts(60), { a: 10, b: 20, c: 30 });
});

Deno.test("least-connections sends new requests away from a busy target", async () => {
  let release!: () => void;
  const held = new Promise<void>((r) => release = r);
  const handler = (name: string) => async (req: Request) => {
    if (new URL(req.url).pathname === "/hold") await held;
    return new Response(name);
  };
  await using a = new TestUpstream("a", handler("a"));
  await using b = new TestUpstream("b", handler("b"));
  await using gw = await startGateway(
    proxyConfig(0, { balance: "least-connections", targets: [a.url, b.url] }),
  );
  const port = await gw.port("web");
  const holding = fetch(`http://127.0.0.1:${port}/hold`);
  await until("the held request arrives", () => Promise.resolve(a.hits + b.hits === 1));
  const busy = a.hits === 1 ? "a" : "b";
  for (let i = 0; i < 10; i++) {
    const name = await getText(`http://127.0.0.1:${port}/quick`);
    assert(name !== busy, `request ${i} went to the busy target ${busy}`);
  }
  release();
  assertEquals(await (await holding).text(), busy);
});

Deno.test("active health checks eject a failing target and bring it back", async () => {
  await using a = new TestUpstream("a");
  await using b = new TestUpstream("b");
  await using gw = await startGateway(proxyConfig(0, {
    targets: [a.url, b.url],
    healthCheck: {
      path: "/health",
      interval: "100ms",
      timeout: "1s",
      healthyThreshold: 1,
      unhealthyThreshold: 2,
    },
  }));
  const port = await gw.port("web");
  b.healthy = false;
  await until("b is unhealthy", async () => (await targetState(gw, b.url)).healthy === false);
  const before = b.hits;
  for (let i = 0; i < 10; i++) assertEquals(await getText(`http://127.0.0.1:${port}/`), "a");
  assertEquals(b.hits, before, "no traffic to the ejected target");
  const metrics = await (await gw.admin("/metrics")).text();
  assertStringIncludes(
    metrics,
    `gateway_upstream_target_healthy{upstream="api",target="${b.url}"} 0`,
  );
  b.healthy = true;
  await until("b is healthy again", async () => (await targetState(gw, b.url)).healthy === true);
  const seen = new Set<string>();
  for (let i = 0; i < 4; i++) seen.add(await getText(`http://127.0.0.1:${port}/`));
  assertEquals([...seen].sort(), ["a", "b"]);
});

Deno.test("failover: a dead target is retried away from and passively ejected", async () => {
  await using a = new TestUpstream("a");
  const dead = `http://127.0.0.1:${freePort()}`;
  await using gw = await startGateway(proxyConfig(0, {
    targets: [a.url, dead],
    retries: 1,
    passive: { failures: 2, ejectFor: "1m" },
  }));
  const port = await gw.port("web");
  for (let i = 0; i < 10; i++) {
    const res = await fetch(`http://127.0.0.1:${port}/`);
    assertEquals(res.status, 200);
    assertEquals(await res.text(), "a");
  }
  assertEquals((await targetState(gw, dead)).healthy, false, "the dead target is ejected");
});

Deno.test("circuit breaker opens, half-opens after openFor, and closes on success", async () => {
  const upstreamPort = freePort();
  let server: TestUpstream | undefined = new TestUpstream("a", undefined, upstreamPort);
  const url = `http://127.0.0.1:${upstreamPort}`;
  await using gw = await startGateway(proxyConfig(0, {
    targets: [url],
    retries: 0,
    passive: { failures: 1000, ejectFor: "1s" },
    breaker: { failures: 2, openFor: "700ms", halfOpenRequests: 1 },
  }));
  const port = await gw.port("web");
  try {
    assertEquals(await getText(`http://127.0.0.1:${port}/`), "a");
    await server[Symbol.asyncDispose]();
    server = undefined;
    for (let i = 0; i < 2; i++) {
      const res = await fetch(`http://127.0.0.1:${port}/`);
      assertEquals(res.status, 502);
      await res.body?.cancel();
    }
    assertEquals((await targetState(gw, url)).breaker, "open");
    const shed = await fetch(`http://127.0.0.1:${port}/`);
    assertEquals(shed.status, 503, "an open breaker sheds load without connecting");
    assertEquals((await shed.json()).error.code, "no_healthy_target");
    server = new TestUpstream("a", undefined, upstreamPort);
    await until("the breaker lets a trial through and closes", async () => {
      const res = await fetch(`http://127.0.0.1:${port}/`);
      await res.body?.cancel();
      return res.status === 200;
    });
    assertEquals((await targetState(gw, url)).breaker, "closed");
  } finally {
    await server?.[Symbol.asyncDispose]();
  }
});

Deno.test("retries: a GET moves to another target, a POST is never sent twice", async () => {
  let dropped = 0;
  const dropper = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const accepting = (async () => {
    for await (const conn of dropper) {
      dropped++;
      await conn.read(new Uint8Array(4096)).catch(() => null);
      conn.close();
    }
  })();
  await using good = new TestUpstream("good");
  const dropUrl = `http://127.0.0.1:${(dropper.addr as Deno.NetAddr).port}`;
  try {
    await using gw = await startGateway(proxyConfig(0, {
      balance: "round-robin",
      targets: [dropUrl, good.url],
      retries: 1,
      passive: { failures: 1000, ejectFor: "1s" },
    }));
    const port = await gw.port("web");
    for (let i = 0; i < 4; i++) {
      const res = await fetch(`http://127.0.0.1:${port}/`);
      assertEquals(res.status, 200, "GETs succeed through the retry");
      await res.body?.cancel();
    }
    const droppedBefore = dropped;
    const goodBefore = good.hits;
    const statuses: number[] = [];
    for (let i = 0; i < 4; i++) {
      const res = await fetch(`http://127.0.0.1:${port}/`, { method: "POST", body: "order" });
      statuses.push(res.status);
      await res.body?.cancel();
    }
    const failed = statuses.filter((s) => s === 502).length;
    assertEquals(
      failed,
      dropped - droppedBefore,
      "every POST that reached the dropper failed, none retried",
    );
    assertEquals(
      good.hits - goodBefore,
      4 - failed,
      "POSTs that failed were not repeated on the good target",
    );
    assert(failed >= 1, `some POSTs hit the dropping target (${statuses})`);
  } finally {
    dropper.close();
    await accepting.catch(() => {});
  }
});

Deno.test("streams a 64 MB body both ways, and limits a chunked body with 413", async () => {
  await using echo = new TestUpstream("echo", (req) => new Response(req.body));
  await using gw = await startGateway({
    ...proxyConfig(0, { targets: [echo.url] }),
    routes: [
      {
        name: "small",
        match: { path: "/small" },
        limits: { maxBodySize: "1KB" },
        target: { upstream: "api" },
      },
      {
        name: "echo",
        match: { path: "/*" },
        limits: { maxBodySize: "1GB" },
        target: { upstream: "api" },
      },
    ],
  });
  const port = await gw.port("web");
  const chunk = new Uint8Array(64 * 1024).map((_, i) => i % 251);
  const chunks = 1024;
  let sent = 0;
  const body = new ReadableStream<Uint8Array>({
    pull(controller) {
      if (sent++ === chunks) controller.close();
      else controller.enqueue(chunk);
    },
  });
  const res = await fetch(`http://127.0.0.1:${port}/echo`, { method: "POST", body });
  assertEquals(res.status, 200);
  let received = 0;
  let mismatches = 0;
  for await (const part of res.body!) {
    for (let i = 0; i < part.length; i++) {
      if (part[i] !== ((received + i) % chunk.length) % 251) mismatches++;
    }
    received += part.length;
  }
  assertEquals(received, chunk.length * chunks);
  assertEquals(mismatches, 0, "the bytes came back unchanged");

  const tooBig = await fetch(`http://127.0.0.1:${port}/small`, {
    method: "POST",
    body: ReadableStream.from([new Uint8Array(800), new Uint8Array(800)]),
  });
  assertEquals(tooBig.status, 413, "a chunked body over the limit");
  await tooBig.body?.cancel();
});

Deno.test("forwarded headers, hop-by-hop stripping and stripPrefix", async () => {
  await using echo = new TestUpstream(
    "echo",
    (req) =>
      Response.json({
        path: new URL(req.url).pathname + new URL(req.url).search,
        headers: Object.fromEntries(req.headers),
      }, {
        headers: { connection: "x-internal", "x-internal": "secret", "keep-alive": "timeout=5" },
      }),
  );
  await using gw = await startGateway(
    proxyConfig(0, { targets: [echo.url] }, {
      match: { path: "/api/*" },
      target: { upstream: "api", stripPrefix: "/api" },
    }),
  );
  const port = await gw.port("web");
  const res = await fetch(`http://127.0.0.1:${port}/api/items?x=1`, {
    headers: {
      "x-forwarded-for": "10.1.1.1",
      connection: "x-drop-me",
      "x-drop-me": "1",
      "proxy-authorization": "p",
    },
  });
  const seen = await res.json();
  assertEquals(seen.path, "/items?x=1");
  // No trusted proxies configured: the client's own X-Forwarded-For is replaced, not extended.
  assertEquals(seen.headers["x-forwarded-for"], "127.0.0.1");
  assertEquals(seen.headers["x-forwarded-proto"], "http");
  assertEquals(seen.headers["x-forwarded-host"], `127.0.0.1:${port}`);
  assertStringIncludes(seen.headers["via"], "1.1 gateway");
  assertEquals(seen.headers["x-drop-me"], undefined);
  assertEquals(seen.headers["proxy-authorization"], undefined);
  assertEquals(
    res.headers.get("x-internal"),
    null,
    "headers named in the upstream's Connection are dropped",
  );
  assertEquals(res.headers.get("keep-alive"), null);
});

Deno.test("upstream failures map to 502, 503 and 504 with JSON bodies naming the upstream", async () => {
  await using slow = new TestUpstream("slow", async () => {
    await new Promise((r) => setTimeout(r, 3000));
    return new Response("late");
  });
  const dead = `http://127.0.0.1:${freePort()}`;
  await using gw = await startGateway({
    listeners: { web: { type: "http", host: "127.0.0.1", port: 0 } },
    routes: [
      { match: { path: "/dead" }, target: { upstream: "dead" } },
      { match: { path: "/slow" }, target: { upstream: "slow" } },
    ],
    upstreams: {
      dead: { targets: [dead], retries: 0, passive: { failures: 1, ejectFor: "1m" } },
      slow: { targets: [slow.url], timeouts: { connect: "1s", response: "300ms" } },
    },
  });
  const port = await gw.port("web");
  const unreachable = await fetch(`http://127.0.0.1:${port}/dead`);
  assertEquals(unreachable.status, 502);
  const body = await unreachable.json();
  assertEquals(body.error.code, "upstream_unreachable");
  assertStringIncludes(body.error.message, 'upstream "dead"');
  const none = await fetch(`http://127.0.0.1:${port}/dead`);
  assertEquals(none.status, 503);
  assertEquals((await none.json()).error.code, "no_healthy_target");
  const timeout = await fetch(`http://127.0.0.1:${port}/slow`);
  assertEquals(timeout.status, 504);
  assertEquals((await timeout.json()).error.code, "upstream_timeout");
});
