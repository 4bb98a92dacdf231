import { assertEquals } from "../helpers/assert.ts";
import { UpstreamsConfig } from "../../src/upstreams/config.ts";
import { createHttp1Client } from "../../src/upstreams/http1_client.ts";
import { UpstreamSet } from "../../src/upstreams/set.ts";

const [a, b, c] = ["http://127.0.0.1:9001", "http://127.0.0.1:9002", "http://127.0.0.1:9003"];

const config = (targets: string[]) =>
  UpstreamsConfig.parse({ api: { targets, passive: { failures: 1, ejectFor: "10m" } } });

Deno.test("a committed set carries its targets' state over; an aborted one leaves it as it was", async () => {
  const client = createHttp1Client();
  const set = new UpstreamSet(client);
  await (await set.prepare(config([a, b]))).commit();
  const picked = set.get("api")!.pick()!;
  picked.reportFailure("connect: refused");
  picked.release();
  const healthy = () => set.get("api")!.snapshot().targets.map((t) => [t.url, t.healthy]);
  assertEquals(healthy(), [[a, false], [b, true]]);

  await (await set.prepare(config([a, c]))).abort();
  assertEquals([set.states.size, set.states.slotOf(c)], [2, undefined]);

  await (await set.prepare(config([a, c]))).commit();
  assertEquals(healthy(), [[a, false], [c, true]], "a stays ejected");
  await set.stop();
  assertEquals(set.states.size, 0, "b and then every URL let go");
  client.close();
});
