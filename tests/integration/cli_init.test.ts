/**
 * `gateway init`: the starter project passes `gateway check`, serves its
 * plugin's and worker's functions, and init never overwrites a file.
 */

import { assert, assertEquals, assertStringIncludes } from "../helpers/assert.ts";
import { join } from "node:path";
import { gatewayArgv } from "../helpers/gateway.ts";

async function gateway(args: string[], cwd?: string) {
  const [cmd, ...rest] = gatewayArgv();
  const out = await new Deno.Command(cmd, { args: [...rest, ...args], cwd, stdin: "null" })
    .output();
  const decode = (bytes: Uint8Array) => new TextDecoder().decode(bytes);
  return { code: out.code, stdout: decode(out.stdout), stderr: decode(out.stderr) };
}

const STARTER = [
  "config.json",
  "config.schema.json",
  ".gitignore",
  "plugins/hello.ts",
  "plugins/_sdk/plugin.ts",
  "workers/hello.py",
  "workers/gateway_worker.py",
];

/** Every file under `dir` (relative path → content). */
async function snapshot(dir: string, under = ""): Promise<Record<string, string>> {
  const files: Record<string, string> = {};
  for await (const entry of Deno.readDir(join(dir, under))) {
    const path = under ? `${under}/${entry.name}` : entry.name;
    if (entry.isDirectory) Object.assign(files, await snapshot(dir, path));
    else files[path] = await Deno.readTextFile(join(dir, path));
  }
  return files;
}

Deno.test("init writes a starter project that check accepts and that serves", async () => {
  const parent = await Deno.makeTempDir({ prefix: "gateway-init-" });
  try {
    const dir = join(parent, "edge");
    const init = await gateway(["init", dir]);
    assertEquals(init.code, 0, init.stderr);
    assertEquals(Object.keys(await snapshot(dir)).sort(), [...STARTER].sort());
    for (const file of STARTER) assertStringIncludes(init.stdout, `wrote ${join(dir, file)}`);
    assertStringIncludes(await Deno.readTextFile(join(dir, ".gitignore")), "/data/");
    const config = JSON.parse(await Deno.readTextFile(join(dir, "config.json")));
    assertEquals(config.workers[0].command, ["python3", "workers/hello.py"]);

    const check = await gateway(["check", "--config", join(dir, "config.json")]);
    assertEquals(check.code, 0, check.stderr);
    assertStringIncludes(check.stdout, "OK (1 listeners, 3 routes");

    // The same project on free ports: the plugin's and the worker's functions answer.
    config.listeners.web.port = 0;
    config.admin.port = 0;
    await Deno.writeTextFile(join(dir, "config.json"), JSON.stringify(config));
    const started = await gateway(["start", "--config", join(dir, "config.json")]);
    try {
      assertEquals(started.code, 0, started.stderr);
      const status = JSON.parse(
        (await gateway(["status", "--config", join(dir, "config.json"), "--json"])).stdout,
      );
      const base = `http://127.0.0.1:${status.listeners[0].port}`;
      const hello = await fetch(`${base}/hello`);
      assertEquals(hello.status, 200);
      assertEquals(hello.headers.get("x-hello-version"), "0.1.0");
      assertEquals(await hello.json(), { message: "hello, world" });
      let worker: Response | undefined;
      // The worker connects a moment after the gateway is ready.
      for (let i = 0; i < 100 && worker?.status !== 200; i++) {
        await worker?.body?.cancel();
        if (i > 0) await new Promise((resolve) => setTimeout(resolve, 100));
        worker = await fetch(`${base}/worker/hello?name=Ada`);
      }
      assertEquals(worker?.status, 200);
      assertEquals((await worker!.json()).hello, "Ada");
    } finally {
      await gateway(["stop", "--config", join(dir, "config.json")]);
    }
  } finally {
    await Deno.remove(parent, { recursive: true });
  }
});

Deno.test("init refuses to overwrite any file and then writes nothing", async () => {
  const dir = await Deno.makeTempDir({ prefix: "gateway-init-" });
  try {
    assertEquals((await gateway(["init"], dir)).code, 0, "into the current directory");
    await Deno.writeTextFile(join(dir, "plugins", "hello.ts"), "// mine\n");
    const before = await snapshot(dir);
    const again = await gateway(["init"], dir);
    assertEquals(again.code, 1);
    assertStringIncludes(again.stderr, "already has config.json, plugins/hello.ts");
    assertStringIncludes(again.stderr, "not overwriting anything");
    assertEquals(await snapshot(dir), before);

    const other = await Deno.makeTempDir({ prefix: "gateway-init-" });
    await Deno.writeTextFile(join(other, ".gitignore"), "node_modules/\n");
    const one = await gateway(["init", other]);
    assertEquals(one.code, 1);
    assertStringIncludes(one.stderr, "already has .gitignore;");
    assertEquals(await snapshot(other), { ".gitignore": "node_modules/\n" });
    await Deno.remove(other, { recursive: true });
    assert((await gateway(["init", "a", "b"], dir)).code === 2, "one directory at most");
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
