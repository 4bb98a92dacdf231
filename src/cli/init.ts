/**
 * `gateway init [dir]`: a starter project. `config.json` (small and valid:
 * JSON holds no comments, so `config.schema.json` beside it gives editors the
 * description of every key), `plugins/hello.ts` (the commented plugin of
 * `gateway plugin new`), an example Python worker in `workers/` with the SDK
 * beside it, and a `.gitignore` for the data directory. Nothing is
 * overwritten.
 *
 * @module
 */

import { join, resolve } from "node:path";
import { z } from "zod";
import { GatewayConfig } from "../sections.ts";
import { writePluginTemplate } from "../plugins/template.ts";

const PYTHON_SDK = new URL("../../sdk/python/gateway_worker.py", import.meta.url);

/** The program the example worker runs with. */
const PYTHON = "python3";

/**
 * The config's JSON Schema (`gateway schema`, and `config.schema.json` of a
 * starter project).
 *
 * @example
 * ```ts
 * import { configJsonSchema } from "./init.ts";
 * Object.keys(configJsonSchema().properties as object); // ["listeners", "routes", ...]
 * ```
 */
export function configJsonSchema(): Record<string, unknown> {
  return z.toJSONSchema(GatewayConfig, { io: "input", unrepresentable: "any" });
}

function starterConfig(withWorker: boolean): Record<string, unknown> {
  return {
    $schema: "./config.schema.json",
    listeners: { web: { type: "http", host: "127.0.0.1", port: 8080 } },
    routes: [
      {
        name: "health",
        match: { path: "/healthz", methods: ["GET", "HEAD"] },
        target: { respond: { status: 200, body: { status: "ok" } } },
      },
      {
        name: "hello",
        match: { path: "/hello", methods: ["GET"] },
        plugins: ["hello"],
        target: { function: { name: "plugin:hello.hello" } },
      },
      ...withWorker
        ? [{
          name: "worker",
          match: { path: "/worker/hello", methods: ["GET"] },
          target: { function: { name: "worker:python.hello" } },
        }]
        : [],
    ],
    plugins: { dir: "plugins", settings: { hello: { greeting: "hello" } } },
    workers: withWorker
      ? [{ name: "python", command: [PYTHON, "workers/hello.py"], watch: ["workers/*.py"] }]
      : [],
    admin: { host: "127.0.0.1", port: 9901 },
    log: { level: "info" },
    storage: { dataDir: "data" },
  };
}

const WORKER = `"""Example worker, run by the gateway as worker "python" ("workers" in config.json).

GET /worker/hello?name=Ada calls hello() below with the request; what it
returns is the response body. Saved changes restart the worker ("watch").
gateway_worker.py beside this file is the SDK (standard library only).
"""

import os

from gateway_worker import Worker

worker = Worker()  # as many threads as the config's concurrency


@worker.function
def hello(request):
    query = request.get("query", {}) if isinstance(request, dict) else {}
    name = query.get("name", "world")
    worker.log("info", "said hello", name=name)  # into the gateway's log
    return {"hello": name, "from": f"worker {worker.name} pid {os.getpid()}"}


if __name__ == "__main__":
    worker.run()
`;

const GITIGNORE = `# the gateway's state: pid file, log, admin token, KV stores, sockets
/data/
`;

/** Whether `program` is an executable file in a `PATH` directory. */
async function onPath(program: string): Promise<boolean> {
  for (const dir of (Deno.env.get("PATH") ?? "").split(":").filter(Boolean)) {
    const info = await Deno.stat(join(dir, program)).catch(() => undefined);
    if (info?.isFile && ((info.mode ?? 0o111) & 0o111) !== 0) return true;
  }
  return false;
}

/**
 * Writes a starter project into `dir` (created when missing). Throws, having
 * written nothing, when any of its files exists. Returns the files written.
 * The example worker is in the config only when `python3` is on PATH (`check`
 * refuses a worker whose program is missing).
 *
 * @example
 * ```ts
 * import { initProject } from "./init.ts";
 * const { files } = await initProject(await Deno.makeTempDir());
 * ```
 */
export async function initProject(
  dir: string,
): Promise<{ files: string[]; withWorker: boolean }> {
  const root = resolve(dir);
  const texts: Record<string, string> = {
    "config.schema.json": `${JSON.stringify(configJsonSchema(), null, 2)}\n`,
    "workers/hello.py": WORKER,
    "workers/gateway_worker.py": await Deno.readTextFile(PYTHON_SDK),
    ".gitignore": GITIGNORE,
  };
  const planned = ["config.json", "plugins/hello.ts", ...Object.keys(texts)];
  const taken = [];
  for (const name of planned) {
    if (await Deno.lstat(join(root, name)).then(() => true, () => false)) taken.push(name);
  }
  if (taken.length > 0) {
    throw new Error(`${root} already has ${taken.join(", ")}; not overwriting anything`);
  }
  const withWorker = await onPath(PYTHON);
  texts["config.json"] = `${JSON.stringify(starterConfig(withWorker), null, 2)}\n`;
  await Deno.mkdir(join(root, "workers"), { recursive: true });
  for (const [name, text] of Object.entries(texts)) {
    await Deno.writeTextFile(join(root, name), text, { createNew: true });
  }
  const plugin = await writePluginTemplate(join(root, "plugins"), "hello");
  const files = Object.keys(texts).map((name) => join(root, name));
  return { files: [...files, plugin, join(root, "plugins", "_sdk", "plugin.ts")], withWorker };
}
