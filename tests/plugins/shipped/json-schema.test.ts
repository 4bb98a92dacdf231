/**
 * The shipped json-schema plugin through the real gateway (Ajv loaded from
 * npm inside the plugin's Worker): valid bodies pass, invalid ones answer 400
 * with JSON Pointers, bodies that are not JSON 415, rules by route name and
 * by path pattern + method, counters, and bad schemas refused at start.
 */

import { assert, assertEquals, assertStringIncludes } from "../../helpers/assert.ts";
import { type Echo, echoUpstream, gatewayWith, metric } from "./shipped.ts";

const SETTINGS = {
  schemas: {
    item: {
      type: "object",
      required: ["sku", "qty"],
      properties: { sku: { type: "string" }, qty: { type: "integer", minimum: 1 } },
    },
  },
  rules: [
    {
      route: "orders",
      methods: ["POST"],
      schema: {
        type: "object",
        required: ["items", "email"],
        additionalProperties: false,
        properties: {
          items: { type: "array", minItems: 1, items: { $ref: "item" } },
          email: { type: "string", format: "email" },
          note: { type: "string" },
        },
      },
    },
    {
      path: "/users/:id",
      methods: ["PUT", "PATCH"],
      schema: { type: "object", properties: { name: { type: "string", maxLength: 5 } } },
    },
  ],
};

const ROUTES = [
  { name: "orders", match: { path: "/orders" }, target: { upstream: "api" } },
  { name: "users", match: { path: "/users/*" }, target: { upstream: "api" } },
];

function send(url: string, method: string, body: string, type = "application/json") {
  return fetch(url, { method, headers: { "content-type": type }, body });
}

Deno.test("json-schema: valid bodies pass, invalid ones get 400 with pointers, non-JSON 415", async () => {
  await using upstream = echoUpstream();
  const { gateway, url } = await gatewayWith(["json-schema"], upstream.url, {
    plugins: { global: ["json-schema"], settings: { "json-schema": SETTINGS } },
    routes: ROUTES,
  });
  await using _gateway = gateway;

  const order = JSON.stringify({ items: [{ sku: "a-1", qty: 2 }], email: "ann@example.com" });
  const ok = await send(`${url}/orders`, "POST", order);
  assertEquals(ok.status, 200);
  assertEquals((await ok.json() as Echo).body, order, "a valid body goes on unchanged");

  const bad = await send(
    `${url}/orders`,
    "POST",
    JSON.stringify({ items: [{ sku: 7, qty: 0 }, { sku: "b" }], email: "nope", "a/b": 1 }),
  );
  assertEquals(bad.status, 400);
  const { error } = await bad.json();
  assertEquals(error.code, "invalid_body");
  assertEquals(error.requestId, bad.headers.get("x-request-id"));
  const errors = new Set(
    (error.errors as { pointer: string; message: string }[]).map((e) =>
      `${e.pointer} ${e.message}`
    ),
  );
  assertEquals(
    errors,
    new Set([
      "/a~1b is not allowed",
      "/items/0/sku must be string",
      "/items/0/qty must be >= 1",
      "/items/1/qty is required",
      `/email must match format "email"`,
    ]),
  );

  const text = await send(`${url}/orders`, "POST", order, "text/plain");
  assertEquals(text.status, 415);
  assertEquals((await text.json()).error.code, "unsupported_media_type");

  const broken = await send(`${url}/orders`, "POST", `{"items": [`);
  assertEquals(broken.status, 400);
  assertEquals((await broken.json()).error.code, "invalid_json");

  const empty = await send(`${url}/orders`, "POST", "");
  assertEquals((await empty.json()).error.errors, [{ pointer: "", message: "the body is empty" }]);

  assertEquals(upstream.seen.length, 1, "refused bodies never reach the upstream");

  const get = await fetch(`${url}/orders`);
  assertEquals(get.status, 200, "GET is not a method of the rule");
  await get.body?.cancel();

  const patch = await send(`${url}/users/42`, "PATCH", `{"name": "too long"}`);
  assertEquals(patch.status, 400, "path pattern + method rule");
  assertEquals((await patch.json()).error.errors[0].pointer, "/name");
  const deeper = await send(`${url}/users/42/avatar`, "PATCH", `{"name": "too long"}`);
  assertEquals(deeper.status, 200, "the pattern /users/:id does not take /users/42/avatar");
  await deeper.body?.cancel();

  const rejected = (code: string) =>
    metric(
      gateway,
      `gateway_plugin_json_schema_rejections_total{code="${code}",plugin="json-schema",route="orders"}`,
    );
  assertEquals(await rejected("invalid_body"), 1);
  assertEquals(await rejected("invalid_json"), 2);
  assertEquals(await rejected("unsupported_media_type"), 1);
});

Deno.test("json-schema: bad schemas, names and patterns stop the gateway from starting", async () => {
  await using upstream = echoUpstream();
  const { gateway } = await gatewayWith(["json-schema"], upstream.url, {
    plugins: {
      global: ["json-schema"],
      settings: {
        "json-schema": {
          schemas: { item: { type: "object", requred: ["sku"] } },
          rules: [
            { route: "orders", schema: "missing" },
            { path: "/users/(", schema: { type: "object" } },
            { methods: ["POST"], schema: { type: "nonsense" } },
          ],
        },
      },
    },
    routes: ROUTES,
  }, { noWait: true });
  await using _gateway = gateway;
  const status = await gateway.exited();
  assert(!status.success, "the gateway must refuse the config");
  const output = gateway.output;
  assertStringIncludes(
    output,
    `plugins.settings.json-schema: schemas.item: strict mode: unknown keyword: "requred"`,
  );
  assertStringIncludes(output, `rules[0].schema: no schema named "missing" in schemas`);
  assertStringIncludes(output, `rules[1].path "/users/(":`);
  assertStringIncludes(output, "rules[2] needs a route name, a path pattern or both");
  assertStringIncludes(output, "rules[2].schema: schema is invalid: data/type");
});
