/**
 * The access log: `log.access: "auto"` writes a line per request when logs
 * are JSON (as the test gateway's are), and a route with `accessLog: false`
 * writes none. Through the real gateway process.
 */

import { assert } from "../helpers/assert.ts";
import { startGateway } from "../helpers/gateway.ts";

Deno.test("access log: auto is on for JSON logs; a route's accessLog: false writes no line", async () => {
  await using gw = await startGateway({
    listeners: { web: { type: "http", host: "127.0.0.1", port: 0 } },
    routes: [
      {
        name: "quiet",
        match: { path: "/healthz" },
        target: { respond: { body: "ok" } },
        accessLog: false,
      },
      { name: "loud", match: { path: "/hello" }, target: { respond: { body: "hi" } } },
    ],
    log: { access: "auto", format: "json" },
  });
  const port = await gw.port("web");
  for (const path of ["/healthz", "/hello"]) {
    await (await fetch(`http://127.0.0.1:${port}${path}`)).text();
  }
  // Lines are written in order: once /hello's is there, /healthz's would be too.
  await gw.waitForLine(/"logger":"gateway.access".*route=loud|"route":"loud"/);
  const access = gw.output.split("\n").filter((line) => line.includes('"gateway.access"'));
  assert(access.some((line) => line.includes('"route":"loud"')), "the loud route is logged");
  assert(!access.some((line) => line.includes('"route":"quiet"')), access.join("\n"));
});
