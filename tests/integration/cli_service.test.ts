/**
 * The gateway as a service, through the same entry the binary uses: `start`
 * (pid file, stale pid and socket files, refusal while running, failures that
 * say what failed and leave nothing running), `status` (exit 0 running, 3 not),
 * `stop` (0 after the drain, 1 when it had to SIGKILL), `restart`, `logs`, and
 * the systemd unit of `service install`.
 */

import { assert, assertEquals, assertMatch, assertStringIncludes } from "../helpers/assert.ts";
import { join } from "node:path";
import { gatewayArgv } from "../helpers/gateway.ts";
import { processAlive } from "../../src/cli/pid_file.ts";
import { ROTATED_FILES, rotateLog } from "../../src/cli/log_file.ts";

interface Outcome {
  code: number;
  stdout: string;
  stderr: string;
}

async function gateway(args: string[]): Promise<Outcome> {
  const [cmd, ...rest] = gatewayArgv();
  const out = await new Deno.Command(cmd, { args: [...rest, ...args], stdin: "null" }).output();
  const decode = (bytes: Uint8Array) => new TextDecoder().decode(bytes);
  return { code: out.code, stdout: decode(out.stdout), stderr: decode(out.stderr) };
}

/** The pid a `start` or `restart` reports. */
function startedPid(outcome: Outcome): number {
  const pid = Number(outcome.stdout.match(/gateway started \(pid (\d+)\)/)?.[1]);
  assert(pid > 0, `no pid in: ${outcome.stdout}${outcome.stderr}`);
  return pid;
}

/**
 * A project directory with `config.json` (an HTTP listener on port 0 and the
 * admin API on port 0 unless `config` says otherwise) for `fn`; a gateway
 * its pid file still names afterwards is killed.
 */
async function withProject(
  config: Record<string, unknown>,
  fn: (project: { dir: string; config: string; pidFile: string }) => Promise<void>,
): Promise<void> {
  const dir = await Deno.makeTempDir({ prefix: "gateway-service-" });
  const file = join(dir, "config.json");
  await Deno.writeTextFile(
    file,
    JSON.stringify({
      listeners: { web: { type: "http", host: "127.0.0.1", port: 0 } },
      routes: [{ target: { respond: { body: "hi" } } }],
      admin: { host: "127.0.0.1", port: 0 },
      ...config,
    }),
  );
  try {
    await fn({ dir, config: file, pidFile: join(dir, "data", "gateway.pid") });
  } finally {
    const pid = Number(
      (await Deno.readTextFile(join(dir, "data", "gateway.pid")).catch(() => ""))
        .match(/^\d+/)?.[0],
    );
    if (pid > 0 && processAlive(pid)) Deno.kill(pid, "SIGKILL");
    await Deno.remove(dir, { recursive: true });
  }
}

/** Runs `gateway logs -f`, does `act`, and waits for a line matching `pattern`. */
async function following(config: string, act: () => Promise<void>, pattern: RegExp) {
  const [cmd, ...rest] = gatewayArgv();
  const child = new Deno.Command(cmd, {
    args: [...rest, "logs", "-f", "-n", "1", "--config", config],
    stdin: "null",
    stdout: "piped",
    stderr: "null",
  }).spawn();
  let seen = "";
  const decoder = new TextDecoder();
  const reader = child.stdout.getReader();
  const read = async (until: (text: string) => boolean) => {
    while (!until(seen)) {
      const { value, done } = await reader.read();
      if (done) throw new Error(`logs -f ended:\n${seen}`);
      seen += decoder.decode(value, { stream: true });
    }
  };
  await read((text) => text.includes("\n"));
  await act();
  await read((text) => pattern.test(text));
  child.kill("SIGTERM");
  reader.releaseLock();
  await child.stdout.cancel();
  await child.status;
}

const exists = (path: string) => Deno.lstat(path).then(() => true, () => false);

Deno.test("start, status, a second start refused, logs, stop, status not running", async () => {
  await withProject({}, async ({ config, pidFile }) => {
    const before = await gateway(["status", "--config", config]);
    assertEquals(before.code, 3, before.stdout + before.stderr);
    assertMatch(before.stdout, /^not running/);

    const started = await gateway(["start", "--config", config]);
    assertEquals(started.code, 0, started.stderr);
    const pid = startedPid(started);
    assertEquals((await Deno.readTextFile(pidFile)).trim(), String(pid));
    assert(processAlive(pid));

    const hash = (await gateway(["check", "--config", config])).stdout.match(/hash (\w+)/)?.[1];
    const running = await gateway(["status", "--config", config]);
    assertEquals(running.code, 0, running.stderr);
    assertStringIncludes(running.stdout, `running: pid ${pid}, up `);
    assertStringIncludes(running.stdout, `config: ${config} (hash ${hash})`);
    assertStringIncludes(running.stdout, "problems: none");
    const json = JSON.parse((await gateway(["status", "--config", config, "--json"])).stdout);
    const [web] = json.listeners;
    assertEquals(await (await fetch(`http://127.0.0.1:${web.port}/`)).text(), "hi");

    const again = await gateway(["start", "--config", config]);
    assertEquals(again.code, 1);
    assertStringIncludes(again.stderr, `already running (pid ${pid}`);
    assertEquals((await Deno.readTextFile(pidFile)).trim(), String(pid));

    const logs = await gateway(["logs", "--config", config]);
    assertEquals(logs.code, 0, logs.stderr);
    assertStringIncludes(logs.stdout, `running config ${config}`);
    await following(config, async () => {
      const changed = JSON.parse(await Deno.readTextFile(config));
      changed.routes[0].target.respond.body = "changed";
      await Deno.writeTextFile(config, JSON.stringify(changed));
    }, /config reloaded/);

    const stopped = await gateway(["stop", "--config", config]);
    assertEquals(stopped.code, 0, stopped.stderr);
    assertStringIncludes(stopped.stdout, `stopped (pid ${pid})`);
    assert(!processAlive(pid));
    assert(!await exists(pidFile), "the gateway removes its pid file");
    assertStringIncludes((await gateway(["logs", "--config", config])).stdout, "gateway stopped");

    const after = await gateway(["status", "--config", config]);
    assertEquals(after.code, 3, after.stdout);
    assertMatch(after.stdout, /^not running/);
    assertEquals((await gateway(["stop", "--config", config])).stdout.trim(), "not running");
  });
});

Deno.test("start removes a stale pid file and a stale socket file; restart starts anew", async () => {
  await withProject({
    listeners: { local: { type: "unix", path: "data/gateway.sock", protocol: "http" } },
  }, async ({ dir, config, pidFile }) => {
    await Deno.mkdir(join(dir, "data"));
    const gone = new Deno.Command("true").spawn();
    await gone.status;
    await Deno.writeTextFile(pidFile, `${gone.pid}\n`);
    // A socket file whose process is gone: python binds it and exits.
    const socket = join(dir, "data", "gateway.sock");
    const bind = `import socket; socket.socket(socket.AF_UNIX).bind(${JSON.stringify(socket)})`;
    assert((await new Deno.Command("python3", { args: ["-c", bind] }).output()).success);
    assert(await exists(socket));

    const stale = await gateway(["status", "--config", config]);
    assertEquals(stale.code, 3);
    assertStringIncludes(stale.stdout, `names pid ${gone.pid}, which is gone`);

    const started = await gateway(["start", "--config", config]);
    assertEquals(started.code, 0, started.stderr);
    assertStringIncludes(
      started.stdout,
      `removed a stale pid file (pid ${gone.pid} is not running)`,
    );
    assertStringIncludes(started.stdout, `removed a stale socket file ${socket}`);
    const pid = startedPid(started);
    const response = await fetch("http://gateway/", {
      client: Deno.createHttpClient({ proxy: { transport: "unix", path: socket } }),
    });
    assertEquals(await response.text(), "hi");

    // A log larger than --log-size is rotated when the gateway starts.
    const restarted = await gateway(["restart", "--config", config, "--log-size", "100"]);
    assertEquals(restarted.code, 0, restarted.stderr);
    const log = join(dir, "data", "gateway.log");
    assertStringIncludes(await Deno.readTextFile(`${log}.1`), "gateway stopped");
    assert(!(await Deno.readTextFile(log)).includes("gateway stopped"));
    assertStringIncludes(restarted.stdout, `stopped (pid ${pid})`);
    const next = startedPid(restarted);
    assert(next !== pid && !processAlive(pid) && processAlive(next), "a new process");
    assertEquals((await gateway(["stop", "--config", config])).code, 0);
  });
});

Deno.test("a start that fails says what failed, exits 1 and leaves nothing running", async () => {
  await withProject({
    listeners: { web: { type: "http", host: "127.0.0.1", port: "eighty" } },
  }, async ({ dir, config, pidFile }) => {
    const bad = await gateway(["start", "--config", config]);
    assertEquals(bad.code, 1);
    assertStringIncludes(bad.stderr, "listeners.web.port");
    assertStringIncludes(bad.stderr, "gateway start: not started: the config has problems");
    assert(!await exists(pidFile));
    assert(!await exists(join(dir, "data", "gateway.log")), "no daemon was started");
  });
  using busy = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const port = (busy.addr as Deno.NetAddr).port;
  await withProject({
    listeners: { web: { type: "http", host: "127.0.0.1", port } },
  }, async ({ config, pidFile }) => {
    const failed = await gateway(["start", "--config", config]);
    assertEquals(failed.code, 1);
    const pid = Number(failed.stderr.match(/the gateway \(pid (\d+)\) exited while starting/)?.[1]);
    assertStringIncludes(failed.stderr, `(pid ${pid}) exited while starting (exit code 1)`);
    assertStringIncludes(
      failed.stderr,
      `listener "web": port ${port} on 127.0.0.1 is already in use`,
    );
    assert(!processAlive(pid));
    assert(!await exists(pidFile));
    assertEquals((await gateway(["status", "--config", config])).code, 3);
  });
});

Deno.test("stop: SIGKILL and exit 1 when the drain outlasts --timeout", async () => {
  // An upstream that accepts and never answers keeps a request in flight.
  using upstream = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const held: Deno.Conn[] = [];
  const accepting = (async () => {
    for await (const conn of upstream) held.push(conn);
  })().catch(() => {});
  await withProject({
    listeners: { web: { type: "http", host: "127.0.0.1", port: 0, drainTimeout: "10m" } },
    routes: [{ target: { upstream: "slow" } }],
    upstreams: {
      slow: {
        targets: [`http://127.0.0.1:${(upstream.addr as Deno.NetAddr).port}`],
        timeouts: { response: "10m" },
      },
    },
  }, async ({ config, pidFile }) => {
    const pid = startedPid(await gateway(["start", "--config", config]));
    const json = JSON.parse((await gateway(["status", "--config", config, "--json"])).stdout);
    const inFlight = fetch(`http://127.0.0.1:${json.listeners[0].port}/`).catch(() => {});
    while (held.length === 0) await new Promise((resolve) => setTimeout(resolve, 20));

    const stopped = await gateway(["stop", "--config", config, "--timeout", "1s"]);
    assertEquals(stopped.code, 1, stopped.stdout + stopped.stderr);
    assertStringIncludes(stopped.stderr, `pid ${pid} did not stop within 1s; killed it (SIGKILL)`);
    assert(!processAlive(pid));
    assert(!await exists(pidFile));
    await inFlight;
  });
  for (const conn of held) conn.close();
  upstream.close();
  await accepting;
});

Deno.test("service install --dry-run prints the unit; install and uninstall write and remove it", async () => {
  await withProject({}, async ({ dir, config }) => {
    const shown = await gateway(["service", "install", "--config", config, "--dry-run"]);
    assertEquals(shown.code, 0, shown.stderr);
    const unit = shown.stdout;
    assertStringIncludes(unit, `\nExecStart=${gatewayArgv().join(" ")} run --config ${config}\n`);
    assertStringIncludes(unit, "\nLimitNOFILE=65536\n");
    assertStringIncludes(unit, "\nRestart=on-failure\n");
    assertStringIncludes(unit, "\nExecReload=/bin/kill -HUP $MAINPID\n");
    assertStringIncludes(unit, `\nWorkingDirectory=${dir}\n`);
    const custom = await gateway([
      ...["service", "install", "--config", config, "--dry-run"],
      ...["--nofile", "200000", "--user", "gateway"],
    ]);
    assertStringIncludes(custom.stdout, "\nLimitNOFILE=200000\n");
    assertStringIncludes(custom.stdout, "\nUser=gateway\n");

    const units = join(dir, "units");
    await Deno.mkdir(units);
    const args = ["--config", config, "--unit-dir", units, "--name", "edge"];
    const installed = await gateway(["service", "install", ...args]);
    assertEquals(installed.code, 0, installed.stderr);
    assertEquals(await Deno.readTextFile(join(units, "edge.service")), unit.trimEnd() + "\n");
    const removed = await gateway(["service", "uninstall", ...args]);
    assertEquals(removed.code, 0, removed.stderr);
    assert(!await exists(join(units, "edge.service")));
    assertEquals((await gateway(["service", "uninstall", ...args])).code, 1);
  });
});

Deno.test("log rotation keeps the newest files and empties the log in place", async () => {
  const dir = await Deno.makeTempDir({ prefix: "gateway-log-" });
  try {
    const log = join(dir, "gateway.log");
    using appending = await Deno.open(log, { append: true, create: true });
    const write = (text: string) => appending.write(new TextEncoder().encode(text));
    assertEquals(await rotateLog(log, 4), false, "nothing to rotate yet");
    for (let i = 1; i <= ROTATED_FILES + 1; i++) {
      await write(`run ${i}\n`);
      assertEquals(await rotateLog(log, 4), true);
      assertEquals(await Deno.readTextFile(log), "");
    }
    await write("run 5\n");
    assertEquals(await Deno.readTextFile(log), "run 5\n", "the writer goes on at the start");
    assertEquals(await Deno.readTextFile(`${log}.1`), "run 4\n");
    assertEquals(await Deno.readTextFile(`${log}.${ROTATED_FILES}`), "run 2\n");
    assert(!await exists(`${log}.${ROTATED_FILES + 1}`), "older ones are dropped");
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
