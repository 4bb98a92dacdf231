/**
 * The config schema on its own: loopback detection, cross-references with
 * their JSON paths, duplicate addresses, the admin token rule, target kinds,
 * bodies on bodiless statuses, and strict objects.
 */

import { assert, assertEquals } from "../helpers/assert.ts";
import { GatewayConfig, SECTIONS } from "../../src/sections.ts";
import { isLoopback } from "../../src/admin/config.ts";
import { RespondTargetConfig } from "../../src/targets/config.ts";
import { formatPath, validateDocument } from "../../src/config/load.ts";

/** `path: message` of every issue, or [] when the document is valid. */
function issues(document: Record<string, unknown>): string[] {
  return validateDocument(document, SECTIONS).problems.map((problem) =>
    `${formatPath(problem.path)}: ${problem.message}`
  );
}

const respond = { respond: { body: "ok" } };
const web = { type: "http", port: 8080 };

Deno.test("isLoopback: localhost, ::1 and 127.0.0.0/8 only", () => {
  for (const host of ["localhost", "::1", "127.0.0.1", "127.1.2.3", "127.255.255.254"]) {
    assert(isLoopback(host), `${host} is loopback`);
  }
  for (
    const host of [
      "0.0.0.0",
      "::",
      "",
      "192.168.1.10",
      "10.0.0.1",
      "128.0.0.1",
      "127.0.0.1.example.com",
      "x127.0.0.1",
      "127.0.0",
      "localhost.example.com",
      "example.com",
    ]
  ) {
    assert(!isLoopback(host), `${JSON.stringify(host)} is not loopback`);
  }
});

Deno.test("an empty document is valid and gets the defaults", () => {
  const config = GatewayConfig.parse({});
  assertEquals(config.admin, { enabled: true, host: "127.0.0.1", port: 9901 });
  assertEquals(config.storage, { dataDir: "data" });
  assertEquals(config.routes, []);
});

Deno.test("a route naming an unknown listener is refused at routes[i].listeners[j]", () => {
  assertEquals(
    issues({
      listeners: { web },
      routes: [
        { target: respond },
        { listeners: ["web", "admin", "webb"], target: respond },
      ],
    }),
    [
      'routes[1].listeners[1]: unknown listener "admin"',
      'routes[1].listeners[2]: unknown listener "webb" (did you mean "web"?)',
    ],
  );
});

Deno.test("a route on a listener that does not serve HTTP is refused", () => {
  assertEquals(
    issues({
      listeners: { web, raw: { type: "tcp", port: 9000 } },
      routes: [{ listeners: ["raw"], target: respond }],
    }),
    ['routes[0].listeners[0]: listener "raw" does not serve HTTP (type tcp)'],
  );
});

Deno.test("a route naming an unknown upstream is refused at routes[i].target.upstream", () => {
  const upstreams = { api: { targets: ["http://127.0.0.1:9000"] } };
  assertEquals(
    issues({
      upstreams,
      routes: [{ target: { upstream: "api" } }, { target: { upstream: "apj" } }],
    }),
    ['routes[1].target.upstream: unknown upstream "apj" (did you mean "api"?)'],
  );
  assertEquals(issues({ upstreams, routes: [{ target: { upstream: "api" } }] }), []);
});

Deno.test("two TCP listeners on one host:port are refused on the second; UDP and port 0 may share", () => {
  assertEquals(
    issues({
      listeners: {
        a: { type: "http", port: 8080 },
        b: { type: "http", host: "127.0.0.1", port: 8080 },
        c: { type: "udp", port: 8080 },
        d: { type: "http", port: 8081 },
      },
    }),
    ['listeners.b.port: listener "b" uses tcp:127.0.0.1:8080, already used by listener "a"'],
  );
  assertEquals(
    issues({ listeners: { a: { type: "http", port: 0 }, b: { type: "http", port: 0 } } }),
    [],
  );
});

Deno.test("the admin API off loopback needs a token, at admin.token", () => {
  assertEquals(issues({ admin: { host: "0.0.0.0" } }), [
    "admin.token: a token is required when the admin API listens on 0.0.0.0, which is not loopback",
  ]);
  assertEquals(issues({ admin: { host: "0.0.0.0", token: "0123456789abcdef" } }), []);
  assertEquals(issues({ admin: { host: "0.0.0.0", enabled: false } }), [], "disabled");
  assertEquals(issues({ admin: { host: "localhost" } }), [], "loopback");
  assertEquals(issues({ admin: { host: "127.0.0.1", token: "short" } }), [
    "admin.token: an admin token has at least 16 characters",
  ]);
});

Deno.test("a target has exactly one kind", () => {
  const [none] = issues({ routes: [{ target: {} }] });
  assert(
    none?.startsWith("routes[0].target: a target needs one of: upstream, static, respond"),
    none,
  );
  const two = issues({
    upstreams: { api: { targets: ["http://127.0.0.1:9000"] } },
    routes: [{ target: { upstream: "api", ...respond } }],
  });
  assertEquals(two.length, 1, two.join("\n"));
  assert(two[0].startsWith("routes[0].target: a target has exactly one of "), two[0]);
  assert(two[0].endsWith("(found upstream, respond)"), two[0]);
});

Deno.test("a body on 204, 205 or 304 is refused at respond.body; without a body they are fine", () => {
  for (const status of [204, 205, 304]) {
    assertEquals(issues({ routes: [{ target: { respond: { status, body: "x" } } }] }), [
      "routes[0].target.respond.body: a response with status 204, 205 or 304 has no body",
    ]);
    assertEquals(issues({ routes: [{ target: { respond: { status } } }] }), []);
  }
  assertEquals(RespondTargetConfig.parse({ status: 200, body: "" }).body, "");
  assertEquals(RespondTargetConfig.safeParse({ status: 204, body: "" }).success, false);
});

Deno.test("objects are strict: an unknown key is an error where it is written, with a suggestion", () => {
  assertEquals(
    issues({
      listeners: { web: { ...web, prot: 1 } },
      routes: [{ match: { path: "/", hots: "x" }, target: { respond: { body: "x", satus: 1 } } }],
      admin: { tokn: "x" },
      extra: true,
    }).sort(),
    [
      'admin.tokn: unknown key (did you mean "token"?)',
      "extra: unknown key; the keys here are listeners, routes, upstreams, plugins, admin, log, " +
      "security, storage, mqtt, workers, models, inference, ocr",
      'listeners.web.prot: unknown key (did you mean "port"?)',
      'routes[0].match.hots: unknown key (did you mean "host"?)',
      'routes[0].target.respond.satus: unknown key (did you mean "status"?)',
    ],
  );
});

Deno.test("units are parsed and methods upper-cased", () => {
  const config = GatewayConfig.parse({
    listeners: { web: { ...web, drainTimeout: "1.5s" } },
    routes: [{
      match: { methods: ["get", "Post"] },
      target: respond,
      limits: { maxBodySize: "1KB" },
    }],
  });
  const listener = config.listeners.web;
  assert(listener.type === "http");
  assertEquals(listener.drainTimeout, 1500);
  assertEquals(config.routes[0].match.methods, ["GET", "POST"]);
  assertEquals(config.routes[0].limits?.maxBodySize, 1024);
});
