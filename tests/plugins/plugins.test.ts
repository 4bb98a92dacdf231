/**
 * Plugins through the real gateway process: hook order, short-circuit, body
 * rewrites, functions from routes and from other plugins, the sandbox's
 * permission denials, failures (throw, infinite loop) and hot reload (under
 * load, broken edits, delete and re-add, memory over many reloads).
 */

import { join } from "node:path";
import { assert, assertEquals, assertStringIncludes } from "../helpers/assert.ts";
import { freePort, gatewayArgv, type GatewayProcess, startGateway } from "../helpers/gateway.ts";

/** An echo function plugin: answers with what the function target passed it. */
const ECHO = `export default {
  name: "echo",
  functions: {
    request: (args) => ({ order: args.headers["x-order"] ?? "", body: args.body }),
  },
};
`;

function orderPlugin(name: string, priority: number): string {
  return `export default {
  name: "${name}",
  priority: ${priority},
  onRequest(req) {
    const order = req.headers["x-order"];
    return {
      headers: { ...req.headers, "x-order": order ? order + ",${name}" : "${name}" },
      state: { seen: "${name}" },
    };
  },
  onResponse(res) {
    const order = res.headers["x-resp"];
    const mine = res.state.seen;
    return { headers: { ...res.headers, "x-resp": order ? order + "," + mine : mine } };
  },
};
`;
}

async function pluginsOf(
  gateway: GatewayProcess,
): Promise<Record<string, Record<string, unknown>>> {
  const res = await gateway.admin("/plugins");
  const list = await res.json() as Record<string, unknown>[];
  return Object.fromEntries(list.map((p) => [p.name as string, p]));
}

/** Waits until the admin API shows `name` in a state `check` accepts. */
async function waitForPlugin(
  gateway: GatewayProcess,
  name: string,
  check: (plugin: Record<string, unknown> | undefined) => boolean,
  timeoutMs = 15_000,
): Promise<Record<string, unknown> | undefined> {
  const deadline = Date.now() + timeoutMs;
  let last: Record<string, unknown> | undefined;
  while (Date.now() < deadline) {
    last = (await pluginsOf(gateway))[name];
    if (check(last)) return last;
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
  throw new Error(`plugin ${name} never reached the expected state; last: ${JSON.stringify(last)}`);
}

Deno.test("plugins: hooks run by priority, onResponse in reverse, and a function serves the route", async () => {
  const port = freePort();
  await using _gw = await startGateway({
    listeners: { web: { type: "http", port } },
    routes: [{
      match: { path: "/echo" },
      plugins: ["low", "high"],
      target: { function: { name: "plugin:echo.request" } },
    }],
  }, {
    files: {
      "plugins/low.ts": orderPlugin("low", 1),
      "plugins/high.ts": orderPlugin("high", 10),
      "plugins/echo.ts": ECHO,
    },
  });
  const res = await fetch(`http://127.0.0.1:${port}/echo`);
  assertEquals(res.status, 200);
  assertEquals((await res.json()).order, "high,low");
  assertEquals(res.headers.get("x-resp"), "low,high");
});

Deno.test("plugins: global, listener and route chains apply where they are named", async () => {
  const [front, back] = [freePort(), freePort()];
  await using _gw = await startGateway({
    listeners: {
      front: { type: "http", port: front, plugins: ["mid"] },
      back: { type: "http", port: back },
    },
    plugins: { global: ["low"] },
    routes: [
      { match: { path: "/plain" }, target: { function: { name: "echo.request" } } },
      {
        match: { path: "/all" },
        plugins: ["high"],
        target: { function: { name: "echo.request" } },
      },
    ],
  }, {
    files: {
      "plugins/low.ts": orderPlugin("low", 1),
      "plugins/mid.ts": orderPlugin("mid", 5),
      "plugins/high.ts": orderPlugin("high", 10),
      "plugins/echo.ts": ECHO,
    },
  });
  const order = async (port: number, path: string) =>
    (await (await fetch(`http://127.0.0.1:${port}${path}`)).json()).order;
  assertEquals(await order(front, "/plain"), "mid,low");
  assertEquals(await order(front, "/all"), "high,mid,low");
  assertEquals(await order(back, "/plain"), "low");
  assertEquals(await order(back, "/all"), "high,low");
});

Deno.test("plugins: onRequest answers instead of the target, and rewrites request and response bodies", async () => {
  const port = freePort();
  const rewrite = `export default {
  name: "rewrite",
  async onRequest(req) {
    if (req.path === "/blocked") return { status: 403, body: { blocked: req.path } };
    const body = await req.json();
    return { body: { ...body, stamped: true } };
  },
  async onResponse(res) {
    const data = await res.json();
    return { status: 201, body: { ...data, wrapped: true } };
  },
};
`;
  await using _gw = await startGateway({
    listeners: { web: { type: "http", port } },
    routes: [{
      match: { path: "/*" },
      plugins: ["rewrite"],
      target: { function: { name: "echo.request" } },
    }],
  }, { files: { "plugins/rewrite.ts": rewrite, "plugins/echo.ts": ECHO } });
  const blocked = await fetch(`http://127.0.0.1:${port}/blocked`, { method: "POST", body: "{}" });
  assertEquals(blocked.status, 403);
  assertEquals(await blocked.json(), { blocked: "/blocked" });

  const res = await fetch(`http://127.0.0.1:${port}/orders`, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify({ id: 7 }),
  });
  assertEquals(res.status, 201);
  const echoed = await res.json();
  assertEquals(JSON.parse(echoed.body), { id: 7, stamped: true });
  assertEquals(echoed.wrapped, true);
});

Deno.test("plugins: several Set-Cookie headers survive a hook that changes response headers", async () => {
  const port = freePort();
  const upstream = Deno.serve({ hostname: "127.0.0.1", port: 0, onListen() {} }, () => {
    const headers = new Headers();
    headers.append("set-cookie", "a=1; Path=/");
    headers.append("set-cookie", "b=2; Path=/");
    return new Response("ok", { headers });
  });
  const tagger = `export default {
  name: "tagger",
  onResponse(res) {
    return { headers: { ...res.headers, "x-tagged": "yes" } };
  },
};
`;
  try {
    await using _gw = await startGateway({
      listeners: { web: { type: "http", port } },
      upstreams: { app: { targets: [`http://127.0.0.1:${upstream.addr.port}`] } },
      routes: [{ match: { path: "/*" }, plugins: ["tagger"], target: { upstream: "app" } }],
    }, { files: { "plugins/tagger.ts": tagger } });
    const res = await fetch(`http://127.0.0.1:${port}/`);
    assertEquals(await res.text(), "ok");
    assertEquals(res.headers.get("x-tagged"), "yes");
    assertEquals(res.headers.getSetCookie(), ["a=1; Path=/", "b=2; Path=/"]);
  } finally {
    await upstream.shutdown();
  }
});

Deno.test("plugins: ctx.call reaches another plugin's function with the caller's deadline", async () => {
  const port = freePort();
  const math = `export default {
  name: "math",
  functions: {
    add: ({ a, b }) => a + b,
    slow: () => new Promise((resolve) => setTimeout(() => resolve("late"), 3000)),
  },
};
`;
  const caller = `export default {
  name: "caller",
  functions: {
    sum: async (args, ctx) => ({ sum: await ctx.call("math.add", { a: 2, b: 3 }) }),
    impatient: async (args, ctx) => {
      try {
        return await ctx.call("math.slow", {}, { timeout: 200 });
      } catch (error) {
        return { failed: error.name, message: error.message };
      }
    },
  },
};
`;
  await using _gw = await startGateway({
    listeners: { web: { type: "http", port } },
    routes: [
      { match: { path: "/sum" }, target: { function: { name: "plugin:caller.sum" } } },
      { match: { path: "/impatient" }, target: { function: { name: "caller.impatient" } } },
      { match: { path: "/missing" }, target: { function: { name: "caller.nothing" } } },
    ],
  }, { files: { "plugins/math.ts": math, "plugins/caller.ts": caller } });
  assertEquals(await (await fetch(`http://127.0.0.1:${port}/sum`)).json(), { sum: 5 });
  const impatient = await (await fetch(`http://127.0.0.1:${port}/impatient`)).json();
  assertEquals(impatient.failed, "timeout");
  const missing = await fetch(`http://127.0.0.1:${port}/missing`);
  assertEquals(missing.status, 503);
  assertStringIncludes((await missing.json()).error.message, 'no function "nothing"');
});

Deno.test("plugins: onMessage sees bus messages, replies to requests, and keeps state in its store", async () => {
  const port = freePort();
  const recorder = `export default {
  name: "recorder",
  onMessage: {
    "sensors/+": async (message, ctx) => {
      await ctx.store.set("last/" + message.topic.split("/")[1], message.json());
      ctx.metrics.counter("readings_total", "Readings seen.").inc(1, { sensor: message.topic });
      ctx.metrics.gauge("last_value", "The last reading.").set(message.json().value);
    },
    "ask/time": (message) => message.reply?.({ answer: "now" }),
  },
  functions: {
    last: async (args, ctx) => ({
      one: await ctx.store.get("last/" + args.params.id),
      all: (await ctx.store.list("last/")).map((entry) => entry.key),
    }),
  },
};
`;
  await using gw = await startGateway({
    listeners: { web: { type: "http", port } },
    routes: [
      { match: { path: "/push/:id" }, target: { topic: { topic: "sensors/{id}" } } },
      { match: { path: "/ask" }, target: { topic: { topic: "ask/time", mode: "request" } } },
      { match: { path: "/last/:id" }, target: { function: { name: "recorder.last" } } },
    ],
  }, { files: { "plugins/recorder.ts": recorder } });
  for (const [id, value] of [["a", 1], ["b", 2], ["a", 3]] as const) {
    const res = await fetch(`http://127.0.0.1:${port}/push/${id}`, {
      method: "POST",
      body: JSON.stringify({ value }),
    });
    assertEquals((await res.json()).subscribers, 1);
  }
  let last: { one?: { value: number }; all: string[] } = { all: [] };
  for (let i = 0; i < 100 && last.one?.value !== 3; i++) {
    last = await (await fetch(`http://127.0.0.1:${port}/last/a`)).json();
  }
  assertEquals(last, { one: { value: 3 }, all: ["last/a", "last/b"] });
  assertEquals(await (await fetch(`http://127.0.0.1:${port}/ask`)).json(), { answer: "now" });
  const metrics = await (await gw.admin("/metrics")).text();
  assertStringIncludes(
    metrics,
    'gateway_plugin_readings_total{plugin="recorder",sensor="sensors/a"} 2',
  );
});

Deno.test("plugins: the sandbox denies what the config does not grant, and gives what it does", async () => {
  const port = freePort();
  const target = freePort();
  const nosy = `export default {
  name: "nosy",
  permissions: { read: ["/etc/hostname"], env: ["GW_TEST_SECRET", "GW_TEST_OTHER"], net: ["127.0.0.1:${target}"] },
  functions: {
    probe: async () => {
      const attempt = async (fn) => {
        try {
          await fn();
          return "allowed";
        } catch (error) {
          return error.name;
        }
      };
      return {
        read: await attempt(() => Deno.readTextFile("/etc/hostname")),
        env: await attempt(() => Deno.env.get("GW_TEST_SECRET")),
        otherEnv: await attempt(() => Deno.env.get("GW_TEST_OTHER")),
        net: await attempt(async () => (await Deno.connect({ hostname: "127.0.0.1", port: ${target} })).close()),
        run: await attempt(() => new Deno.Command("true").output()),
        write: await attempt(() => Deno.writeTextFile("/tmp/nosy-plugin", "x")),
      };
    },
  },
};
`;
  const listener = Deno.listen({ hostname: "127.0.0.1", port: target });
  const accepting = (async () => {
    for await (const conn of listener) conn.close();
  })();
  try {
    await using _gw = await startGateway({
      listeners: { web: { type: "http", port } },
      plugins: { grants: { nosy: { env: ["GW_TEST_SECRET"] } } },
      routes: [{ match: { path: "/probe" }, target: { function: { name: "nosy.probe" } } }],
    }, {
      files: { "plugins/nosy.ts": nosy },
      env: { GW_TEST_SECRET: "s3cret", GW_TEST_OTHER: "other" },
    });
    const result = await (await fetch(`http://127.0.0.1:${port}/probe`)).json();
    assertEquals(result, {
      read: "NotCapable",
      env: "allowed",
      otherEnv: "NotCapable",
      net: "NotCapable",
      run: "NotCapable",
      write: "NotCapable",
    });
  } finally {
    listener.close();
    await accepting.catch(() => {});
  }
});

Deno.test("plugins: a misbehaving plugin fails alone and cannot reach past its sandbox", async () => {
  const port = freePort();
  const rogue = `export default {
  name: "rogue",
  functions: {
    badTopic: (_args, ctx) => {
      try {
        ctx.publish("bad/+/topic", "x");
        return "published";
      } catch (error) {
        return error.name;
      }
    },
    big: () => 1n,
    forge: (_args, ctx) => {
      ctx.metrics.counter("failures_total").inc(1000, { plugin: "victim", reason: "timeout" });
      ctx.metrics.counter("hits").inc(7, { plugin: "victim" });
      return "ok";
    },
    crash: () => {
      setTimeout(() => { throw new Error("escaped"); }, 0);
      return "scheduled";
    },
    ok: () => "fine",
  },
};
`;
  const files: Record<string, string> = {
    "plugins/rogue.ts": rogue,
    "plugins/model.ts": `export default { name: "model", functions: { add: () => 0 } };\n`,
    "plugins/filters.ts": `export default { name: "filters", onMessage: { "a/#/b": () => {} } };\n`,
    "plugins/linked/mod.ts": `export default { name: "linked" };\n`,
  };
  await using gw = await startGateway({
    listeners: { web: { type: "http", port } },
    routes: [
      { match: { path: "/fn/badTopic" }, target: { function: { name: "rogue.badTopic" } } },
      { match: { path: "/fn/big" }, target: { function: { name: "rogue.big" } } },
      { match: { path: "/fn/forge" }, target: { function: { name: "rogue.forge" } } },
      { match: { path: "/fn/crash" }, target: { function: { name: "rogue.crash" } } },
      { match: { path: "/fn/ok" }, target: { function: { name: "rogue.ok" } } },
    ],
  }, { files });
  await Deno.symlink(gw.dir, join(gw.dir, "plugins", "linked", "escape"));
  const invoke = async (fn: string) => {
    const res = await fetch(`http://127.0.0.1:${port}/fn/${fn}`);
    return { status: res.status, body: await res.json() };
  };
  assertEquals((await invoke("badTopic")).body, "TypeError");
  // A BigInt result cannot be carried as JSON: the function target answers bad_result.
  assertEquals((await invoke("big")).status, 502);
  assertEquals((await invoke("forge")).body, "ok");
  const metrics = await (await gw.admin("/metrics")).text();
  assert(!metrics.includes('plugin="victim"'), "a plugin cannot write under another's name");
  assertStringIncludes(metrics, 'gateway_plugin_hits{plugin="rogue"} 7');
  assertEquals((await invoke("crash")).body, "scheduled");
  await waitForPlugin(gw, "rogue", (p) => (p?.restarts as number) >= 1 && p?.state === "running");
  assertEquals((await invoke("ok")).body, "fine");

  const plugins = await pluginsOf(gw);
  assertStringIncludes(
    String((plugins.model.lastError as { message: string }).message),
    "worker's name",
  );
  assertStringIncludes(
    String((plugins.filters.lastError as { message: string }).message),
    "onMessage",
  );
  assertEquals(plugins.model.state, "failed");
  // The link appears after start: a reload sees it and refuses the plugin.
  await gw.admin("/plugins/linked/reload", { method: "POST" });
  const linked = (await pluginsOf(gw)).linked;
  assertStringIncludes(String((linked.lastError as { message: string }).message), "outside");
});

Deno.test("plugins: a throwing hook answers 500 with the request id and the next request is served", async () => {
  const port = freePort();
  const flaky = `export default {
  name: "flaky",
  onRequest(req) {
    if (req.query.fail) throw new Error("flaky failed on purpose");
  },
};
`;
  await using gw = await startGateway({
    listeners: { web: { type: "http", port } },
    routes: [{ match: { path: "/*" }, plugins: ["flaky"], target: { respond: { body: "fine" } } }],
  }, { files: { "plugins/flaky.ts": flaky } });
  const failed = await fetch(`http://127.0.0.1:${port}/x?fail=1`);
  assertEquals(failed.status, 500);
  const body = await failed.json();
  assertEquals(body.error.code, "plugin_error");
  assertEquals(body.error.requestId, failed.headers.get("x-request-id"));
  const ok = await fetch(`http://127.0.0.1:${port}/x`);
  assertEquals(await ok.text(), "fine");
  const plugin = (await pluginsOf(gw)).flaky;
  assertEquals(plugin.errors, 1);
  assertStringIncludes(String((plugin.lastError as { at: string }).at), "plugins/flaky.ts:4:");
});

Deno.test("plugins: an infinite loop answers 504, other routes keep serving, and the plugin is restarted", async () => {
  const port = freePort();
  const looper = `export default {
  name: "looper",
  onRequest(req) {
    if (req.query.loop) while (true) { /* stuck */ }
  },
};
`;
  await using gw = await startGateway({
    listeners: { web: { type: "http", port } },
    plugins: { hookTimeout: "500ms" },
    routes: [
      { match: { path: "/plain" }, target: { respond: { body: "plain" } } },
      { match: { path: "/*" }, plugins: ["looper"], target: { respond: { body: "looped" } } },
    ],
  }, { files: { "plugins/looper.ts": looper } });
  const stuck = fetch(`http://127.0.0.1:${port}/x?loop=1`);
  // While the plugin's worker spins, the gateway itself answers.
  const plain = await fetch(`http://127.0.0.1:${port}/plain`);
  assertEquals(await plain.text(), "plain");
  const res = await stuck;
  assertEquals(res.status, 504);
  assertEquals((await res.json()).error.code, "plugin_timeout");
  const restarted = await waitForPlugin(
    gw,
    "looper",
    (p) => (p?.restarts as number) >= 1 && p?.state === "running",
  );
  assert(restarted);
  const after = await fetch(`http://127.0.0.1:${port}/x`);
  assertEquals(await after.text(), "looped");
});

Deno.test("plugins: 20 hot reloads while a client loop runs fail no request", async () => {
  const port = freePort();
  const version = (n: number) =>
    `export default {
  name: "stamp",
  version: "1.0.${n}",
  onResponse(res) {
    return { headers: { ...res.headers, "x-version": "${n}" } };
  },
};
`;
  await using gw = await startGateway({
    listeners: { web: { type: "http", port } },
    plugins: { debounce: "20ms" },
    routes: [{ match: { path: "/*" }, plugins: ["stamp"], target: { respond: { body: "ok" } } }],
  }, { files: { "plugins/stamp.ts": version(0) } });
  let running = true;
  let served = 0;
  const failures: string[] = [];
  const seen = new Set<string>();
  const client = (async () => {
    while (running) {
      try {
        const res = await fetch(`http://127.0.0.1:${port}/`);
        const text = await res.text();
        if (res.status !== 200 || text !== "ok") failures.push(`${res.status} ${text}`);
        seen.add(res.headers.get("x-version") ?? "none");
        served++;
      } catch (error) {
        failures.push(String(error));
      }
    }
  })();
  const file = join(gw.dir, "plugins", "stamp.ts");
  for (let n = 1; n <= 20; n++) {
    await Deno.writeTextFile(file, version(n));
    await waitForPlugin(gw, "stamp", (p) => p?.version === `1.0.${n}`);
  }
  running = false;
  await client;
  console.log(`served ${served} requests across 20 reloads; versions seen: ${seen.size}`);
  assertEquals(failures, []);
  assert(seen.has("20"), "the last version served");
});

Deno.test("plugins: a broken edit keeps the old version and reports file:line; delete and re-add", async () => {
  const port = freePort();
  const good = `export default {
  name: "tag",
  version: "1",
  onResponse(res) {
    return { headers: { ...res.headers, "x-tag": "good" } };
  },
};
`;
  await using gw = await startGateway({
    listeners: { web: { type: "http", port } },
    plugins: { debounce: "20ms" },
    routes: [{ match: { path: "/*" }, plugins: ["tag"], target: { respond: { body: "ok" } } }],
  }, { files: { "plugins/tag.ts": good } });
  const file = join(gw.dir, "plugins", "tag.ts");
  const get = () => fetch(`http://127.0.0.1:${port}/`);

  await Deno.writeTextFile(
    file,
    `export default {\n  name: "tag",\n  version: "2",\n  init() {\n    throw new Error("cannot start");\n  },\n};\n`,
  );
  const broken = await waitForPlugin(gw, "tag", (p) => p?.lastError !== null);
  assertEquals(broken?.version, "1");
  assertStringIncludes(String((broken?.lastError as { at: string }).at), "plugins/tag.ts:5:");
  assertStringIncludes(String((broken?.lastError as { message: string }).message), "cannot start");
  assertEquals((await get()).headers.get("x-tag"), "good");

  await Deno.writeTextFile(file, `export default {\n  name: "tag",\n  onResponse( {\n};\n`);
  const syntax = await waitForPlugin(
    gw,
    "tag",
    (p) => !String((p?.lastError as { message?: string })?.message).includes("cannot start"),
  );
  assertStringIncludes(String((syntax?.lastError as { at: string }).at), "plugins/tag.ts:");
  assertEquals((await get()).headers.get("x-tag"), "good");

  await Deno.remove(file);
  await waitForPlugin(gw, "tag", (p) => p?.state === "removed");
  const gone = await get();
  assertEquals(gone.status, 503);
  assertStringIncludes((await gone.json()).error.message, 'plugin "tag" is not loaded');

  await Deno.writeTextFile(file, good);
  await waitForPlugin(gw, "tag", (p) => p?.state === "running");
  assertEquals((await get()).headers.get("x-tag"), "good");
});

Deno.test("plugins: settings are checked against the plugin's schema before start", async () => {
  const port = freePort();
  const strict = `export default {
  name: "strict",
  config: { type: "object", required: ["limit"], properties: { limit: { type: "integer" } } },
  functions: { limit: (_args, ctx) => ctx.config.limit },
};
`;
  const bad = await startGateway({
    listeners: { web: { type: "http", port } },
    plugins: { settings: { strict: { limit: "ten" } } },
  }, { files: { "plugins/strict.ts": strict }, noWait: true });
  const status = await bad.exited();
  assert(!status.success);
  assertStringIncludes(bad.output, "plugins.settings.strict: /limit must be integer");
  await Deno.remove(bad.dir, { recursive: true });
});

Deno.test("plugins: 500 reloads do not grow memory without bound", async () => {
  const port = freePort();
  const plugin = `export default { name: "cycle", onRequest() {} };\n`;
  await using gw = await startGateway({
    listeners: { web: { type: "http", port } },
    routes: [{ match: { path: "/*" }, plugins: ["cycle"], target: { respond: { body: "ok" } } }],
  }, { files: { "plugins/cycle.ts": plugin }, coverage: false });
  const rss = async () => {
    const text = await (await gw.admin("/metrics")).text();
    return Number(/gateway_process_memory_bytes\{kind="rss"\} (\d+)/.exec(text)![1]);
  };
  const reload = async () => {
    const res = await gw.admin("/plugins/cycle/reload", { method: "POST" });
    assertEquals(res.status, 200);
    await res.body?.cancel();
  };
  for (let i = 0; i < 20; i++) await reload();
  const before = await rss();
  for (let i = 0; i < 500; i++) await reload();
  // Replaced versions drain and terminate in the background.
  await new Promise((resolve) => setTimeout(resolve, 1000));
  const after = await rss();
  console.log(
    `RSS after 20 reloads ${(before / 2 ** 20).toFixed(1)} MiB, after 520: ${
      (after / 2 ** 20).toFixed(1)
    } MiB`,
  );
  assert(after < before * 2, `RSS grew from ${before} to ${after}`);
  assertEquals(await (await fetch(`http://127.0.0.1:${port}/`)).text(), "ok");
});

Deno.test("plugins: 'gateway plugin new' writes a template that loads and serves", async () => {
  const scratch = await Deno.makeTempDir({ prefix: "plugin-new-" });
  try {
    const [cmd, ...args] = gatewayArgv();
    const dir = join(scratch, "plugins");
    const pluginNew = () =>
      new Deno.Command(cmd, {
        args: [...args, "plugin", "new", "greet", "--dir", dir],
        stdout: "piped",
        stderr: "piped",
      }).output();
    const made = await pluginNew();
    assert(made.success, new TextDecoder().decode(made.stderr));
    const again = await pluginNew();
    assertEquals(again.code, 1);
    assertStringIncludes(new TextDecoder().decode(again.stderr), "already exists");

    const port = freePort();
    await using _gw = await startGateway({
      listeners: { web: { type: "http", port } },
      plugins: { settings: { greet: { greeting: "hi" } } },
      routes: [
        { match: { path: "/hello" }, target: { function: { name: "plugin:greet.hello" } } },
        { match: { path: "/*" }, plugins: ["greet"], target: { respond: { body: "ok" } } },
      ],
    }, {
      files: {
        "plugins/greet.ts": await Deno.readTextFile(join(dir, "greet.ts")),
        "plugins/_sdk/plugin.ts": await Deno.readTextFile(join(dir, "_sdk", "plugin.ts")),
      },
    });
    const ping = await fetch(`http://127.0.0.1:${port}/greet/ping`);
    assertEquals(await ping.json(), { pong: "hi" });
    const page = await fetch(`http://127.0.0.1:${port}/page`);
    assertEquals(page.headers.get("x-greet-version"), "0.1.0");
    await page.body?.cancel();
    const hello = await fetch(`http://127.0.0.1:${port}/hello`);
    assertEquals((await hello.json()).message, "hi, world");
  } finally {
    await Deno.remove(scratch, { recursive: true });
  }
});

Deno.test("plugins: an init that throws at start leaves the gateway serving; the plugin is retried with backoff", async () => {
  const port = freePort();
  const doomed = `export default {
  name: "doomed",
  onRequest() {},
  functions: { ping: () => "pong" },
  init() { throw new Error("no database yet"); },
};
`;
  // Fails its first init only: the retry after the backoff loads it.
  const late = `export default {
  name: "late",
  onRequest() {},
  async init(ctx) {
    const tries = ((await ctx.store.get("tries")) ?? 0) + 1;
    await ctx.store.set("tries", tries);
    if (tries === 1) throw new Error("not yet");
  },
};
`;
  await using gw = await startGateway({
    listeners: { web: { type: "http", port } },
    routes: [
      { match: { path: "/plain" }, target: { respond: { body: "plain" } } },
      { match: { path: "/doomed" }, plugins: ["doomed"], target: { respond: { body: "x" } } },
      { match: { path: "/ping" }, target: { function: { name: "plugin:doomed.ping" } } },
      { match: { path: "/late" }, plugins: ["late"], target: { respond: { body: "late" } } },
    ],
  }, { files: { "plugins/doomed.ts": doomed, "plugins/late.ts": late } });
  assertEquals(await (await fetch(`http://127.0.0.1:${port}/plain`)).text(), "plain");
  const hooked = await fetch(`http://127.0.0.1:${port}/doomed`);
  assertEquals(hooked.status, 503);
  assertStringIncludes((await hooked.json()).error.message, "no database yet");
  const called = await fetch(`http://127.0.0.1:${port}/ping`);
  assertEquals(called.status, 503);
  const { error } = await called.json();
  assertEquals(error.code, "unavailable");
  assertStringIncludes(error.message, "no database yet");
  const status = await (await gw.admin("/status")).json();
  const shown = status.plugins.find((p: { name: string }) => p.name === "doomed");
  assertEquals(shown.state, "failed");
  await gw.waitForLine(/plugin \W{0,2}doomed\W{0,2} failed to load/);

  const loaded = await waitForPlugin(gw, "late", (p) => p?.state === "running");
  assertEquals(loaded?.restarts, 1);
  assertEquals(await (await fetch(`http://127.0.0.1:${port}/late`)).text(), "late");
  const gaveUp = await waitForPlugin(
    gw,
    "doomed",
    (p) => String((p?.lastError as { message?: string })?.message).includes("gave up"),
  );
  assertEquals([gaveUp?.state, gaveUp?.restarts], ["failed", 4]);
});
