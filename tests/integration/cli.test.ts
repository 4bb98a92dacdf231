/**
 * The command line as a user meets it: help, version, schema, `check` error
 * texts, and start-up failures that must name what and where.
 */

import { assert, assertEquals, assertMatch, assertStringIncludes } from "../helpers/assert.ts";
import { join } from "node:path";
import { gatewayArgv, startGateway } from "../helpers/gateway.ts";
import { verifyPassword } from "../../src/mqtt/auth.ts";

async function gateway(args: string[], cwd?: string) {
  const [cmd, ...rest] = gatewayArgv();
  const out = await new Deno.Command(cmd, { args: [...rest, ...args], cwd, stdin: "null" })
    .output();
  const decode = (b: Uint8Array) => new TextDecoder().decode(b);
  return { code: out.code, stdout: decode(out.stdout), stderr: decode(out.stderr) };
}

async function withConfig(
  files: Record<string, string>,
  fn: (dir: string) => Promise<void>,
): Promise<void> {
  const dir = await Deno.makeTempDir({ prefix: "gateway-cli-" });
  try {
    for (const [name, text] of Object.entries(files)) {
      await Deno.writeTextFile(join(dir, name), text);
    }
    await fn(dir);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

Deno.test("version and help", async () => {
  const version = await gateway(["version"]);
  assertEquals(version.code, 0);
  assertMatch(version.stdout, /^gateway \d+\.\d+\.\d+/);
  const help = await gateway(["--help"]);
  assertEquals(help.code, 0);
  for (
    const command of [
      "run",
      "check",
      "schema",
      "reload",
      "status",
      "stop",
      "passwd",
      "token",
      "version",
    ]
  ) {
    assertStringIncludes(help.stdout, command);
    const sub = await gateway([command, "--help"]);
    assertEquals(sub.code, 0, command);
    assertStringIncludes(sub.stdout, `gateway ${command}`);
  }
  const unknown = await gateway(["serve"]);
  assertEquals(unknown.code, 2);
  assertStringIncludes(unknown.stderr, 'unknown command "serve"');
});

Deno.test("passwd prints a hash of stdin's first line that the broker accepts", async () => {
  const [cmd, ...rest] = gatewayArgv();
  const run = async (input: string) => {
    const child = new Deno.Command(cmd, {
      args: [...rest, "passwd"],
      stdin: "piped",
      stdout: "piped",
      stderr: "piped",
    }).spawn();
    const writer = child.stdin.getWriter();
    await writer.write(new TextEncoder().encode(input));
    await writer.close();
    const out = await child.output();
    return { code: out.code, stdout: new TextDecoder().decode(out.stdout).trim() };
  };
  const hashed = await run("s3cret\nignored\n");
  assertEquals(hashed.code, 0);
  assertMatch(hashed.stdout, /^pbkdf2-sha256\$\d+\$[^$]+\$[^$]+$/);
  assert(await verifyPassword(new TextEncoder().encode("s3cret"), hashed.stdout));
  assert(!await verifyPassword(new TextEncoder().encode("s3cret\n"), hashed.stdout));
  assertEquals((await run("")).code, 1, "an empty password is refused");
});

Deno.test("schema prints the config's JSON Schema, and the committed copy is current", async () => {
  const result = await gateway(["schema"]);
  assertEquals(result.code, 0);
  const schema = JSON.parse(result.stdout);
  for (const section of ["listeners", "routes", "upstreams", "admin", "log", "security"]) {
    assert(schema.properties[section], `schema has ${section}`);
  }
  const committed = await Deno.readTextFile(
    new URL("../../config/config.schema.json", import.meta.url),
  );
  assertEquals(
    JSON.parse(committed),
    schema,
    "run `deno task schema` to refresh config/config.schema.json",
  );
});

Deno.test("check accepts the bundled default config", async () => {
  const result = await gateway(
    ["check", "--config", "config/config.json"],
    new URL("../..", import.meta.url).pathname,
  );
  assertEquals(result.code, 0, result.stderr);
  assertStringIncludes(result.stdout, "OK");
});

Deno.test("check: missing file and invalid JSON name the file, line and column", async () => {
  await withConfig({
    "bad.json": '{\n  "listeners": {\n    "web": { "type": "http" "port": 1 }\n  }\n}\n',
  }, async (dir) => {
    const missing = await gateway(["check", "--config", "nope.json"], dir);
    assertEquals(missing.code, 1);
    assertStringIncludes(missing.stderr, "nope.json: cannot read: file not found");
    const bad = await gateway(["check", "--config", "bad.json"], dir);
    assertEquals(bad.code, 1);
    assertMatch(bad.stderr, /bad\.json:3:\d+: invalid JSON/);
  });
});

Deno.test("check lists every schema error with its line, column and JSON path", async () => {
  const config = {
    listeners: { web: { type: "http", port: 8080, prot: 1 }, other: { type: "ftp", port: 21 } },
    routes: [
      { match: { path: "/a" }, target: { upstream: "api" } },
      { match: { path: "/b" }, target: {} },
      {
        match: { path: "/c" },
        target: { respond: { status: 200 } },
        rateLimit: { perClient: { rate: 5, per: "1x" } },
      },
    ],
    upstreams: { api: { targets: ["http://127.0.0.1:1/path"] } },
  };
  await withConfig({ "config.json": JSON.stringify(config) }, async (dir) => {
    const result = await gateway(["check", "--config", "config.json"], dir);
    assertEquals(result.code, 1);
    const lines = result.stderr.trim().split("\n");
    assert(lines.length >= 5, result.stderr);
    assertStringIncludes(
      result.stderr,
      'config.json:1:48: listeners.web.prot: unknown key (did you mean "port"?)',
    );
    assertStringIncludes(
      result.stderr,
      "config.json:1:67: listeners.other.type: must be one of http, tcp, udp, unix\n",
    );
    assertMatch(
      result.stderr,
      /config\.json:1:\d+: routes\[1\]\.target: a target needs one of: upstream, static, respond/,
    );
    assertMatch(
      result.stderr,
      /config\.json:1:\d+: routes\[2\]\.rateLimit\.perClient\.per: invalid duration "1x"/,
    );
    assertMatch(
      result.stderr,
      /config\.json:1:\d+: upstreams\.api\.targets\[0\]: target url is scheme, host and port only/,
    );
  });
});

Deno.test("check: unknown upstream, includes, env secrets and TLS files", async () => {
  const config = {
    listeners: {
      secure: { type: "http", port: 8443, tls: { cert: "missing.pem", key: "missing.key" } },
    },
    routes: { $include: "routes.json" },
    admin: { token: "env:GATEWAY_TEST_UNSET_TOKEN" },
  };
  const routes = [{ match: { path: "/x" }, target: { upstream: "api2" } }];
  await withConfig(
    { "config.json": JSON.stringify(config), "routes.json": JSON.stringify(routes) },
    async (dir) => {
      const result = await gateway(["check", "--config", "config.json"], dir);
      assertEquals(result.code, 1);
      assertMatch(
        result.stderr,
        /config\.json:1:\d+: admin\.token: environment variable GATEWAY_TEST_UNSET_TOKEN is not set/,
      );
      const fixed = { ...config, admin: {} };
      await Deno.writeTextFile(join(dir, "config.json"), JSON.stringify(fixed));
      const second = await gateway(["check", "--config", "config.json"], dir);
      assertMatch(
        second.stderr,
        /routes\.json:1:\d+: routes\[0\]\.target\.upstream: unknown upstream "api2"/,
      );
      await Deno.writeTextFile(
        join(dir, "routes.json"),
        JSON.stringify([{ target: { respond: {} } }]),
      );
      const third = await gateway(["check", "--config", "config.json"], dir);
      assertEquals(third.code, 1);
      assertMatch(
        third.stderr,
        /config\.json:1:\d+: listeners\.secure\.tls\.cert: cannot read ".*missing\.pem": file not found/,
      );
      assertMatch(
        third.stderr,
        /config\.json:1:\d+: listeners\.secure\.tls\.key: cannot read ".*missing\.key": file not found/,
      );
    },
  );
});

Deno.test("run: a port in use names the listener and the port, and exits 1", async () => {
  using blocker = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const { port } = blocker.addr;
  const gw = await startGateway({
    listeners: { web: { type: "http", host: "127.0.0.1", port } },
    routes: [{ target: { respond: { body: "hi" } } }],
  }, { noWait: true });
  const status = await gw.exited();
  await gw.stop();
  assertEquals(status.code, 1);
  assertStringIncludes(gw.output, `listener "web": port ${port} on 127.0.0.1 is already in use`);
  assertStringIncludes(gw.output, "gateway: not started");
});

Deno.test("run: the admin API refuses a non-loopback address without a token", async () => {
  await withConfig({
    "config.json": JSON.stringify({ admin: { host: "0.0.0.0", port: 0 } }),
  }, async (dir) => {
    const result = await gateway(["check", "--config", "config.json"], dir);
    assertEquals(result.code, 1);
    assertMatch(
      result.stderr,
      /config\.json:1:\d+: admin\.token: a token is required when the admin API listens on 0\.0\.0\.0/,
    );
  });
});
