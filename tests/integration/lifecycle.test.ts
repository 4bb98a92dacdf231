/**
 * Lifecycle of the real gateway process: atomic reload under load, reload
 * triggers (admin API, CLI, SIGHUP, file change), admin token checks, TLS,
 * and the SIGTERM drain.
 */

import { assert, assertEquals, assertMatch, assertStringIncludes } from "../helpers/assert.ts";
import { ADMIN_TOKEN, freePort, gatewayArgv, startGateway } from "../helpers/gateway.ts";
import { selfSignedCertificate } from "../helpers/tls.ts";

function respondConfig(port: number, body: string, extra: Record<string, unknown> = {}) {
  return {
    listeners: { web: { type: "http", host: "127.0.0.1", port } },
    routes: [{ name: "hello", match: { path: "/hello" }, target: { respond: { body } } }],
    ...extra,
  };
}

/** `config` with the admin section the gateway started with (port 0: it keeps its bound port). */
function withAdmin(config: Record<string, unknown>) {
  return {
    ...config,
    admin: { host: "127.0.0.1", port: 0, token: ADMIN_TOKEN },
    log: { level: "info", format: "json" },
  };
}

Deno.test("20 reloads under load, 5 of them invalid: no request fails, each refusal is reported", async () => {
  await using gw = await startGateway(respondConfig(0, "v0"));
  const port = await gw.port("web");
  using blocker = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const blocked = blocker.addr.port;
  const invalid: [Record<string, unknown> | string, RegExp][] = [
    ['{ "listeners": ', /invalid JSON/],
    [
      respondConfig(0, "x", { routes: [{ target: { upstream: "nope" } }] }),
      /unknown upstream "nope"/,
    ],
    [respondConfig(0, "x", { routes: [{ target: {} }] }), /a target needs one of/],
    [
      {
        ...respondConfig(0, "x"),
        listeners: {
          web: { type: "http", host: "127.0.0.1", port: 0 },
          extra: { type: "http", host: "127.0.0.1", port: blocked },
        },
      },
      new RegExp(`listener "extra": port ${blocked} on 127.0.0.1 is already in use`),
    ],
    [
      {
        ...respondConfig(0, "x"),
        listeners: {
          web: { type: "http", host: "127.0.0.1", port: 0, tls: { cert: "no.pem", key: "no.key" } },
        },
      },
      /tls\.cert: cannot read/,
    ],
  ];

  let running = true;
  let sent = 0;
  const failures: string[] = [];
  const seen = new Set<string>();
  const clients = Array.from({ length: 4 }, async () => {
    while (running) {
      try {
        const res = await fetch(`http://127.0.0.1:${port}/hello`);
        const text = await res.text();
        sent++;
        if (res.status !== 200) failures.push(`${res.status} ${text}`);
        else seen.add(text);
      } catch (error) {
        failures.push(String(error));
      }
    }
  });

  let version = 0;
  for (let i = 1; i <= 20; i++) {
    if (i % 4 === 0) {
      const [config, reason] = invalid[i / 4 - 1];
      await gw.writeConfig(typeof config === "string" ? config : withAdmin(config));
      const res = await gw.admin("/reload", { method: "POST" });
      const body = await res.json();
      assertEquals(res.status, 422, JSON.stringify(body));
      assertMatch(body.error.message, reason);
      const check = await fetch(`http://127.0.0.1:${port}/hello`);
      assertEquals(await check.text(), `v${version}`, "the old config keeps serving");
    } else {
      version = i;
      await gw.writeConfig(withAdmin(respondConfig(0, `v${i}`)));
      const res = await gw.admin("/reload", { method: "POST" });
      assertEquals(res.status, 200, await res.clone().text());
      await res.body?.cancel();
      const check = await fetch(`http://127.0.0.1:${port}/hello`);
      assertEquals(await check.text(), `v${i}`);
    }
  }
  running = false;
  await Promise.all(clients);
  assertEquals(failures, [], `failed requests out of ${sent}`);
  assert(sent > 20, `the load loop sent ${sent} requests`);
  assert(seen.size > 5, "clients saw many config versions");
  const logged = Date.now() + 5000;
  const refusals = () => gw.lines.filter((line) => line.includes("config reload refused")).length;
  while (refusals() < 5 && Date.now() < logged) await new Promise((r) => setTimeout(r, 50));
  assert(refusals() >= 5, `each invalid config is logged (${refusals()})`);
  const status = await (await gw.admin("/status")).json();
  assertMatch(status.lastReloadError ?? "", /tls\.cert|already in use|target|upstream|JSON/);
});

Deno.test("reload by file change, SIGHUP and `gateway reload`", async () => {
  await using gw = await startGateway(respondConfig(0, "one"));
  const port = await gw.port("web");
  const read = async () => await (await fetch(`http://127.0.0.1:${port}/hello`)).text();
  assertEquals(await read(), "one");

  await gw.writeConfig(withAdmin(respondConfig(0, "two")));
  const deadline = Date.now() + 10_000;
  while (await read() !== "two" && Date.now() < deadline) {
    await new Promise((r) => setTimeout(r, 50));
  }
  assertEquals(await read(), "two", "a saved file is picked up");

  await Deno.writeTextFile(
    gw.configFile,
    JSON.stringify(withAdmin(respondConfig(0, "three"))),
  );
  gw.child.kill("SIGHUP");
  const deadline2 = Date.now() + 10_000;
  while (await read() !== "three" && Date.now() < deadline2) {
    await new Promise((r) => setTimeout(r, 50));
  }
  assertEquals(await read(), "three", "SIGHUP reloads");

  await gw.writeConfig(withAdmin(respondConfig(0, "four")));
  const [cmd, ...args] = gatewayArgv();
  const out = await new Deno.Command(cmd, {
    args: [...args, "reload", "--config", gw.configFile, "--admin", gw.adminUrl],
    stdin: "null",
  }).output();
  assertEquals(out.code, 0, new TextDecoder().decode(out.stderr));
  assertEquals(await read(), "four");

  await gw.writeConfig(withAdmin({ ...respondConfig(0, "x"), routes: 7 }));
  const refused = await new Deno.Command(cmd, {
    args: [...args, "reload", "--config", gw.configFile, "--admin", gw.adminUrl],
    stdin: "null",
  }).output();
  assertEquals(refused.code, 1);
  assertMatch(
    new TextDecoder().decode(refused.stderr),
    /config\.json:\d+:\d+: routes: must be an array, not a number/,
  );
  assertEquals(await read(), "four");
});

Deno.test("admin API: token required, wrong token refused, probes open, config redacted", async () => {
  await using gw = await startGateway(respondConfig(0, "hi", {
    upstreams: { api: { targets: ["http://127.0.0.1:1"] } },
  }));
  const none = await fetch(`${gw.adminUrl}/status`);
  assertEquals(none.status, 401);
  assertStringIncludes(await none.text(), "Bearer");
  const wrong = await fetch(`${gw.adminUrl}/status`, {
    headers: { authorization: "Bearer nope-nope-nope-nope" },
  });
  assertEquals(wrong.status, 403);
  await wrong.body?.cancel();
  assertEquals((await fetch(`${gw.adminUrl}/healthz`)).status, 200);
  assertEquals((await fetch(`${gw.adminUrl}/readyz`)).status, 200);
  const status = await (await gw.admin("/status")).json();
  assertEquals(status.listeners[0].name, "web");
  assert(status.configHash, "status has the config hash");
  assert(status.upstreams.api.targets.length === 1, "status shows upstream targets");
  const config = await (await gw.admin("/config")).json();
  assertEquals(config.admin.token, "[redacted]");
  const metrics = await (await gw.admin("/metrics")).text();
  assertStringIncludes(metrics, "gateway_process_memory_bytes");
  assertStringIncludes(metrics, "gateway_http_requests_in_flight");
});

Deno.test("TLS listener serves HTTPS with the configured certificate", async () => {
  const { cert, key } = await selfSignedCertificate();
  await using gw = await startGateway({
    listeners: {
      secure: {
        type: "http",
        host: "127.0.0.1",
        port: 0,
        tls: { cert: "tls/cert.pem", key: "tls/key.pem" },
      },
    },
    routes: [{ target: { respond: { body: "secure hello" } } }],
  }, { files: { "tls/cert.pem": cert, "tls/key.pem": key } });
  const port = await gw.port("secure");
  using client = Deno.createHttpClient({ caCerts: [cert] });
  const res = await fetch(`https://localhost:${port}/`, { client });
  assertEquals(await res.text(), "secure hello");
});

Deno.test("SIGTERM: stops accepting, lets a slow in-flight request finish, exits 0", async () => {
  const slow = Deno.serve({ hostname: "127.0.0.1", port: 0, onListen() {} }, async () => {
    await new Promise((r) => setTimeout(r, 1500));
    return new Response("finished");
  });
  const gw = await startGateway({
    listeners: { web: { type: "http", host: "127.0.0.1", port: 0 } },
    routes: [{ target: { upstream: "slow" } }],
    upstreams: { slow: { targets: [`http://127.0.0.1:${slow.addr.port}`] } },
  });
  const port = await gw.port("web");
  try {
    const inFlight = fetch(`http://127.0.0.1:${port}/`);
    await new Promise((r) => setTimeout(r, 400));
    gw.child.kill("SIGTERM");
    const res = await inFlight;
    assertEquals(res.status, 200);
    assertEquals(await res.text(), "finished");
    const status = await gw.exited();
    assertEquals(status.code, 0);
    let refused = false;
    try {
      await fetch(`http://127.0.0.1:${port}/`);
    } catch {
      refused = true;
    }
    assert(refused, "no longer accepting after stop");
  } finally {
    await gw.stop();
    await slow.shutdown();
  }
});

Deno.test("a listener that cannot restart on its address refuses the reload; a host change on one port works", async () => {
  const port = freePort();
  await using gw = await startGateway(
    respondConfig(port, "plain", {
      listeners: { web: { type: "http", host: "0.0.0.0", port } },
    }),
    { files: { "junk.pem": "not a certificate" } },
  );
  const read = async () => await (await fetch(`http://127.0.0.1:${port}/hello`)).text();
  assertEquals(await read(), "plain");

  const broken = respondConfig(port, "tls", {
    listeners: {
      web: { type: "http", host: "0.0.0.0", port, tls: { cert: "junk.pem", key: "junk.pem" } },
    },
  });
  await gw.writeConfig(withAdmin(broken));
  for (let attempt = 0; attempt < 2; attempt++) {
    const refused = await gw.admin("/reload", { method: "POST" });
    assertEquals(refused.status, 422, "refused every time, not 'unchanged' the second time");
    assertStringIncludes((await refused.json()).error.message, 'listener "web"');
    assertEquals(await read(), "plain", "the old listener serves again");
  }

  await gw.writeConfig(withAdmin(respondConfig(port, "loopback")));
  const moved = await gw.admin("/reload", { method: "POST" });
  assertEquals(moved.status, 200, await moved.clone().text());
  await moved.body?.cancel();
  assertEquals(await read(), "loopback", "0.0.0.0 → 127.0.0.1 on the same port");
});
