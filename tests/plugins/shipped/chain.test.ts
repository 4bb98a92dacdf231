/**
 * The five shipped plugins on one route, listed in no particular order: their
 * priorities put request-id first, then api-key, json-schema, transform and
 * cache last, so a cached answer is never served without a key, the body is
 * validated as the client sent it, and response transforms apply to hits too.
 */

import { assert, assertEquals } from "../../helpers/assert.ts";
import { type Echo, echoUpstream, gatewayWith } from "./shipped.ts";

const KEY = "chain-key-5b2e9d";

Deno.test("shipped plugins together: auth before cache, validation before transform", async () => {
  await using upstream = echoUpstream();
  const { gateway, url } = await gatewayWith(
    ["request-id", "api-key", "json-schema", "transform", "cache"],
    upstream.url,
    {
      plugins: {
        global: ["request-id"],
        settings: {
          "api-key": { keys: { alice: KEY }, forwardName: "x-consumer" },
          "json-schema": {
            rules: [{ route: "orders", schema: { type: "object", required: ["sku"] } }],
          },
          transform: {
            request: { json: { set: { "$.source": "gateway" } } },
            response: { headers: { set: { "x-transformed": "1" } } },
          },
        },
      },
      routes: [{
        name: "orders",
        match: { path: "/orders" },
        plugins: ["cache", "transform", "json-schema", "api-key"],
        target: { upstream: "api" },
      }],
    },
  );
  await using _gateway = gateway;
  const withKey = { "x-api-key": KEY };

  const first = await fetch(`${url}/orders`, { headers: withKey });
  assertEquals([first.status, first.headers.get("x-cache")], [200, "MISS"]);
  const echo = await first.json() as Echo;
  assertEquals(echo.headers["x-consumer"], "alice");
  assertEquals(echo.headers["x-api-key"], undefined);
  assertEquals(echo.headers["x-gateway-tags"], "route=orders");

  const hit = await fetch(`${url}/orders`, { headers: withKey });
  assertEquals([hit.headers.get("x-cache"), hit.headers.get("x-transformed")], ["HIT", "1"]);
  assert(hit.headers.get("x-request-id") !== first.headers.get("x-request-id"), "its own id");
  await hit.body?.cancel();

  const anonymous = await fetch(`${url}/orders`, { headers: { "x-request-id": "anon-1" } });
  assertEquals(anonymous.status, 401, "a cached answer still needs a key");
  assertEquals(anonymous.headers.get("x-cache"), null);
  assertEquals(anonymous.headers.get("x-request-id"), "anon-1");
  await anonymous.body?.cancel();

  const invalid = await fetch(`${url}/orders`, {
    method: "POST",
    headers: { ...withKey, "content-type": "application/json" },
    body: `{"qty": 1}`,
  });
  assertEquals(invalid.status, 400, "validated as sent, before transform adds fields");
  await invalid.body?.cancel();

  const valid = await fetch(`${url}/orders`, {
    method: "POST",
    headers: { ...withKey, "content-type": "application/json" },
    body: `{"sku": "a"}`,
  });
  assertEquals(valid.status, 200);
  assertEquals(JSON.parse((await valid.json() as Echo).body), { sku: "a", source: "gateway" });
  assertEquals(upstream.seen.length, 2);
});
