import { assert, assertEquals } from "../helpers/assert.ts";
import { RespondTargetConfig } from "../../src/targets/config.ts";
import { createRespondTarget } from "../../src/targets/respond.ts";
import { serveTarget } from "../helpers/test_server.ts";

/** Serves a respond target built from config as a user would write it. */
function serveRespond(config: Record<string, unknown>) {
  return serveTarget(createRespondTarget(RespondTargetConfig.parse(config)));
}

Deno.test("a string body is sent as UTF-8 text, the same on every request", async () => {
  await using server = serveRespond({ body: "héllo" });
  for (let i = 0; i < 3; i++) {
    const res = await fetch(server.url);
    assertEquals(res.status, 200);
    assertEquals(res.headers.get("content-type"), "text/plain; charset=utf-8");
    assertEquals(res.headers.get("content-length"), "6");
    assertEquals(await res.text(), "héllo");
  }
});

Deno.test("an object or array body is sent as JSON", async () => {
  await using object = serveRespond({ body: { status: "ok", checks: [1, 2] } });
  const res = await fetch(object.url);
  assertEquals(res.headers.get("content-type"), "application/json");
  assertEquals(await res.json(), { status: "ok", checks: [1, 2] });
  await using array = serveRespond({ body: ["a", { b: null }] });
  assertEquals(await (await fetch(array.url)).json(), ["a", { b: null }]);
});

Deno.test("configured status and headers are sent; a configured content-type wins", async () => {
  await using server = serveRespond({
    status: 418,
    headers: { "Content-Type": "text/html", "x-served-by": "gateway" },
    body: "<p>teapot</p>",
  });
  const res = await fetch(server.url, { method: "POST", body: "ignored" });
  assertEquals(res.status, 418);
  assertEquals(res.headers.get("content-type"), "text/html");
  assertEquals(res.headers.get("x-served-by"), "gateway");
  assertEquals(await res.text(), "<p>teapot</p>");
});

Deno.test("no body sends an empty response", async () => {
  await using noContent = serveRespond({ status: 204 });
  const res = await fetch(noContent.url);
  assertEquals([res.status, await res.text()], [204, ""]);
  assertEquals(res.headers.get("content-type"), null);
  await using ok = serveRespond({});
  const empty = await fetch(ok.url);
  assertEquals([empty.status, await empty.text()], [200, ""]);
});

Deno.test("HEAD gets the headers without the body", async () => {
  await using server = serveRespond({ body: "health" });
  const res = await fetch(server.url, { method: "HEAD" });
  assertEquals(res.status, 200);
  assertEquals(res.headers.get("content-type"), "text/plain; charset=utf-8");
  assertEquals(await res.text(), "");
});

Deno.test("the schema refuses statuses and bodies a response cannot have", () => {
  for (const config of [{ status: 101 }, { status: 204, body: "x" }, { status: 304, body: {} }]) {
    assert(!RespondTargetConfig.safeParse(config).success, `${JSON.stringify(config)}`);
  }
});
