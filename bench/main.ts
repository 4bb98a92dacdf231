/**
 * Entry of `deno task bench`: runs benchmark scripts from `bench/` one after
 * the other, each as its own process, and lets them print their results.
 * Scripts run with `--allow-all` (reading another process's `/proc` entry
 * needs it) and the gateway's unstable features. With no names it runs `bench/http.ts`.
 * SIGINT and SIGTERM are passed on to the running script so that it can stop
 * the servers it started.
 *
 * ```sh
 * deno task bench                          # bench/http.ts
 * deno task bench upstream_clients         # bench/upstream_clients.ts
 * deno task bench http upstream_clients    # both, in this order
 * deno task bench mqtt                     # bench/mqtt.ts: the MQTT broker against Mosquitto
 * deno task bench models                   # bench/models.ts: inference and OCR
 * deno task bench workers                  # bench/workers.ts: worker SDK calls against raw echo
 * ```
 *
 * @module
 */

import { existsSync } from "node:fs";
import { basename, join } from "node:path";
import { lockCopy, UNSTABLE_FEATURES } from "../build.ts";

const BENCH = import.meta.dirname!;
const names = (Deno.args.length ? Deno.args : ["http"]).map((arg) => basename(arg, ".ts"));
const missing = names.filter((name) => !existsSync(join(BENCH, `${name}.ts`)));
if (missing.length) {
  const available = [...Deno.readDirSync(BENCH)]
    .filter((entry) => entry.isFile && entry.name.endsWith(".ts") && entry.name !== "main.ts")
    .map((entry) => basename(entry.name, ".ts"));
  console.error(`no benchmark named ${missing.join(", ")}; available: ${available.join(", ")}`);
  Deno.exit(2);
}

let current: Deno.ChildProcess | undefined;
let interrupted = false;
for (const signal of ["SIGINT", "SIGTERM"] as const) {
  Deno.addSignalListener(signal, () => {
    interrupted = true;
    current?.kill(signal);
  });
}

// Bench-only packages (the baselines' onnxruntime-node, undici) stay out of deno.lock.
const lock = await lockCopy();
const failed: string[] = [];
for (const name of names) {
  if (interrupted) break;
  console.log(`\n=== bench/${name}.ts ===`);
  current = new Deno.Command(Deno.execPath(), {
    args: [
      "run",
      "--allow-all",
      `--lock=${lock}`,
      ...UNSTABLE_FEATURES.map((feature) => `--unstable-${feature}`),
      join(BENCH, `${name}.ts`),
    ],
    stdin: "null",
  }).spawn();
  if (!(await current.status).success) failed.push(name);
}

await Deno.remove(lock);
if (failed.length) console.error(`\nfailed: ${failed.join(", ")}`);
Deno.exit(interrupted ? 130 : failed.length ? 1 : 0);
