import { join } from "node:path";
import { ConfigError } from "../../src/config/load.ts";
import { loadGatewayConfig as loadConfig } from "../../src/sections.ts";
import { assertEquals } from "../helpers/assert.ts";

/** Loads a config of `workers`; `executables` are created (mode 755) under its directory first. */
async function load(
  workers: unknown,
  env: Record<string, string> = {},
  executables: string[] = [],
) {
  const dir = await Deno.makeTempDir({ prefix: "workers-config-" });
  try {
    for (const path of executables) {
      await Deno.mkdir(join(dir, path, ".."), { recursive: true });
      await Deno.writeTextFile(join(dir, path), "#!/bin/sh\n", { mode: 0o755 });
    }
    const file = join(dir, "config.json");
    await Deno.writeTextFile(file, JSON.stringify({ workers }));
    return { dir, loaded: await loadConfig(file, (name) => env[name]) };
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

async function problems(workers: unknown): Promise<string[]> {
  try {
    await load(workers);
  } catch (error) {
    if (error instanceof ConfigError) return error.problems.map((p) => p.replace(/^.*?: /, ""));
    throw error;
  }
  throw new Error("expected a ConfigError");
}

Deno.test("a worker entry gets its defaults, units, env secrets and paths relative to the config", async () => {
  const { dir, loaded } = await load(
    [{
      name: "orders",
      command: ["./bin/orders", "serve.py"],
      cwd: "app",
      env: { TOKEN: "env:ORDERS_TOKEN" },
      watch: ["**/*.py"],
      stopTimeout: "2s",
      maxFrame: "1MB",
    }],
    { ORDERS_TOKEN: "s3cret", PATH: "/usr/bin:/bin" },
    ["app/bin/orders"],
  );
  const [worker] = loaded.config.workers;
  assertEquals(worker, {
    name: "orders",
    command: [join(dir, "app", "bin", "orders"), "serve.py"],
    cwd: join(dir, "app"),
    env: { TOKEN: "s3cret" },
    instances: 1,
    concurrency: 16,
    watch: [join(dir, "app", "**/*.py")],
    restart: "always",
    startTimeout: 10_000,
    stopTimeout: 2000,
    heartbeat: 5000,
    maxFrame: 1_048_576,
    queue: 1024,
  });
  const { loaded: plain } = await load([{ name: "py", command: ["python3", "w.py"] }], {
    PATH: Deno.env.get("PATH")!,
  });
  assertEquals(plain.config.workers[0].command, ["python3", "w.py"]);
});

Deno.test("bad worker entries are refused with their config path", async () => {
  assertEquals(
    await problems([
      { name: "a.b", command: ["x"] },
      { name: "ok", command: [] },
      { name: "ok", command: ["x"], restart: "sometimes", instances: 0 },
    ]),
    [
      "workers[0].name: worker names use letters, digits, '_' and '-'",
      "workers[1].command: must not be empty",
      "workers[2].instances: must be at least 1",
      "workers[2].restart: must be one of always, on-failure, never",
      'workers[2].name: worker "ok" is already defined by workers[1]',
    ],
  );
});
