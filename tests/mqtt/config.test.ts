import { assert, assertEquals } from "../helpers/assert.ts";
import { validateDocument } from "../../src/config/load.ts";
import { SECTIONS } from "../../src/sections.ts";
import { MqttConfig, resolveMqttPaths } from "../../src/mqtt/config.ts";

function problems(document: Record<string, unknown>): string[] {
  return validateDocument(document, SECTIONS).problems.map((problem) =>
    `${problem.path.join(".")}: ${problem.message}`
  );
}

Deno.test("mqtt config: defaults, and errors that name the path", () => {
  const mqtt = MqttConfig.parse({
    listeners: { main: {} },
    bridges: { up: { url: "mqtt://h:1" } },
  });
  assertEquals(mqtt.listeners.main.port, 1883);
  assertEquals(mqtt.bridges.up.queue.policy, "drop-oldest");
  assertEquals(mqtt.bridges.up.reconnect.max, 30_000);

  const bad = problems({
    mqtt: {
      users: { ada: { password: "plain-text" } },
      acl: [{ publish: ["a/#/b"] }],
      bridges: {
        up: {
          url: "http://h",
          out: [{ topic: "a/#", removePrefix: "b/" }],
          queue: { policy: "x" },
        },
      },
    },
  });
  const has = (prefix: string) => bad.some((problem) => problem.startsWith(prefix));
  assert(has("mqtt.users.ada.password: a password is a hash"), bad.join("\n"));
  assert(has("mqtt.acl.0.publish.0:"), bad.join("\n"));
  assert(has("mqtt.bridges.up.url:"), bad.join("\n"));
  assert(has("mqtt.bridges.up.out.0.removePrefix:"), bad.join("\n"));
  assert(has("mqtt.bridges.up.queue.policy:"), bad.join("\n"));
});

Deno.test("mqtt config: an mqtt route needs the section; listener addresses must not clash", () => {
  assertEquals(
    problems({ routes: [{ target: { mqtt: {} } }] }),
    ["routes.0.target.mqtt: an mqtt target needs the mqtt section (the embedded broker)"],
  );
  assertEquals(
    problems({
      listeners: { web: { type: "http", port: 8080 } },
      mqtt: { listeners: { main: { port: 8080 } } },
    }),
    ['mqtt.listeners.main.port: MQTT listener "main" uses tcp:127.0.0.1:8080, already used by listener "web"'],
  );
  assertEquals(problems({ routes: [{ target: { mqtt: {} } }], mqtt: {} }), []);
});

Deno.test("mqtt config: TLS and bridge file paths resolve against the config's directory", () => {
  const mqtt = MqttConfig.parse({
    listeners: { s: { tls: { cert: "c.pem", key: "/abs/k.pem" } } },
    bridges: { up: { url: "mqtts://h:8883", ca: "ca.pem" } },
  });
  resolveMqttPaths(mqtt, "/etc/gw");
  assertEquals(mqtt.listeners.s.tls, {
    cert: "/etc/gw/c.pem",
    key: "/abs/k.pem",
    handshakeTimeout: 10_000,
  });
  assertEquals(mqtt.bridges.up.ca, "/etc/gw/ca.pem");
});

Deno.test("mqtt config: storage bounds and the local user have defaults; the local user's name is its own", () => {
  const mqtt = MqttConfig.parse({});
  assertEquals(mqtt.allowAnonymous, false);
  assertEquals(mqtt.localUser, "local");
  assertEquals(mqtt.maxSubscriptions, 100);
  assertEquals(mqtt.sessions, {
    maxSessions: 1000,
    anonymous: false,
    maxQueuedMessages: 1000,
    maxQueuedBytes: 2 * 1024 * 1024,
    maxRetained: 10_000,
    maxRetainedMessageBytes: 256 * 1024,
    maxRetainedBytes: 64 * 1024 * 1024,
  });
  assertEquals(MqttConfig.parse({ localUser: false }).localUser, false);
  assertEquals(
    MqttConfig.parse({ sessions: { maxRetainedBytes: "4MB", maxQueuedBytes: 1000 } }).sessions
      .maxRetainedBytes,
    4 * 1024 * 1024,
  );
  const hash = "pbkdf2-sha256$1000$c2FsdA==$aGFzaA==";
  assertEquals(problems({ mqtt: { users: { local: { password: hash } } } }), [
    'mqtt.users.local: "local" is the localUser, whose password is generated: rename this user or set localUser',
  ]);
  assertEquals(problems({ mqtt: { users: { local: { password: hash } }, localUser: "own" } }), []);
  const bad = problems({ mqtt: { maxSubscriptions: 0, sessions: { maxRetainedBytes: "lots" } } });
  assert(bad.some((p) => p.startsWith("mqtt.maxSubscriptions:")), bad.join("\n"));
  assert(bad.some((p) => p.startsWith("mqtt.sessions.maxRetainedBytes:")), bad.join("\n"));
});
