/**
 * The one error model through the real gateway process: one failure answers
 * one status whatever the route type (a model run past its time is 504 on
 * `model`, `ocr` and `function: model:<name>` routes), and no client error
 * body shows an internal address or a source location, while the log and the
 * admin API keep them by request id.
 */

import { assert, assertEquals, assertStringIncludes } from "../helpers/assert.ts";
import { freePort, startGateway } from "../helpers/gateway.ts";
import { EXAMPLES } from "../workers/harness.ts";

const FIXTURES = new URL("../models/fixtures/", import.meta.url);
/** spin.onnx loops `n` times: 10^15 rounds run far past any timeout. */
const SLOW_INPUT = {
  inputs: {
    n: { type: "int64", dims: [], data: [1e15] },
    x: { type: "float32", dims: [1], data: [0] },
  },
};

Deno.test("a model run past its time answers 504 on model, ocr and function routes", async () => {
  const slow = new URL("spin.onnx", FIXTURES).pathname;
  await using gw = await startGateway({
    listeners: { web: { type: "http", port: 0 } },
    log: { access: false },
    inference: { workers: 1, timeout: "1500ms" },
    models: [{ name: "slow", path: slow, threads: 1 }],
    ocr: { threads: 1 },
    routes: [
      { match: { path: "/models/:name/infer", methods: ["POST"] }, target: { model: {} } },
      { match: { path: "/ocr", methods: ["POST"] }, target: { ocr: {} } },
      {
        match: { path: "/fn/slow", methods: ["POST"] },
        target: { function: { name: "model:slow", timeout: "30s" } },
      },
    ],
  });
  const base = `http://127.0.0.1:${await gw.port("web")}`;
  const post = async (path: string, body: BodyInit) => {
    const response = await fetch(`${base}${path}`, { method: "POST", body });
    return { status: response.status, error: (await response.json()).error };
  };
  const model = await post("/models/slow/infer", JSON.stringify(SLOW_INPUT));
  // A model function route passes the request's JSON body, as the bus call takes it.
  const fn = await post("/fn/slow", JSON.stringify(SLOW_INPUT));
  // A page waiting behind a slow run: the one inference Worker is busy past the page's time.
  const running = post("/models/slow/infer", JSON.stringify(SLOW_INPUT));
  await new Promise((resolve) => setTimeout(resolve, 100));
  const ocr = await post("/ocr", await Deno.readFile(new URL("english.png", FIXTURES)));
  await running;
  assertEquals(model.status, 504, JSON.stringify(model.error));
  assertEquals(ocr.status, 504, JSON.stringify(ocr.error));
  assertEquals(fn.status, 504, JSON.stringify(fn.error));
  assertEquals([model.error.code, ocr.error.code, fn.error.code], [
    "timeout",
    "timeout",
    "timeout",
  ]);
});

const THROWER = `export default {
  name: "thrower",
  onRequest(req) {
    if (req.query.fail) throw new Error("thrower failed on purpose");
  },
  functions: {
    boom: () => {
      throw new Error("boom from a plugin function");
    },
  },
};
`;

Deno.test("no client error body shows an internal address or a file and line", async () => {
  const slowServer = Deno.serve({ hostname: "127.0.0.1", port: 0, onListen() {} }, async () => {
    await new Promise((resolve) => setTimeout(resolve, 2000));
    return new Response("late");
  });
  const dead = `http://127.0.0.1:${freePort()}`;
  const broken = `http://127.0.0.1:${freePort()}`;
  const port = freePort();
  try {
    await using gw = await startGateway({
      listeners: { web: { type: "http", port } },
      models: [
        { name: "add", path: new URL("add.onnx", FIXTURES).pathname },
        { name: "broken", path: "missing.onnx" },
      ],
      routes: [
        { match: { path: "/dead" }, target: { upstream: "dead" } },
        { match: { path: "/breaker" }, target: { upstream: "breaker" } },
        { match: { path: "/slow" }, target: { upstream: "slow" } },
        { match: { path: "/hook" }, plugins: ["thrower"], target: { respond: { body: "ok" } } },
        { match: { path: "/plugin-fn" }, target: { function: { name: "plugin:thrower.boom" } } },
        { match: { path: "/python-fn" }, target: { function: { name: "worker:python.fail" } } },
        { match: { path: "/nobody" }, target: { function: { name: "nobody.here" } } },
        { match: { path: "/models/:name/infer", methods: ["POST"] }, target: { model: {} } },
      ],
      upstreams: {
        dead: { targets: [dead], retries: 0, passive: { failures: 1, ejectFor: "1m" } },
        breaker: {
          targets: [broken],
          retries: 0,
          passive: { failures: 1000, ejectFor: "1s" },
          breaker: { failures: 1, openFor: "1m", halfOpenRequests: 1 },
        },
        slow: {
          targets: [`http://127.0.0.1:${slowServer.addr.port}`],
          timeouts: { connect: "1s", response: "200ms" },
        },
      },
      workers: [{ name: "python", command: EXAMPLES.python, instances: 1 }],
    }, { files: { "plugins/thrower.ts": THROWER } });
    const base = `http://127.0.0.1:${port}`;
    const cases: [string, RequestInit, number, string][] = [
      ["/dead", {}, 502, "upstream_unreachable"],
      ["/dead", {}, 503, "no_healthy_target"],
      ["/breaker", {}, 502, "upstream_unreachable"],
      ["/breaker", {}, 503, "no_healthy_target"],
      ["/slow", {}, 504, "upstream_timeout"],
      ["/hook?fail=1", {}, 500, "plugin_error"],
      ["/plugin-fn", {}, 500, "Error"],
      ["/python-fn", {}, 500, "ValueError"],
      ["/nobody", {}, 503, "no_responder"],
      ["/models/broken/infer", { method: "POST", body: "{}" }, 503, "model_unavailable"],
      ["/models/nope/infer", { method: "POST", body: "{}" }, 404, "unknown_model"],
      ["/models/add/infer", { method: "POST", body: '{"inputs":{}}' }, 400, "bad_arguments"],
      ["/models/add/infer", { method: "POST", body: "{" }, 400, "bad_json"],
      ["/missing", {}, 404, "no_route"],
    ];
    const requestIds: Record<string, string> = {};
    for (const [path, init, status, code] of cases) {
      const response = await fetch(`${base}${path}`, init);
      const text = await response.text();
      assertEquals(
        [response.status, JSON.parse(text).error.code],
        [status, code],
        `${path} ${text}`,
      );
      for (const secret of ["127.0.0.1:", ".ts:", ".py", gw.dir, "Traceback"]) {
        assert(!text.includes(secret), `${path} shows ${secret}: ${text}`);
      }
      requestIds[path] ??= response.headers.get("x-request-id")!;
    }

    // The admin API keeps what the client did not see, by request id.
    const upstream = await (await gw.admin(`/errors/${requestIds["/dead"]}`)).json();
    assertEquals(upstream.detail.target, dead);
    assertStringIncludes(upstream.causes.join("\n"), "UpstreamError");
    const hook = await (await gw.admin(`/errors/${requestIds["/hook?fail=1"]}`)).json();
    assertStringIncludes(hook.detail.at, "plugins/thrower.ts:4:");
    const python = await (await gw.admin(`/errors/${requestIds["/python-fn"]}`)).json();
    assertStringIncludes(python.detail.traceback, "worker.py");
    const model = await (await gw.admin(`/errors/${requestIds["/models/broken/infer"]}`)).json();
    assertStringIncludes(model.detail.reason, `${gw.dir}/missing.onnx`);
    const plugins = await (await gw.admin("/plugins")).json() as {
      name: string;
      lastError: { at: string };
    }[];
    const thrower = plugins.find((plugin) => plugin.name === "thrower")!;
    assertStringIncludes(thrower.lastError.at, "plugins/thrower.ts:");
    // And so does the log.
    await gw.waitForLine(new RegExp(`${requestIds["/hook?fail=1"]}.*thrower\\.ts:4:`));
    await gw.waitForLine(new RegExp(`${requestIds["/python-fn"]}.*Traceback`));
    await gw.waitForLine(new RegExp(`${requestIds["/dead"]}.*${dead.replace(/\./g, "\\.")}`));
  } finally {
    await slowServer.shutdown();
  }
});
