/**
 * What a client may no longer have, through the real gateway process: the ACL
 * applies on delivery (a session taken over by another user, a reload that
 * tightens the ACL), a reload that removes a user or changes its password
 * closes its clients, and MQTT-over-WebSocket connections the connection
 * manager refuses are closed.
 */

import mqtt from "mqtt";
import { assert, assertEquals } from "../helpers/assert.ts";
import { freePort, startGateway } from "../helpers/gateway.ts";
import { hashPassword } from "../../src/mqtt/auth.ts";
import { until } from "../helpers/wait.ts";

const decoder = new TextDecoder();

/** Messages a mqtt.js client receives, as "topic payload" strings. */
function collect(client: mqtt.MqttClient): string[] {
  const received: string[] = [];
  client.on("message", (topic, payload) => received.push(`${topic} ${decoder.decode(payload)}`));
  return received;
}

/** Users alice, bob and carol, each with the password `<name>-pw`. */
async function users(): Promise<Record<string, { password: string }>> {
  const entries = await Promise.all(
    ["alice", "bob", "carol"].map(async (name) =>
      [name, { password: await hashPassword(`${name}-pw`, 1000) }] as const
    ),
  );
  return Object.fromEntries(entries);
}

function login(port: number, user: string, options: mqtt.IClientOptions = {}) {
  return mqtt.connectAsync(`mqtt://127.0.0.1:${port}`, {
    username: user,
    password: `${user}-pw`,
    reconnectPeriod: 0,
    ...options,
  });
}

Deno.test("revocation: a session taken over by another user gets only what that user may receive", async () => {
  const port = freePort();
  const gw = await startGateway({
    mqtt: {
      listeners: { main: { port } },
      users: await users(),
      acl: [
        { user: "alice", publish: ["#"], subscribe: ["private/alice/#"] },
        { user: "bob", publish: ["#"], subscribe: ["public/#"] },
      ],
    },
  });
  try {
    const bob = await login(port, "bob", { clientId: "shared", clean: false });
    await bob.subscribeAsync("public/#", { qos: 1 });
    await bob.endAsync();
    const publisher = await login(port, "bob");
    await publisher.publishAsync("public/queued", "for bob", { qos: 1 });

    const alice = await login(port, "alice", { clientId: "shared", clean: false });
    const seen = collect(alice);
    await alice.subscribeAsync("private/alice/#", { qos: 1 });
    await publisher.publishAsync("public/live", "for bob", { qos: 1 });
    await publisher.publishAsync("private/alice/x", "for alice", { qos: 1 });
    await until(
      "alice's own message",
      () => seen.includes("private/alice/x for alice") || undefined,
    );
    assertEquals(seen, ["private/alice/x for alice"]);
    alice.end(true);
    publisher.end(true);
  } finally {
    await gw.stop();
  }
});

Deno.test("revocation: a reload that tightens the ACL stops live subscriptions; removed and changed users are closed", async () => {
  const port = freePort();
  const before = await users();
  const gw = await startGateway({
    mqtt: {
      listeners: { main: { port } },
      users: before,
      acl: [{ publish: ["#"], subscribe: ["public/#"] }],
    },
  });
  try {
    const clients = Object.fromEntries(
      await Promise.all(
        ["alice", "bob", "carol"].map(async (name) => [name, await login(port, name)] as const),
      ),
    );
    const closed = new Set<string>();
    for (const [name, client] of Object.entries(clients)) {
      client.on("close", () => closed.add(name));
    }
    const seen = collect(clients.bob);
    await clients.bob.subscribeAsync("public/#", { qos: 1 });

    // carol is removed, alice gets another password, bob stays but may receive less.
    await gw.writeConfig({
      ...JSON.parse(await Deno.readTextFile(gw.configFile)),
      mqtt: {
        listeners: { main: { port } },
        users: { alice: { password: await hashPassword("new-pw", 1000) }, bob: before.bob },
        acl: [{ publish: ["#"], subscribe: ["public/open/#"] }],
      },
    });
    await gw.waitForLine(/config reloaded/);
    await until("alice and carol closed", () => closed.has("alice") && closed.has("carol"));

    await clients.bob.publishAsync("public/secret", "hidden", { qos: 1 });
    await clients.bob.publishAsync("public/open/x", "shown", { qos: 1 });
    await until("the allowed message", () => seen.includes("public/open/x shown") || undefined);
    assertEquals(seen, ["public/open/x shown"]);
    assert(!closed.has("bob"), "bob stays connected");
    clients.bob.end(true);
  } finally {
    await gw.stop();
  }
});

Deno.test("revocation: an MQTT-over-WebSocket connection the connection manager refuses is closed", async () => {
  const web = freePort();
  const gw = await startGateway({
    listeners: { web: { type: "http", port: web } },
    routes: [{ match: { path: "/mqtt" }, target: { mqtt: { maxConnections: 1 } } }],
    mqtt: { listeners: {}, allowAnonymous: true },
  });
  try {
    const admitted = await mqtt.connectAsync(`ws://127.0.0.1:${web}/mqtt`, { reconnectPeriod: 0 });
    const refused = new WebSocket(`ws://127.0.0.1:${web}/mqtt`, ["mqtt"]);
    let code: number | undefined;
    refused.onclose = (event) => code = event.code;
    refused.onerror = () => {};
    assertEquals(await until("the refused WebSocket closed", () => code), 1000);
    assert(admitted.connected, "the admitted client stays connected");
    admitted.end(true);
  } finally {
    await gw.stop();
  }
});
