/**
 * CORS hardening through the real gateway process: a route that would
 * reflect every origin with credentials is refused at config load.
 */

import { assert, assertStringIncludes } from "../helpers/assert.ts";
import { startGateway } from "../helpers/gateway.ts";

Deno.test("origins ['*'] with credentials: true stops the gateway at config load", async () => {
  const gw = await startGateway({
    listeners: { web: { type: "http", host: "127.0.0.1", port: 0 } },
    routes: [{
      match: { path: "/api/*" },
      cors: { origins: ["*"], credentials: true },
      target: { respond: { body: "secret" } },
    }],
  }, { noWait: true });
  let timer: ReturnType<typeof setTimeout> | undefined;
  const started = new Promise<null>((resolve) => timer = setTimeout(() => resolve(null), 15_000));
  const status = await Promise.race([gw.exited(), started]);
  clearTimeout(timer);
  await gw.stop();
  assert(status !== null && !status.success, `the gateway started:\n${gw.output}`);
  assertStringIncludes(gw.output, "routes[0].cors.credentials");
  assertStringIncludes(gw.output, "every website");
});
