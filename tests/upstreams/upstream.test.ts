/**
 * State that survives a reload: two builds of an upstream on one
 * TargetStatePool, the way the gateway reloads (the new one is built and
 * started beside the old, then the old one stops), against real loopback
 * servers.
 */

import { assert, assertEquals } from "../helpers/assert.ts";
import { serveDropper, serveTarget, type TestServer } from "../helpers/test_server.ts";
import { until } from "../helpers/wait.ts";
import { UpstreamConfig } from "../../src/upstreams/config.ts";
import type { Target } from "../../src/pipeline/stage.ts";
import type { UpstreamClient } from "../../src/upstreams/client.ts";
import { createHttp1Client } from "../../src/upstreams/http1_client.ts";
import { createUpstreamTarget } from "../../src/upstreams/proxy.ts";
import { TargetStatePool } from "../../src/upstreams/target_state.ts";
import { Upstream } from "../../src/upstreams/upstream.ts";

/** A backend that answers its name, or runs `handler`, and counts the requests it gets. */
function backend(name: string, handler?: (request: Request) => Response | Promise<Response>) {
  const paths: string[] = [];
  const server = Deno.serve({ hostname: "127.0.0.1", port: 0, onListen() {} }, (request) => {
    paths.push(new URL(request.url).pathname);
    return handler?.(request) ?? new Response(name);
  });
  return {
    url: `http://127.0.0.1:${server.addr.port}`,
    paths,
    [Symbol.asyncDispose]: () => server.shutdown(),
  };
}

/** The gateway's half of a reload: builds, commits (serves it), and lets the old one go. */
class ReloadingProxy implements AsyncDisposable {
  readonly client: UpstreamClient = createHttp1Client();
  readonly states = new TargetStatePool();
  upstream: Upstream | undefined;
  readonly #server: TestServer;
  #target: Target | undefined;

  constructor() {
    this.#server = serveTarget((c) => this.#target!(c));
  }

  get url(): string {
    return this.#server.url;
  }

  /** A new upstream on the shared pool, not serving yet. */
  build(config: Record<string, unknown>): Upstream {
    return new Upstream("api", UpstreamConfig.parse(config), this.client, this.states);
  }

  /** Starts `next`, serves it, and stops the upstream it replaces. */
  async commit(next: Upstream): Promise<Upstream> {
    const previous = this.upstream;
    next.start();
    this.upstream = next;
    this.#target = createUpstreamTarget({ upstream: "api" }, next, this.client);
    await previous?.stop();
    return next;
  }

  /** A reload to `config`. */
  reload(config: Record<string, unknown>): Promise<Upstream> {
    return this.commit(this.build(config));
  }

  async send(): Promise<{ status: number; text: string }> {
    const response = await fetch(this.url);
    return { status: response.status, text: await response.text() };
  }

  target(url: string) {
    return this.upstream!.snapshot().targets.find((target) => target.url === url)!;
  }

  async [Symbol.asyncDispose](): Promise<void> {
    await this.upstream?.stop();
    await this.#server[Symbol.asyncDispose]();
    this.client.close();
  }
}

Deno.test("a target ejected by passive health stays out after a reload", async () => {
  await using good = backend("good");
  await using bad = serveDropper();
  await using proxy = new ReloadingProxy();
  const config = {
    targets: [bad.url, good.url],
    retries: 0,
    passive: { failures: 1, ejectFor: "10m" },
  };
  await proxy.reload(config);
  assertEquals((await proxy.send()).status, 502, "round-robin tries the dropping target first");
  assertEquals(proxy.target(bad.url).healthy, false);
  const dropped = bad.seen.connections;

  await proxy.reload({ ...config, timeouts: { connect: "3s" } });
  assertEquals(proxy.target(bad.url).healthy, false);
  assert(proxy.target(bad.url).ejectedUntil !== undefined);
  for (let i = 0; i < 4; i++) assertEquals(await proxy.send(), { status: 200, text: "good" });
  assertEquals(bad.seen.connections, dropped, "the ejected target got no request");
});

Deno.test("an open circuit breaker stays open after a reload", async () => {
  await using bad = serveDropper();
  await using proxy = new ReloadingProxy();
  const config = {
    targets: [bad.url],
    retries: 0,
    passive: { failures: 1000 },
    breaker: { failures: 1, openFor: "10m" },
  };
  await proxy.reload(config);
  assertEquals((await proxy.send()).status, 502);
  assertEquals(proxy.target(bad.url).breaker, "open");
  const dropped = bad.seen.connections;

  await proxy.reload({ ...config, retries: 1 });
  assertEquals(proxy.target(bad.url).breaker, "open");
  assertEquals((await proxy.send()).status, 503, "shed without connecting");
  assertEquals(bad.seen.connections, dropped);
});

Deno.test("least-connections counts the old build's requests still in flight", async () => {
  const hold = Promise.withResolvers<void>();
  let slowRequests = 0;
  await using slow = backend("slow", async () => {
    if (++slowRequests === 1) await hold.promise;
    return new Response("slow");
  });
  await using fast = backend("fast");
  await using proxy = new ReloadingProxy();
  const config = { targets: [slow.url, fast.url], balance: "least-connections", retries: 0 };
  await proxy.reload(config);
  const held = proxy.send();
  try {
    await until("the slow backend to hold a request", () => slow.paths.length === 1);
    await proxy.reload({ ...config, timeouts: { connect: "3s" } });
    assertEquals(proxy.target(slow.url).inFlight, 1);
    assertEquals(await proxy.send(), { status: 200, text: "fast" });
  } finally {
    hold.resolve();
  }
  assertEquals(await held, { status: 200, text: "slow" });
  await until("the held request to be released", () => proxy.target(slow.url).inFlight === 0);
  assertEquals(proxy.target(fast.url).inFlight, 0);
});

Deno.test("a changed health check keeps a down target down until the new check passes", async () => {
  await using server = backend("server", (request) => {
    const path = new URL(request.url).pathname;
    return new Response(path, { status: path === "/healthz" ? 503 : 200 });
  });
  await using proxy = new ReloadingProxy();
  const check = { interval: "10m", healthyThreshold: 1, unhealthyThreshold: 1 };
  await proxy.reload({ targets: [server.url], healthCheck: { ...check, path: "/healthz" } });
  await until("the first check to fail", () => proxy.target(server.url).healthy === false);

  const next = proxy.build({ targets: [server.url], healthCheck: { ...check, path: "/ready" } });
  assertEquals(next.snapshot().targets[0].healthy, false, "no false healthy before its check");
  assertEquals(next.pick(), undefined);
  await proxy.commit(next);
  await until("the new check to pass", () => proxy.target(server.url).healthy);
  assertEquals(await proxy.send(), { status: 200, text: "/" });
  assertEquals(server.paths.filter((path) => path !== "/"), ["/healthz", "/ready"]);
});

Deno.test("a URL no upstream references any more loses its state; a thrown-away build changes nothing", async () => {
  const [a, b, c] = ["http://127.0.0.1:9001", "http://127.0.0.1:9002", "http://127.0.0.1:9003"];
  const states = new TargetStatePool();
  const client = createHttp1Client();
  const build = (targets: string[]) =>
    new Upstream(
      "api",
      UpstreamConfig.parse({ targets, passive: { failures: 1, ejectFor: "10m" } }),
      client,
      states,
    );
  const first = build([a, b]);
  for (const target of first.targets) {
    const picked = first.pick(new Set(first.targets.filter((other) => other !== target)))!;
    picked.reportFailure("connect: refused");
    picked.release();
  }
  const healthy = (upstream: Upstream) => upstream.snapshot().targets.map((t) => t.healthy);
  assertEquals(healthy(first), [false, false]);

  const abandoned = build([a, c]);
  await abandoned.stop();
  await abandoned.stop();
  assertEquals([states.size, states.slotOf(c)], [2, undefined]);

  const second = build([b, c]);
  await first.stop();
  assertEquals([states.size, states.slotOf(a)], [2, undefined]);
  assertEquals(healthy(second), [false, true], "b keeps its ejection");
  const third = build([a]);
  assertEquals(healthy(third), [true], "a starts fresh");
  await second.stop();
  await third.stop();
  assertEquals(states.size, 0);
  client.close();
});
