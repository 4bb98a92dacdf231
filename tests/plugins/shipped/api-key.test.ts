/**
 * The shipped api-key plugin through the real gateway: 401 without a key,
 * 403 with a wrong one (the gateway's JSON error shape), keys from `env:`,
 * the key stripped from headers and query before the upstream, the key's name
 * forwarded and not forgeable, Bearer keys, counters, bad settings refused.
 */

import { assert, assertEquals, assertStringIncludes } from "../../helpers/assert.ts";
import { type Echo, echoUpstream, gatewayWith, metric } from "./shipped.ts";
import { gatewayArgv } from "../../helpers/gateway.ts";

const ALICE = "alice-key-3f9a0c1d2b";
const BOB = "bob-key-77e1c0ffee";

const ROUTES = [
  { name: "api", match: { path: "/api/*" }, plugins: ["api-key"], target: { upstream: "api" } },
  { name: "open", match: { path: "/open" }, target: { respond: { body: "open" } } },
];

Deno.test("api-key: 401 without a key, 403 with a wrong one, keys never reach the upstream", async () => {
  await using upstream = echoUpstream();
  const { gateway, url } = await gatewayWith(["api-key"], upstream.url, {
    plugins: {
      settings: {
        "api-key": {
          keys: { alice: "env:SHIPPED_ALICE_KEY", bob: BOB },
          query: "api_key",
          forwardName: "x-consumer",
        },
      },
    },
    routes: ROUTES,
  }, { env: { SHIPPED_ALICE_KEY: ALICE } });
  await using _gateway = gateway;

  const missing = await fetch(`${url}/api/orders`);
  assertEquals(missing.status, 401);
  const requestId = missing.headers.get("x-request-id")!;
  assertEquals(await missing.json(), {
    error: {
      status: 401,
      code: "api_key_missing",
      message: "an API key is required in the x-api-key header or the api_key query parameter",
      requestId,
    },
  });
  assertEquals(missing.headers.get("www-authenticate"), `ApiKey header="x-api-key"`);

  const wrong = await fetch(`${url}/api/orders`, { headers: { "x-api-key": `${ALICE}x` } });
  assertEquals(wrong.status, 403);
  const wrongBody = await wrong.json();
  assertEquals(wrongBody.error.code, "api_key_invalid");
  assertEquals(wrongBody.error.requestId, wrong.headers.get("x-request-id"));
  assertEquals(upstream.seen.length, 0, "refused requests never reach the upstream");

  const alice = await fetch(`${url}/api/orders`, {
    headers: { "x-api-key": ALICE, "x-consumer": "root" },
  });
  assertEquals(alice.status, 200);
  const aliceEcho = await alice.json() as Echo;
  assertEquals(aliceEcho.headers["x-api-key"], undefined, "the key header is removed");
  assertEquals(aliceEcho.headers["x-consumer"], "alice", "the key's name, not the client's value");

  const byQuery = await fetch(`${url}/api/orders?a=1&api_key=${BOB}&b=x%20y+z`);
  assertEquals(byQuery.status, 200);
  const queryEcho = await byQuery.json() as Echo;
  assertEquals(queryEcho.url, "/api/orders?a=1&b=x%20y+z", "only the key parameter is removed");
  assertEquals(queryEcho.headers["x-consumer"], "bob");

  assertEquals(await (await fetch(`${url}/open`)).text(), "open", "other routes need no key");

  const checks = (labels: string) =>
    metric(gateway, `gateway_plugin_api_key_checks_total{${labels}}`);
  assertEquals(await checks('key="alice",plugin="api-key",result="accepted",route="api"'), 1);
  assertEquals(await checks('key="bob",plugin="api-key",result="accepted",route="api"'), 1);
  assertEquals(await checks('key="",plugin="api-key",result="missing",route="api"'), 1);
  assertEquals(await checks('key="",plugin="api-key",result="invalid",route="api"'), 1);
});

Deno.test("api-key: a Bearer key in Authorization, and the query ignored when not configured", async () => {
  await using upstream = echoUpstream();
  const { gateway, url } = await gatewayWith(["api-key"], upstream.url, {
    plugins: { settings: { "api-key": { keys: { ci: BOB }, header: "Authorization" } } },
    routes: ROUTES,
  });
  await using _gateway = gateway;

  const res = await fetch(`${url}/api/x`, { headers: { authorization: `Bearer ${BOB}` } });
  assertEquals(res.status, 200);
  const echo = await res.json() as Echo;
  assertEquals(echo.headers.authorization, undefined);
  assertEquals(echo.headers["x-consumer"], undefined, "no name is forwarded unless asked");

  const inQuery = await fetch(`${url}/api/x?api_key=${BOB}`);
  assertEquals(inQuery.status, 401);
  assertStringIncludes((await inQuery.json()).error.message, "authorization header");
});

Deno.test("api-key: bad settings stop the gateway from starting, naming each problem", async () => {
  await using upstream = echoUpstream();
  const { gateway } = await gatewayWith(["api-key"], upstream.url, {
    plugins: {
      settings: {
        "api-key": {
          keys: { a: "same-key-0001", b: "same-key-0001", c: "", d: "sha256:abc" },
          header: "x key",
        },
      },
    },
    routes: ROUTES,
  }, { noWait: true });
  await using _gateway = gateway;
  const status = await gateway.exited();
  assert(!status.success, "the gateway must refuse the config");
  assertStringIncludes(
    gateway.output,
    "plugins.settings.api-key: keys.b is the same key as keys.a",
  );
  assertStringIncludes(gateway.output, "keys.c must be a non-empty string");
  assertStringIncludes(gateway.output, 'keys.d: a digest is "sha256:" and 64 lowercase hex');
  assertStringIncludes(gateway.output, "header must be a header name");
});

Deno.test("api-key: the digest `gateway token` prints stands for its key in the config", async () => {
  const [cmd, ...args] = gatewayArgv();
  const made = await new Deno.Command(cmd, { args: [...args, "token", "ci"], stdout: "piped" })
    .output();
  assert(made.success, "gateway token exits 0");
  const printed = new TextDecoder().decode(made.stdout);
  const key = /^key: +(gw_[A-Za-z0-9_-]{43})$/m.exec(printed)?.[1];
  const digest = /"ci": "(sha256:[0-9a-f]{64})"/.exec(printed)?.[1];
  assert(key && digest, printed);

  await using upstream = echoUpstream();
  const { gateway, url } = await gatewayWith(["api-key"], upstream.url, {
    plugins: { settings: { "api-key": { keys: { ci: digest }, forwardName: "x-consumer" } } },
    routes: ROUTES,
  });
  await using _gateway = gateway;
  const accepted = await fetch(`${url}/api/x`, { headers: { "x-api-key": key } });
  assertEquals(accepted.status, 200);
  assertEquals((await accepted.json() as Echo).headers["x-consumer"], "ci");
  const digestAsKey = await fetch(`${url}/api/x`, { headers: { "x-api-key": digest } });
  assertEquals(digestAsKey.status, 403, "the digest itself is not a key");
  await digestAsKey.body?.cancel();
});

Deno.test("api-key: a bad reload keeps the old keys, a good one rotates them", async () => {
  await using upstream = echoUpstream();
  const { gateway, url } = await gatewayWith(["api-key"], upstream.url, {
    plugins: { settings: { "api-key": { keys: { alice: ALICE } } } },
    routes: ROUTES,
  });
  await using _gateway = gateway;
  const config = JSON.parse(await Deno.readTextFile(gateway.configFile));
  config.plugins.settings["api-key"].keys = { alice: BOB, bob: BOB };
  await gateway.writeConfig(config);
  const reload = await gateway.admin("/reload", { method: "POST" });
  assertEquals(reload.status, 422);
  assertStringIncludes(
    (await reload.json()).error.message,
    "keys.bob is the same key as keys.alice",
  );
  const res = await fetch(`${url}/api/x`, { headers: { "x-api-key": ALICE } });
  assertEquals(res.status, 200, "the running version keeps its keys");
  await res.body?.cancel();

  config.plugins.settings["api-key"].keys = { alice: BOB };
  await gateway.writeConfig(config);
  const rotated = await gateway.admin("/reload", { method: "POST" });
  assertEquals(rotated.status, 200, await rotated.clone().text());
  await rotated.body?.cancel();
  const statuses = [];
  for (const key of [ALICE, BOB]) {
    const answer = await fetch(`${url}/api/x`, { headers: { "x-api-key": key } });
    await answer.body?.cancel();
    statuses.push(answer.status);
  }
  assertEquals(statuses, [403, 200], "a good reload rotates the keys");
});
