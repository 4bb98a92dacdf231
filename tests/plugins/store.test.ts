/**
 * `ctx.store` under concurrency, through the real gateway process: 500
 * `onMessage` handlers incrementing one key at once count exactly 500, so do
 * 500 concurrent `increment` calls (each answered with a distinct new value),
 * and a check-and-set loop over `getEntry` and `atomic()` loses no update;
 * `list(prefix)` returns what was set under the prefix and nothing else.
 */

import { assert, assertEquals } from "../helpers/assert.ts";
import { freePort, startGateway } from "../helpers/gateway.ts";

const TALLY = `export default {
  name: "tally",
  onMessage: {
    "hits/+": async (_message, ctx) => {
      await ctx.store.increment("hits");
    },
  },
  functions: {
    read: async (_args, ctx) => ({ hits: (await ctx.store.get("hits")) ?? 0 }),
    increments: async (args, ctx) => {
      const n = Number(args.query.n);
      return await Promise.all(Array.from({ length: n }, () => ctx.store.increment("many")));
    },
    checkAndSet: async (args, ctx) => {
      const n = Number(args.query.n);
      let conflicts = 0;
      const addOne = async () => {
        for (;;) {
          const entry = await ctx.store.getEntry("cas");
          const result = await ctx.store.atomic()
            .check("cas", entry.versionstamp)
            .set("cas", (entry.value ?? 0) + 1)
            .commit();
          if (result.ok) return;
          conflicts++;
        }
      };
      await Promise.all(Array.from({ length: n }, addOne));
      const taken = await ctx.store.atomic().check("cas", null).set("cas", -1).commit();
      return { cas: await ctx.store.get("cas"), conflicts, taken: taken.ok };
    },
    listed: async (_args, ctx) => {
      await ctx.store.set("list/b", { n: 2 });
      await ctx.store.set("list/a", { n: 1 });
      await ctx.store.set("lis", 0);
      await ctx.store.set("other/c", 3);
      await ctx.store.atomic().set("list/c", { n: 3 }).delete("list/b").commit();
      return (await ctx.store.list("list/")).map(({ key, value }) => ({ key, value }));
    },
  },
};
`;

Deno.test("plugin store: concurrent increments and a check-and-set loop are exact; list(prefix) returns what was set", async () => {
  const port = freePort();
  await using _gw = await startGateway({
    listeners: { web: { type: "http", port } },
    routes: [
      { match: { path: "/hit/:id" }, target: { topic: { topic: "hits/{id}" } } },
      { match: { path: "/read" }, target: { function: { name: "tally.read" } } },
      { match: { path: "/increments" }, target: { function: { name: "tally.increments" } } },
      { match: { path: "/cas" }, target: { function: { name: "tally.checkAndSet" } } },
      { match: { path: "/listed" }, target: { function: { name: "tally.listed" } } },
    ],
  }, { files: { "plugins/tally.ts": TALLY } });
  const base = `http://127.0.0.1:${port}`;

  // 500 messages, published 50 at a time: their handlers overlap in the plugin's Worker.
  for (let batch = 0; batch < 10; batch++) {
    await Promise.all(Array.from({ length: 50 }, async (_, i) => {
      const res = await fetch(`${base}/hit/${batch * 50 + i}`, { method: "POST", body: "{}" });
      assertEquals((await res.json()).subscribers, 1);
    }));
  }
  let hits = 0;
  for (let i = 0; i < 200 && hits < 500; i++) {
    hits = (await (await fetch(`${base}/read`)).json()).hits;
    if (hits < 500) await new Promise((resolve) => setTimeout(resolve, 25));
  }
  assertEquals(hits, 500);

  const values: number[] = await (await fetch(`${base}/increments?n=500`)).json();
  assertEquals(values.toSorted((a, b) => a - b), Array.from({ length: 500 }, (_, i) => i + 1));

  // 200 loops read the same versions: most commits are refused and retried, none is lost.
  const cas = await (await fetch(`${base}/cas?n=200`)).json();
  assertEquals([cas.cas, cas.taken], [200, false]);
  assert(cas.conflicts > 0, "the loops did race");

  assertEquals(await (await fetch(`${base}/listed`)).json(), [
    { key: "list/a", value: { n: 1 } },
    { key: "list/c", value: { n: 3 } },
  ]);
});
