/**
 * Reserved bus namespaces through the real gateway process: a plugin cannot
 * spy on or answer function calls (through `ctx` or by posting to the host
 * directly), nor read a connection's reply topic; a Python worker cannot
 * subscribe to `fn/#`; MQTT subscribers never receive function calls; a
 * `bus` grant narrows a plugin's topics with a NotCapable error.
 */

import { join } from "node:path";
import mqtt from "mqtt";
import { assert, assertEquals, assertStringIncludes } from "../helpers/assert.ts";
import { freePort, startGateway } from "../helpers/gateway.ts";
import { until } from "../helpers/wait.ts";
import { ROOT } from "../workers/harness.ts";

/** Answers with the caller's Authorization header: what a spy would want to read. */
const AUTH = `export default {
  name: "auth",
  functions: { check: (args) => ({ by: "auth", user: args.headers.authorization ?? null }) },
};
`;

/**
 * Tries every way into fn/: through ctx (each attempt's error is kept), a
 * "#" subscription that answers whatever it gets, and a subscription posted
 * straight to the host past the runtime's checks.
 */
const SPY = `const seen = [];
const raw = [];
const refused = {};
const answer = (message) => { seen.push(message.topic); message.reply?.({ by: "spy" }); };
export default {
  name: "spy",
  init(ctx) {
    const attempt = (label, action) => {
      try {
        action();
        refused[label] = "allowed";
      } catch (error) {
        refused[label] = error.name + ": " + error.message;
      }
    };
    attempt("subscribe fn/#", () => ctx.subscribe("fn/#", answer));
    attempt("subscribe fn/auth/check", () => ctx.subscribe("fn/auth/check", answer));
    attempt("publish fn/auth/check", () => ctx.publish("fn/auth/check", {}));
    attempt("publish $SYS/x", () => ctx.publish("$SYS/x", "x"));
    ctx.subscribe("#", answer);
    const runtime = self.onmessage;
    self.onmessage = (event) => {
      const data = event.data;
      if (data.kind !== "message" || data.subscription !== 9999) return runtime(event);
      raw.push(data.message.topic);
      if (data.message.replyId !== undefined) {
        const payload = new TextEncoder().encode(JSON.stringify({ by: "spy" }));
        self.postMessage({ kind: "reply", replyId: data.message.replyId, payload });
      }
    };
    self.postMessage({ kind: "subscribe", subscription: 9999, filter: "fn/#" });
  },
  functions: { report: () => ({ refused, seen, raw }) },
};
`;

Deno.test("bus scope: a plugin cannot spy on function calls or answer them in another's name", async () => {
  const port = freePort();
  await using gw = await startGateway({
    listeners: { web: { type: "http", port } },
    routes: [
      { match: { path: "/check" }, target: { function: { name: "auth.check" } } },
      { match: { path: "/report" }, target: { function: { name: "spy.report" } } },
      { match: { path: "/mark", methods: ["POST"] }, target: { topic: { topic: "mark/done" } } },
    ],
  }, { files: { "plugins/auth.ts": AUTH, "plugins/spy.ts": SPY } });
  for (let i = 0; i < 5; i++) {
    const res = await fetch(`http://127.0.0.1:${port}/check`, {
      headers: { authorization: "Bearer secret-token" },
    });
    assertEquals(await res.json(), { by: "auth", user: "Bearer secret-token" });
  }
  const marked = await fetch(`http://127.0.0.1:${port}/mark`, { method: "POST", body: "x" });
  assertEquals((await marked.json()).subscribers, 1);
  const report = await until("the spy saw the marker", async () => {
    const seen = await (await fetch(`http://127.0.0.1:${port}/report`)).json();
    return seen.seen.includes("mark/done") ? seen : undefined;
  });
  assertEquals(report.seen, ["mark/done"], "a '#' subscription gets no fn/ topic");
  assertEquals(report.raw, [], "the host refuses what the runtime would");
  for (const [label, outcome] of Object.entries(report.refused as Record<string, string>)) {
    assert(outcome.startsWith("NotCapable: plugin:spy may not"), `${label}: ${outcome}`);
  }
  assertStringIncludes(report.refused["subscribe fn/#"], "only the gateway serves");
  assertEquals(Object.keys(report.refused).length, 4);
  await gw.waitForLine(/cannot subscribe to fn\/#.*plugin:spy may not subscribe/);
});

Deno.test("bus scope: a plugin cannot subscribe to a connection's reply topic", async () => {
  const eaves = `const seen = [];
export default {
  name: "eaves",
  onMessage: { "#": (message) => { seen.push(message.topic); } },
  functions: {
    listen: (args, ctx) => {
      try {
        ctx.subscribe("conn/" + args.params.id + "/send", (message) => seen.push(message.topic));
        return "allowed";
      } catch (error) {
        return error.name;
      }
    },
    seen: () => seen,
  },
};
`;
  await using gw = await startGateway({
    listeners: { web: { type: "http", port: 0 } },
    routes: [
      { match: { path: "/listen/:id" }, target: { function: { name: "eaves.listen" } } },
      { match: { path: "/seen" }, target: { function: { name: "eaves.seen" } } },
      {
        match: { path: "/conn/:id", methods: ["POST"] },
        target: { topic: { topic: "conn/{id}/send" } },
      },
      {
        match: { path: "/ws/:site" },
        target: { websocket: { topic: "ws/{site}/{connectionId}" } },
      },
    ],
  }, { files: { "plugins/eaves.ts": eaves } });
  const web = await gw.port("web");
  const ws = new WebSocket(`ws://127.0.0.1:${web}/ws/site-1`);
  const received = new Promise<string>((resolve) => {
    ws.onmessage = async (event) =>
      resolve(typeof event.data === "string" ? event.data : await new Blob([event.data]).text());
  });
  try {
    await new Promise((resolve, reject) => {
      ws.onopen = resolve;
      ws.onerror = reject;
    });
    const socket = await until("the WebSocket is listed", async () => {
      const list = await (await gw.admin("/connections")).json() as Record<string, unknown>[];
      return list.find((c) => c.protocol === "ws");
    });
    const listen = await fetch(`http://127.0.0.1:${web}/listen/${socket.id}`);
    assertEquals(await listen.json(), "NotCapable");
    const push = await fetch(`http://127.0.0.1:${web}/conn/${socket.id}`, {
      method: "POST",
      body: "for the client only",
    });
    assertEquals((await push.json()).subscribers, 1, "only the connection takes its reply topic");
    assertEquals(await received, "for the client only");
    const seen = await (await fetch(`http://127.0.0.1:${web}/seen`)).json() as string[];
    assertEquals(seen.filter((topic) => topic.startsWith("conn/")), []);
  } finally {
    ws.close();
  }
});

Deno.test("bus scope: a Python worker's fn/# subscription is refused and sees no call", async () => {
  const spy = `import sys
sys.path.insert(0, ${JSON.stringify(join(ROOT, "sdk", "python"))})
from gateway_worker import Worker

worker = Worker()
seen = []


@worker.subscribe("fn/#")
def spy(event):
    seen.append("fn/# " + event.topic)


@worker.subscribe("#")
def everything(event):
    seen.append(event.topic)


@worker.function
def report(args):
    return list(seen)


worker.run()
`;
  await using gw = await startGateway({
    listeners: { web: { type: "http", port: 0 } },
    routes: [
      { match: { path: "/check" }, target: { function: { name: "auth.check" } } },
      { match: { path: "/report" }, target: { function: { name: "worker:spy.report" } } },
      { match: { path: "/mark", methods: ["POST"] }, target: { topic: { topic: "mark/done" } } },
    ],
    workers: [{ name: "spy", command: ["python3", "spy.py"] }],
  }, { files: { "plugins/auth.ts": AUTH, "spy.py": spy } });
  const web = await gw.port("web");
  for (let i = 0; i < 3; i++) {
    const res = await fetch(`http://127.0.0.1:${web}/check`, {
      headers: { authorization: "Bearer secret-token" },
    });
    assertEquals((await res.json()).by, "auth");
  }
  await (await fetch(`http://127.0.0.1:${web}/mark`, { method: "POST", body: "x" })).body?.cancel();
  const seen = await until("the worker saw the marker", async () => {
    const list = await (await fetch(`http://127.0.0.1:${web}/report`)).json() as string[];
    return list.includes("mark/done") ? list : undefined;
  });
  assertEquals(seen, ["mark/done"]);
  await gw.waitForLine(/subscription to fn\/# refused.*worker\/spy\/0\/\d+ may not subscribe/);
});

Deno.test("bus scope: MQTT subscribers never receive function calls, even with busToBroker '#'", async () => {
  const mqttPort = freePort();
  await using gw = await startGateway({
    listeners: { web: { type: "http", port: 0 } },
    routes: [
      { match: { path: "/check" }, target: { function: { name: "auth.check" } } },
      { match: { path: "/mark", methods: ["POST"] }, target: { topic: { topic: "mark/done" } } },
    ],
    mqtt: {
      listeners: { main: { port: mqttPort } },
      allowAnonymous: true,
      busToBroker: ["#", "fn/#"],
    },
  }, { files: { "plugins/auth.ts": AUTH } });
  const web = await gw.port("web");
  const client = await mqtt.connectAsync(`mqtt://127.0.0.1:${mqttPort}`, { reconnectPeriod: 0 });
  try {
    const topics: string[] = [];
    client.on("message", (topic) => topics.push(topic));
    await client.subscribeAsync("#", { qos: 0 });
    const check = await fetch(`http://127.0.0.1:${web}/check`, {
      headers: { authorization: "Bearer secret-token" },
    });
    assertEquals((await check.json()).by, "auth");
    await (await fetch(`http://127.0.0.1:${web}/mark`, { method: "POST", body: "x" })).body
      ?.cancel();
    await until("the marker over MQTT", () => topics.includes("mark/done"));
    assertEquals(topics.filter((topic) => topic.startsWith("fn/")), []);
    await gw.waitForLine(/mqtt.busToBroker: mqtt may not subscribe to .*fn\/#/);
  } finally {
    await client.endAsync();
  }
});

Deno.test("bus scope: a bus grant narrows a plugin's topics with a NotCapable error", async () => {
  const narrow = `export default {
  name: "narrow",
  functions: {
    probe: async (_args, ctx) => {
      const attempt = async (action) => {
        try {
          await action();
          return "allowed";
        } catch (error) {
          return error.name + ": " + error.message;
        }
      };
      return {
        subscribeIn: await attempt(() => ctx.subscribe("in/a", () => {})),
        subscribeAll: await attempt(() => ctx.subscribe("#", () => {})),
        publishOut: await attempt(() => ctx.publish("out/x", "x")),
        publishOther: await attempt(() => ctx.publish("other/x", "x")),
        requestOther: await attempt(() => ctx.request("other/x", "x", { timeout: 500 })),
      };
    },
    raw: () => {
      self.postMessage({ kind: "publish", topic: "other/raw", payload: new Uint8Array(), meta: {} });
      return "posted";
    },
  },
};
`;
  await using gw = await startGateway({
    listeners: { web: { type: "http", port: 0 } },
    plugins: { grants: { narrow: { bus: { publish: ["out/#"], subscribe: ["in/+"] } } } },
    routes: [
      { match: { path: "/probe" }, target: { function: { name: "narrow.probe" } } },
      { match: { path: "/raw" }, target: { function: { name: "narrow.raw" } } },
    ],
  }, { files: { "plugins/narrow.ts": narrow } });
  const web = await gw.port("web");
  const result = await (await fetch(`http://127.0.0.1:${web}/probe`)).json();
  assertEquals(result.subscribeIn, "allowed");
  assertEquals(result.publishOut, "allowed");
  assertEquals(
    result.subscribeAll,
    'NotCapable: plugin:narrow may not subscribe to "#": its bus grant allows subscribing within "in/+"',
  );
  assertEquals(
    result.publishOther,
    'NotCapable: plugin:narrow may not publish on "other/x": its bus grant allows publishing within "out/#"',
  );
  assertEquals(result.requestOther, result.publishOther);
  assertEquals(await (await fetch(`http://127.0.0.1:${web}/raw`)).json(), "posted");
  await gw.waitForLine(/cannot publish on other\/raw.*its bus grant allows publishing within/);
});
