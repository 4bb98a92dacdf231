/**
 * State that outlives a config, through the real gateway process: an
 * upstream target ejected before a reload stays ejected after it, and a
 * spent rate-limit bucket stays spent across a reload that keeps its limit.
 */

import { assertEquals } from "../helpers/assert.ts";
import { serveDropper } from "../helpers/test_server.ts";
import { ADMIN_TOKEN, freePort, type GatewayProcess, startGateway } from "../helpers/gateway.ts";

/** Writes `config` and reloads (admin port 0: the gateway keeps its bound port). */
async function reload(gw: GatewayProcess, config: Record<string, unknown>): Promise<void> {
  await gw.writeConfig({
    ...config,
    admin: { host: "127.0.0.1", port: 0, token: ADMIN_TOKEN },
    log: { level: "info", format: "json" },
  });
  const res = await gw.admin("/reload", { method: "POST" });
  assertEquals(res.status, 200, await res.text());
}

async function get(url: string): Promise<{ status: number; text: string }> {
  const res = await fetch(url);
  return { status: res.status, text: await res.text() };
}

Deno.test("an ejected target gets no traffic right after a reload; a spent bucket stays spent", async () => {
  await using good = Deno.serve(
    { hostname: "127.0.0.1", port: 0, onListen() {} },
    () => new Response("good"),
  );
  await using bad = serveDropper();
  const port = freePort();
  const web = `http://127.0.0.1:${port}`;
  const config = {
    listeners: { web: { type: "http", host: "127.0.0.1", port } },
    routes: [
      { name: "api", match: { path: "/api/*" }, target: { upstream: "api" } },
      {
        name: "limited",
        match: { path: "/limited" },
        target: { respond: { body: "limited" } },
        rateLimit: { total: { rate: 1, per: "10m" } },
      },
    ],
    upstreams: {
      api: {
        targets: [bad.url, `http://127.0.0.1:${good.addr.port}`],
        retries: 0,
        passive: { failures: 1, ejectFor: "10m" },
      },
    },
  };
  await using gw = await startGateway(config);

  assertEquals((await get(`${web}/api/`)).status, 502, "round-robin tries the dropper first");
  assertEquals(await get(`${web}/limited`), { status: 200, text: "limited" });
  assertEquals((await get(`${web}/limited`)).status, 429);
  const dropped = bad.seen.connections;

  await reload(gw, {
    ...config,
    routes: [
      ...config.routes,
      { name: "added", match: { path: "/added" }, target: { respond: { body: "added" } } },
    ],
  });
  assertEquals(await get(`${web}/added`), { status: 200, text: "added" }, "the reload is live");
  for (let i = 0; i < 4; i++) {
    assertEquals(await get(`${web}/api/`), { status: 200, text: "good" });
  }
  assertEquals(bad.seen.connections, dropped, "the ejected target got no request");
  const status = await (await gw.admin("/status")).json();
  const target = status.upstreams.api.targets.find((t: { url: string }) => t.url === bad.url);
  assertEquals(target.healthy, false);
  assertEquals((await get(`${web}/limited`)).status, 429, "the unchanged limit's bucket is spent");

  await reload(gw, {
    ...config,
    routes: [config.routes[0], {
      ...config.routes[1],
      rateLimit: { total: { rate: 2, per: "10m" } },
    }],
  });
  assertEquals(
    await get(`${web}/limited`),
    { status: 200, text: "limited" },
    "a new limit starts full",
  );
});
