import { assert, assertEquals, assertStringIncludes } from "../helpers/assert.ts";
import { Bus } from "../../src/bus/bus.ts";
import { filterCovers, filtersOverlap } from "../../src/bus/access.ts";
import type { BusMessage, MessageSource } from "../../src/bus/message.ts";
import { callFunction, serveFunction } from "../../src/functions/call.ts";

const SOURCE: MessageSource = { listener: "test", protocol: "gateway" };

function message(topic: string): BusMessage {
  return { topic, payload: new Uint8Array(), source: SOURCE, meta: {} };
}

/** The error `action` throws or rejects with. */
async function thrown(action: () => unknown): Promise<Error> {
  try {
    await action();
  } catch (error) {
    return error as Error;
  }
  throw new Error("nothing was thrown");
}

async function settle(): Promise<void> {
  for (let i = 0; i < 5; i++) await new Promise((resolve) => setTimeout(resolve, 0));
}

Deno.test("filterCovers and filtersOverlap follow MQTT matching", () => {
  assert(filterCovers("a/#", "a"));
  assert(filterCovers("a/#", "a/+/c"));
  assert(filterCovers("a/+/c", "a/b/c"));
  assert(!filterCovers("a/+", "a/#"));
  assert(!filterCovers("a/b", "a/+"));
  assert(!filterCovers("a/+", "a/b/c"));
  assert(filtersOverlap("#", "fn/#"));
  assert(filtersOverlap("+/auth/check", "fn/#"));
  assert(filtersOverlap("+/+/send", "conn/+/send"));
  assert(!filtersOverlap("conn/+/recv", "conn/+/send"));
  assert(!filtersOverlap("sensors/#", "fn/#"));
});

Deno.test("a scope refuses fn/, reply and $ filters and never delivers them to a wider one", async () => {
  const bus = new Bus();
  const scope = bus.scoped({ owner: "plugin:spy", name: "spy" });
  for (const filter of ["fn/#", "fn/auth/check", "fn/spy/+", "conn/+/send", "device/d1/send"]) {
    const error = await thrown(() => scope.subscribe(filter, () => {}));
    assertEquals(error.name, "NotCapable", filter);
    assertStringIncludes(error.message, `plugin:spy may not subscribe to "${filter}"`);
  }
  assertEquals((await thrown(() => scope.subscribe("$SYS/#", () => {}))).name, "NotCapable");
  const seen: string[] = [];
  for (const filter of ["#", "+/auth/check", "+/+/send", "sensors/+"]) {
    scope.subscribe(filter, (received) => void seen.push(`${filter} ${received.topic}`));
  }
  serveFunction(bus, "auth", "check", () => "auth");
  assertEquals(
    await callFunction(bus, "auth.check", {}, { source: SOURCE, timeout: 1000 }),
    "auth",
  );
  for (const topic of ["conn/c1/send", "device/d1/send", "sensors/1"]) bus.publish(message(topic));
  await settle();
  assertEquals(seen.sort(), ["# sensors/1", "sensors/+ sensors/1"]);
});

Deno.test("a scope publishes on its own fn/ and requests any function, but not another's fn/ or $", async () => {
  const bus = new Bus();
  const scope = bus.scoped({ owner: "worker:py", name: "py" });
  serveFunction(bus, "auth", "check", () => "auth");
  assertEquals(scope.publish(message("fn/py/note")), 0);
  assertEquals(scope.publish(message("conn/c1/send")), 0);
  assertEquals((await thrown(() => scope.publish(message("fn/auth/check")))).name, "NotCapable");
  assertEquals((await thrown(() => scope.publish(message("$SYS/x")))).name, "NotCapable");
  const reply = await scope.request("fn/auth/check", { value: null }, {
    source: SOURCE,
    timeout: 1000,
  });
  assertEquals(reply.value, "auth");
});

Deno.test("a grant narrows publish and subscribe to its filters", async () => {
  const bus = new Bus();
  const scope = bus.scoped({
    owner: "plugin:narrow",
    name: "narrow",
    grant: { publish: ["out/#"], subscribe: ["in/+", "cfg/#"] },
  });
  scope.subscribe("in/a", () => {});
  scope.subscribe("cfg/+/x", () => {});
  const wide = await thrown(() => scope.subscribe("in/#", () => {}));
  assertEquals(wide.name, "NotCapable");
  assertStringIncludes(wide.message, 'its bus grant allows subscribing within "in/+", "cfg/#"');
  assertEquals(scope.publish(message("out/a/b")), 0);
  const other = await thrown(() => scope.publish(message("other/a")));
  assertStringIncludes(other.message, 'its bus grant allows publishing within "out/#"');
  const request = await thrown(() =>
    scope.request("other/a", new Uint8Array(), { source: SOURCE, timeout: 100 })
  );
  assertEquals(request.name, "NotCapable");
  const none = bus.scoped({ owner: "plugin:mute", grant: { publish: [] } });
  assertStringIncludes(
    (await thrown(() => none.publish(message("a")))).message,
    "allows publishing within nothing",
  );
});

Deno.test("a scope that carries replies (MQTT) gets reply topics but never function calls", async () => {
  const bus = new Bus();
  const scope = bus.scoped({ owner: "mqtt", carriesReplies: true });
  const seen: string[] = [];
  scope.subscribe("#", (received) => void seen.push(received.topic));
  assertEquals((await thrown(() => scope.subscribe("fn/#", () => {}))).name, "NotCapable");
  serveFunction(bus, "auth", "check", () => "auth");
  await callFunction(bus, "auth.check", {}, { source: SOURCE, timeout: 1000 });
  bus.publish(message("device/d1/send"));
  await settle();
  assertEquals(seen, ["device/d1/send"]);
});
