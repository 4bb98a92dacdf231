/**
 * The admin API on fake controls: the bearer token, open probes, reload
 * refusals with their problems, metrics, and stop.
 */

import { assert, assertEquals, assertStringIncludes } from "../helpers/assert.ts";
import { type AdminControls, createAdminApp } from "../../src/admin/api.ts";

const TOKEN = "test-token-0123456789";

/** Fake controls; `overrides` replace single functions, `calls` counts what was asked. */
function fakeControls(overrides: Partial<AdminControls> = {}) {
  const calls = { status: 0, reload: 0, config: 0, metrics: 0, ready: 0, stop: 0 };
  const controls: AdminControls = {
    status: () => {
      calls.status++;
      return { version: "1.2.3", configHash: "abc123" };
    },
    reload: () => {
      calls.reload++;
      return Promise.resolve({ hash: "def456", changed: true });
    },
    config: () => {
      calls.config++;
      return { admin: { token: "[redacted]" } };
    },
    metrics: () => {
      calls.metrics++;
      return "# HELP up Up.\n# TYPE up gauge\nup 1\n";
    },
    ready: () => {
      calls.ready++;
      return true;
    },
    stop: () => {
      calls.stop++;
    },
    connections: () => [],
    closeConnection: () => false,
    modules: [],
    ...overrides,
  };
  return { controls, calls };
}

function request(path: string, init: RequestInit & { token?: string | null } = {}) {
  const { token = TOKEN, ...rest } = init;
  const headers = new Headers(rest.headers);
  if (token !== null) headers.set("authorization", `Bearer ${token}`);
  return new Request(`http://admin.test${path}`, { ...rest, headers });
}

Deno.test("without a token: 401 JSON with WWW-Authenticate, and nothing is asked", async () => {
  const { controls, calls } = fakeControls();
  const app = createAdminApp(controls, TOKEN);
  for (const [method, path] of [["GET", "/status"], ["GET", "/config"], ["POST", "/reload"]]) {
    const res = await app.fetch(request(path, { method, token: null }));
    assertEquals(res.status, 401, path);
    assertEquals(res.headers.get("www-authenticate"), 'Bearer realm="gateway-admin"');
    const body = await res.json();
    assertEquals(body.error.code, "unauthorized");
    assertStringIncludes(body.error.message, "Authorization: Bearer <token>");
  }
  const basic = await app.fetch(
    request("/status", { token: null, headers: { authorization: `Basic ${btoa("a:b")}` } }),
  );
  assertEquals(basic.status, 401, "another scheme");
  await basic.body?.cancel();
  const empty = await app.fetch(request("/status", { token: "" }));
  assertEquals(empty.status, 401, "an empty bearer token");
  await empty.body?.cancel();
  assertEquals([calls.status, calls.config, calls.reload], [0, 0, 0]);
});

Deno.test("a wrong token: 403, whatever its length", async () => {
  const { controls, calls } = fakeControls();
  const app = createAdminApp(controls, TOKEN);
  for (const wrong of ["nope-nope-nope-nope-nope", TOKEN.slice(0, -1), `${TOKEN}x`]) {
    const res = await app.fetch(request("/status", { token: wrong }));
    assertEquals(res.status, 403, JSON.stringify(wrong));
    assertEquals((await res.json()).error.code, "forbidden");
    assertEquals(res.headers.get("www-authenticate"), null);
  }
  assertEquals(calls.status, 0);
});

Deno.test("the Bearer scheme is case-insensitive (RFC 9110)", async () => {
  const { controls } = fakeControls();
  const app = createAdminApp(controls, TOKEN);
  const res = await app.fetch(
    new Request("http://admin/status", { headers: { authorization: `bearer ${TOKEN}` } }),
  );
  assertEquals(res.status, 200);
  await res.body?.cancel();
});

Deno.test("the right token reaches status and config", async () => {
  const { controls, calls } = fakeControls();
  const app = createAdminApp(controls, TOKEN);
  const status = await app.fetch(request("/status"));
  assertEquals(status.status, 200);
  assertEquals(await status.json(), { version: "1.2.3", configHash: "abc123" });
  const config = await app.fetch(request("/config"));
  assertEquals(await config.json(), { admin: { token: "[redacted]" } });
  assertEquals([calls.status, calls.config], [1, 1]);
});

Deno.test("probes need no token; /readyz answers 503 when not ready", async () => {
  let ready = true;
  const { controls } = fakeControls({ ready: () => ready });
  const app = createAdminApp(controls, TOKEN);
  const healthz = await app.fetch(request("/healthz", { token: null }));
  assertEquals([healthz.status, await healthz.json()], [200, { status: "ok" }]);
  const readyz = await app.fetch(request("/readyz", { token: null }));
  assertEquals([readyz.status, await readyz.json()], [200, { status: "ready" }]);
  ready = false;
  const notReady = await app.fetch(request("/readyz", { token: null }));
  assertEquals([notReady.status, await notReady.json()], [503, { status: "not ready" }]);
  const stillHealthy = await app.fetch(request("/healthz", { token: "wrong-wrong-wrong-wrong" }));
  assertEquals(stillHealthy.status, 200, "a wrong token does not matter to probes");
  await stillHealthy.body?.cancel();
});

Deno.test("POST /reload answers with the new hash", async () => {
  const { controls, calls } = fakeControls();
  const app = createAdminApp(controls, TOKEN);
  const res = await app.fetch(request("/reload", { method: "POST" }));
  assertEquals(res.status, 200);
  assertEquals(await res.json(), { status: "ok", hash: "def456", changed: true });
  assertEquals(calls.reload, 1);
  const get = await app.fetch(request("/reload"));
  assertEquals(get.status, 404, "GET /reload is not an endpoint");
  assertEquals((await get.json()).error.code, "no_route");
  assertEquals(calls.reload, 1);
});

Deno.test("a refused reload answers 422 with every problem", async () => {
  const problems = [
    "config.json: routes[0].target: a target needs one of: upstream, static, respond",
    'config.json: listeners.web.port: listener "web" uses tcp:127.0.0.1:80, already used',
  ];
  const { controls } = fakeControls({ reload: () => Promise.reject({ problems }) });
  const res = await createAdminApp(controls, TOKEN).fetch(request("/reload", { method: "POST" }));
  assertEquals(res.status, 422);
  assertEquals(await res.json(), {
    status: "refused",
    error: { status: 422, code: "reload_failed", message: problems.join("\n"), problems },
  });
});

Deno.test("a reload that fails with a plain error answers 422 with its message", async () => {
  const { controls } = fakeControls({
    reload: () => Promise.reject(new Error("listener web: port 80 in use")),
  });
  const res = await createAdminApp(controls, TOKEN).fetch(request("/reload", { method: "POST" }));
  assertEquals(res.status, 422);
  const body = await res.json();
  assertEquals(body.error.problems, ["listener web: port 80 in use"]);
  assertEquals(body.error.message, "listener web: port 80 in use");
});

Deno.test("/metrics is Prometheus text with its content type", async () => {
  const { controls, calls } = fakeControls();
  const res = await createAdminApp(controls, TOKEN).fetch(request("/metrics"));
  assertEquals(res.status, 200);
  assertEquals(res.headers.get("content-type"), "text/plain; version=0.0.4; charset=utf-8");
  assertEquals(await res.text(), "# HELP up Up.\n# TYPE up gauge\nup 1\n");
  assertEquals(calls.metrics, 1);
});

Deno.test("POST /stop answers 202 and then stops; without a token it does not", async () => {
  let stopped!: () => void;
  const stopCalled = new Promise<void>((resolve) => stopped = resolve);
  let stops = 0;
  const { controls } = fakeControls({
    stop: () => {
      stops++;
      stopped();
    },
  });
  const app = createAdminApp(controls, TOKEN);
  const refused = await app.fetch(request("/stop", { method: "POST", token: null }));
  assertEquals(refused.status, 401);
  await refused.body?.cancel();
  const res = await app.fetch(request("/stop", { method: "POST" }));
  assertEquals([res.status, await res.json()], [202, { status: "stopping" }]);
  await stopCalled;
  assertEquals(stops, 1);
});

Deno.test("an unknown endpoint behind the token is a 404 JSON error", async () => {
  const { controls } = fakeControls();
  const app = createAdminApp(controls, TOKEN);
  const res = await app.fetch(request("/nope", { method: "DELETE" }));
  assertEquals(res.status, 404);
  const body = await res.json();
  assertEquals(body.error.code, "no_route");
  assertEquals(body.error.message, "no admin endpoint DELETE /nope");
  const anonymous = await app.fetch(request("/nope", { token: null }));
  assertEquals(anonymous.status, 401, "no probing for endpoints without the token");
  assert(anonymous.headers.get("www-authenticate"));
  await anonymous.body?.cancel();
});
