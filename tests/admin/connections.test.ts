import { assertEquals, assertStringIncludes } from "../helpers/assert.ts";
import { type AdminControls, createAdminApp } from "../../src/admin/api.ts";
import type { ConnectionInfo } from "../../src/connections/connection.ts";

const TOKEN = "connections-test-token-0123456789";

function info(id: string, listener: string, deviceId?: string): ConnectionInfo {
  return {
    id,
    listener,
    protocol: "tcp",
    remoteAddress: "127.0.0.1",
    remotePort: 40000,
    deviceId,
    openedAt: 1000,
    lastSeenAt: 2000,
    bytesIn: 10,
    bytesOut: 20,
    framesIn: 1,
    framesOut: 2,
  };
}

/** Controls whose connections are a fixed list; records the filters and closes asked for. */
function fakeControls() {
  const live = [info("c1ab", "ws", "pump-7"), info("c2ab", "tcp"), info("c3ab", "tcp", "pump-7")];
  const filters: { listener?: string; deviceId?: string }[] = [];
  const closed: string[] = [];
  const controls: AdminControls = {
    status: () => ({}),
    reload: () => Promise.resolve({ hash: "abc", changed: false }),
    config: () => ({}),
    metrics: () => "",
    ready: () => true,
    stop: () => {},
    connections: (filter) => {
      filters.push(filter);
      return live.filter((c) =>
        (filter.listener === undefined || c.listener === filter.listener) &&
        (filter.deviceId === undefined || c.deviceId === filter.deviceId)
      );
    },
    closeConnection: (id) => {
      const known = live.some((c) => c.id === id);
      if (known) closed.push(id);
      return known;
    },
    modules: [],
  };
  return { controls, filters, closed };
}

function request(path: string, init: RequestInit = {}): Request {
  return new Request(`http://admin.test${path}`, {
    ...init,
    headers: { authorization: `Bearer ${TOKEN}` },
  });
}

Deno.test("GET /connections lists every live connection as JSON", async () => {
  const { controls, filters } = fakeControls();
  const res = await createAdminApp(controls, TOKEN).fetch(request("/connections"));
  assertEquals(res.status, 200);
  assertStringIncludes(res.headers.get("content-type") ?? "", "application/json");
  const body = await res.json();
  assertEquals(body.map((c: ConnectionInfo) => c.id), ["c1ab", "c2ab", "c3ab"]);
  assertEquals(body[0], info("c1ab", "ws", "pump-7"));
  assertEquals(filters, [{ listener: undefined, deviceId: undefined }]);
});

Deno.test("GET /connections filters by listener and device", async () => {
  const { controls, filters } = fakeControls();
  const app = createAdminApp(controls, TOKEN);
  const ids = async (query: string) =>
    (await (await app.fetch(request(`/connections${query}`))).json()).map((c: ConnectionInfo) =>
      c.id
    );
  assertEquals(await ids("?listener=tcp"), ["c2ab", "c3ab"]);
  assertEquals(await ids("?device=pump-7"), ["c1ab", "c3ab"]);
  assertEquals(await ids("?listener=tcp&device=pump-7"), ["c3ab"]);
  assertEquals(await ids("?listener=&device="), ["c1ab", "c2ab", "c3ab"], "empty means no filter");
  assertEquals(filters.slice(0, 3), [
    { listener: "tcp", deviceId: undefined },
    { listener: undefined, deviceId: "pump-7" },
    { listener: "tcp", deviceId: "pump-7" },
  ]);
});

Deno.test("DELETE /connections/:id closes it: 204, or 404 JSON when unknown", async () => {
  const { controls, closed } = fakeControls();
  const app = createAdminApp(controls, TOKEN);
  const res = await app.fetch(request("/connections/c2ab", { method: "DELETE" }));
  assertEquals([res.status, await res.text()], [204, ""]);
  assertEquals(closed, ["c2ab"]);

  const missing = await app.fetch(request("/connections/nope", { method: "DELETE" }));
  assertEquals(missing.status, 404);
  const body = await missing.json();
  assertEquals(body.error.code, "unknown_connection");
  assertStringIncludes(body.error.message, '"nope"');
  assertEquals(closed, ["c2ab"]);
});

Deno.test("the connection endpoints need the admin token", async () => {
  const { controls, filters, closed } = fakeControls();
  const app = createAdminApp(controls, TOKEN);
  const list = await app.fetch(new Request("http://admin.test/connections"));
  const kick = await app.fetch(
    new Request("http://admin.test/connections/c1ab", { method: "DELETE" }),
  );
  assertEquals([list.status, kick.status], [401, 401]);
  await Promise.all([list.body?.cancel(), kick.body?.cancel()]);
  assertEquals([filters.length, closed.length], [0, 0]);
});
