/**
 * Workers in the real gateway process: an HTTP route calls a Python worker's
 * function, the admin API and `gateway status` list the instances, and
 * `gateway run` refuses to start when a worker's command is missing.
 */

import { join } from "node:path";
import { assert, assertEquals, assertMatch, assertStringIncludes } from "../helpers/assert.ts";
import { ADMIN_TOKEN, gatewayArgv, startGateway } from "../helpers/gateway.ts";
import { EXAMPLES } from "./harness.ts";

Deno.test("an HTTP route calls a Python worker's function; /workers and `gateway status` list it", async () => {
  await using gw = await startGateway({
    listeners: { web: { type: "http", port: 0 } },
    routes: [
      { match: { path: "/hello" }, target: { function: { name: "worker:python.hello" } } },
      { match: { path: "/fail" }, target: { function: { name: "python.fail" } } },
    ],
    workers: [{ name: "python", command: EXAMPLES.python, instances: 2 }],
  });
  const port = await gw.port("web");
  const response = await fetch(`http://127.0.0.1:${port}/hello?name=Ada`);
  assertEquals(response.status, 200);
  const body = await response.json();
  assertEquals(body.hello, "Ada");
  assertMatch(body.from, /^python worker python\[[01]\] pid \d+$/);

  // The worker's stdout lines and its log messages are in the gateway's log, tagged.
  const printed = JSON.parse(await gw.waitForLine(/example worker python\[0\] starting/));
  assertEquals([printed.properties.worker, printed.properties.instance], ["python", 0]);
  const logged = JSON.parse(await gw.waitForLine(/said hello/));
  assertEquals([logged.level, logged.properties.name, logged.properties.worker], [
    "INFO",
    "Ada",
    "python",
  ]);

  const failed = await fetch(`http://127.0.0.1:${port}/fail`);
  assertEquals(failed.status, 500);
  assertStringIncludes(await failed.text(), "ValueError");

  const workers = await (await gw.admin("/workers")).json();
  const [python] = workers.workers;
  assertEquals([python.name, python.state, python.instances.length], ["python", "running", 2]);
  assert(python.instances.every((instance: { pid: number }) => instance.pid > 0));
  assertEquals([python.calls, python.errors, python.restarts], [2, 1, 0]);

  const [cmd, ...args] = gatewayArgv();
  const status = await new Deno.Command(cmd, {
    args: [...args, "status", "--json", "--admin", gw.adminUrl, "--token", ADMIN_TOKEN],
    stdin: "null",
  }).output();
  assertEquals(status.code, 0);
  const shown = JSON.parse(new TextDecoder().decode(status.stdout));
  assertEquals(
    shown.workers.workers[0].instances.map((i: { pid: number }) => i.pid),
    python.instances.map((i: { pid: number }) => i.pid),
  );

  const metrics = await (await gw.admin("/metrics")).text();
  assertMatch(metrics, /gateway_supervised_calls_total\{kind="worker",name="python"\} 2/);
  assertMatch(metrics, /gateway_supervised_errors_total\{kind="worker",name="python"\} 1/);
});

Deno.test("a worker that exits at start leaves the gateway serving; its route answers 503 with why", async () => {
  await using gw = await startGateway({
    listeners: { web: { type: "http", port: 0 } },
    routes: [
      { match: { path: "/hello" }, target: { function: { name: "worker:python.hello" } } },
      { match: { path: "/orders" }, target: { function: { name: "worker:orders.list" } } },
    ],
    workers: [
      { name: "python", command: EXAMPLES.python },
      {
        name: "orders",
        command: [
          "python3",
          "-c",
          "import sys; print('no database', file=sys.stderr); sys.exit(3)",
        ],
      },
    ],
  });
  const port = await gw.port("web");
  const hello = await fetch(`http://127.0.0.1:${port}/hello?name=Ada`);
  assertEquals([hello.status, (await hello.json()).hello], [200, "Ada"]);
  const orders = await fetch(`http://127.0.0.1:${port}/orders`);
  assertEquals(orders.status, 503);
  const { error } = await orders.json();
  assertEquals(error.code, "unavailable");
  assertMatch(
    error.message,
    /worker "orders" is (in backoff|failed|starting).*exited with code 3.*no database/,
  );
  const status = await (await gw.admin("/status")).json();
  const shown = Object.fromEntries(
    status.workers.workers.map((w: { name: string; state: string }) => [w.name, w.state]),
  );
  assertEquals(shown.python, "running");
  assertEquals(shown.orders, "failed");
  await gw.waitForLine(/orders.*did not start, the gateway serves without it/);
});

Deno.test("`gateway run` and `gateway check` refuse a worker whose command is missing", async () => {
  const gw = await startGateway({
    workers: [
      { name: "orders", command: [join("bin", "orders-worker")] },
      { name: "billing", command: ["no-such-interpreter-here", "billing.py"] },
    ],
  }, { noWait: true });
  await using _gw = gw;
  const status = await gw.exited();
  assertEquals(status.code, 1);
  assertMatch(
    gw.output,
    /config\.json:\d+:\d+: workers\[0\]\.command: ".*\/bin\/orders-worker" does not exist or is not executable/,
  );
  assertMatch(
    gw.output,
    /config\.json:\d+:\d+: workers\[1\]\.command: "no-such-interpreter-here" was not found on PATH/,
  );
  assertStringIncludes(gw.output, "gateway: not started");
  const [cmd, ...args] = gatewayArgv();
  const check = await new Deno.Command(cmd, {
    args: [...args, "check", "--config", gw.configFile],
    stdout: "piped",
    stderr: "piped",
  }).output();
  assertEquals(check.code, 1);
  assertStringIncludes(new TextDecoder().decode(check.stderr), "workers[1].command");
});
