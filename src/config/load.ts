/**
 * Reads the config document from disk: JSON with line and column on syntax
 * errors, sections pulled in with `{ "$include": "file.json" }`, `"env:NAME"`
 * secrets, schema validation, and the files it names (TLS keys, static roots)
 * checked for readability. Every problem is reported as
 * `file: json.path: message`, all at once.
 *
 * @module
 */

import { dirname, isAbsolute, join, relative, resolve } from "node:path";
import { resolveMqttPaths } from "../mqtt/config.ts";
import { resolveModelPaths } from "../models/config.ts";
import { GatewayConfig } from "./schema.ts";

/** A config that cannot be used, with every problem found. */
export class ConfigError extends Error {
  constructor(readonly problems: string[]) {
    super(problems.join("\n"));
    this.name = "ConfigError";
  }
}

/** A validated config and what was learnt while reading it. */
export interface LoadedConfig {
  /** Validated, with defaults applied, units parsed and paths made absolute. */
  config: GatewayConfig;
  /** The document as written, includes inlined, `env:` references kept: safe to show. */
  document: Record<string, unknown>;
  /** Absolute path of the main config file. */
  file: string;
  /** The main file and every included file, for watching. */
  files: string[];
  /** PEM contents per listener name, read from the files the config names. */
  tls: Record<string, { cert: string; key: string }>;
  /** Short hash of the validated config; equal hashes mean nothing changed. */
  hash: string;
}

const ENV_REFERENCE = /^env:([A-Za-z_][A-Za-z0-9_]*)$/;

/**
 * Formats a JSON path the way users write it: `routes[3].target.upstream`.
 *
 * @example
 * ```ts
 * import { formatPath } from "./load.ts";
 * formatPath(["routes", 3, "target"]); // "routes[3].target"
 * formatPath(["listeners", "my api"]); // 'listeners["my api"]'
 * ```
 */
export function formatPath(path: readonly PropertyKey[]): string {
  let out = "";
  for (const key of path) {
    if (typeof key === "number") out += `[${key}]`;
    else if (/^[A-Za-z_$][A-Za-z0-9_$-]*$/.test(String(key))) {
      out += out ? `.${String(key)}` : String(key);
    } else out += `[${JSON.stringify(String(key))}]`;
  }
  return out || "(top level)";
}

function lineAndColumn(text: string, offset: number): string {
  const before = text.slice(0, offset);
  const line = before.split("\n").length;
  const column = offset - before.lastIndexOf("\n");
  return `${line}:${column}`;
}

async function readJson(file: string, shownAs: string): Promise<unknown> {
  let text: string;
  try {
    text = await Deno.readTextFile(file);
  } catch (error) {
    const reason = error instanceof Deno.errors.NotFound ? "file not found" : String(error);
    throw new ConfigError([`${shownAs}: cannot read: ${reason}`]);
  }
  try {
    return JSON.parse(text);
  } catch (error) {
    const message = (error as Error).message.replace(/ in JSON at position \d+.*$/s, "")
      .replace(/^JSON\.parse: /, "");
    const offset = /position (\d+)/.exec((error as Error).message)?.[1];
    const where = offset === undefined ? "" : `:${lineAndColumn(text, Number(offset))}`;
    throw new ConfigError([`${shownAs}${where}: invalid JSON: ${message}`]);
  }
}

function substituteEnv(
  value: unknown,
  path: PropertyKey[],
  env: (name: string) => string | undefined,
  problems: string[],
  unset: string[],
  fileOf: (path: PropertyKey[]) => string,
): unknown {
  if (typeof value === "string") {
    const name = ENV_REFERENCE.exec(value)?.[1];
    if (!name) return value;
    const resolved = env(name);
    if (resolved === undefined) {
      problems.push(
        `${fileOf(path)}: ${formatPath(path)}: environment variable ${name} is not set`,
      );
      unset.push(formatPath(path));
    }
    return resolved ?? "";
  }
  if (Array.isArray(value)) {
    return value.map((item, i) => substituteEnv(item, [...path, i], env, problems, unset, fileOf));
  }
  if (value && typeof value === "object") {
    return Object.fromEntries(
      Object.entries(value).map((
        [key, item],
      ) => [key, substituteEnv(item, [...path, key], env, problems, unset, fileOf)]),
    );
  }
  return value;
}

async function sha256Hex(text: string): Promise<string> {
  const digest = await crypto.subtle.digest("SHA-256", new TextEncoder().encode(text));
  return [...new Uint8Array(digest)].map((b) => b.toString(16).padStart(2, "0")).join("");
}

async function checkReadable(path: string, kind: "file" | "directory"): Promise<string | null> {
  try {
    const info = await Deno.stat(path);
    if (kind === "directory" && !info.isDirectory) return `"${path}" is not a directory`;
    if (kind === "file" && !info.isFile) return `"${path}" is not a file`;
    return null;
  } catch (error) {
    return error instanceof Deno.errors.NotFound
      ? `"${path}" does not exist`
      : `cannot read "${path}": ${(error as Error).message}`;
  }
}

/** Whether `program` (a path, or a name looked up in `path`) is an executable file. */
async function findProgram(program: string, path: string): Promise<boolean> {
  const candidates = program.includes("/")
    ? [program]
    : path.split(":").filter(Boolean).map((dir) => join(dir, program));
  for (const candidate of candidates) {
    const info = await Deno.stat(candidate).catch(() => undefined);
    if (info?.isFile && (info.mode === null || (info.mode & 0o111) !== 0)) return true;
  }
  return false;
}

/**
 * Loads and validates a config file. Throws a {@link ConfigError} listing
 * every problem, each naming the file and the JSON path.
 *
 * @example
 * ```ts
 * import { ConfigError, loadConfig } from "./load.ts";
 * try {
 *   const { config } = await loadConfig("config/config.json");
 *   console.log(Object.keys(config.listeners));
 * } catch (error) {
 *   if (error instanceof ConfigError) console.error(error.problems.join("\n"));
 * }
 * ```
 */
export async function loadConfig(
  path: string,
  env: (name: string) => string | undefined = (name) => Deno.env.get(name),
): Promise<LoadedConfig> {
  const file = resolve(path);
  const baseDir = dirname(file);
  const shown = (p: string) => {
    const rel = relative(Deno.cwd(), p);
    return rel.startsWith("..") || isAbsolute(rel) ? p : rel;
  };
  const root = await readJson(file, shown(file));
  if (!root || typeof root !== "object" || Array.isArray(root)) {
    throw new ConfigError([`${shown(file)}: the config must be a JSON object`]);
  }

  const document: Record<string, unknown> = {};
  const files = [file];
  const sectionFile = new Map<string, string>();
  /** Paths in a section are relative to the file the section is written in. */
  const sectionDir = new Map<string, string>();
  const problems: string[] = [];
  for (const [section, value] of Object.entries(root)) {
    const include = value !== null && typeof value === "object" && !Array.isArray(value)
      ? (value as Record<string, unknown>).$include
      : undefined;
    if (include === undefined) {
      document[section] = value;
      continue;
    }
    if (typeof include !== "string" || Object.keys(value as object).length !== 1) {
      problems.push(
        `${shown(file)}: ${section}.$include: must be the only key, naming a JSON file`,
      );
      continue;
    }
    const included = resolve(baseDir, include);
    try {
      document[section] = await readJson(included, `${shown(included)} (included as ${section})`);
      files.push(included);
      sectionFile.set(section, shown(included));
      sectionDir.set(section, dirname(included));
    } catch (error) {
      if (!(error instanceof ConfigError)) throw error;
      problems.push(...error.problems);
    }
  }
  if (problems.length) throw new ConfigError(problems);

  const fileOf = (path: readonly PropertyKey[]) => sectionFile.get(String(path[0])) ?? shown(file);
  // Values whose variable is unset are already reported; their schema errors would only repeat it.
  const unset: string[] = [];
  const substituted = substituteEnv(document, [], env, problems, unset, fileOf);
  const parsed = GatewayConfig.safeParse(substituted);
  if (!parsed.success) {
    for (const issue of parsed.error.issues) {
      const at = formatPath(issue.path);
      if (unset.includes(at)) continue;
      problems.push(`${fileOf(issue.path)}: ${at}: ${issue.message}`);
    }
  }
  if (problems.length || !parsed.success) throw new ConfigError(problems);

  const config = parsed.data;
  const dirOf = (section: string) => sectionDir.get(section) ?? baseDir;
  config.storage.dataDir = resolve(dirOf("storage"), config.storage.dataDir);
  config.plugins.dir = resolve(dirOf("plugins"), config.plugins.dir);
  const tls: LoadedConfig["tls"] = {};
  for (const [name, listener] of Object.entries(config.listeners)) {
    if (listener.type === "unix") listener.path = resolve(dirOf("listeners"), listener.path);
    if (listener.type !== "http" || !listener.tls) continue;
    const pem = { cert: "", key: "" };
    for (const part of ["cert", "key"] as const) {
      const at = resolve(dirOf("listeners"), listener.tls[part]);
      listener.tls[part] = at;
      try {
        pem[part] = await Deno.readTextFile(at);
      } catch (error) {
        const why = error instanceof Deno.errors.NotFound
          ? "file not found"
          : (error as Error).message;
        problems.push(
          `${fileOf(["listeners"])}: listeners.${name}.tls.${part}: cannot read "${at}": ${why}`,
        );
      }
    }
    tls[name] = pem;
  }
  if (config.mqtt) resolveMqttPaths(config.mqtt, dirOf("mqtt"));
  resolveModelPaths(config.models, config.ocr, dirOf("models"), dirOf("ocr"));
  for (const [i, worker] of config.workers.entries()) {
    worker.cwd = resolve(dirOf("workers"), worker.cwd ?? ".");
    const program = worker.command[0];
    if (program.includes("/")) worker.command[0] = resolve(worker.cwd, program);
    worker.watch = worker.watch.map((glob) => resolve(worker.cwd!, glob));
    const at = `${fileOf(["workers"])}: workers[${i}]`;
    const cwdProblem = await checkReadable(worker.cwd, "directory");
    if (cwdProblem) problems.push(`${at}.cwd: ${cwdProblem}`);
    else if (!await findProgram(worker.command[0], worker.env.PATH ?? env("PATH") ?? "")) {
      problems.push(
        program.includes("/")
          ? `${at}.command: "${worker.command[0]}" does not exist or is not executable`
          : `${at}.command: "${program}" was not found on PATH (is it installed?)`,
      );
    }
  }
  for (const [i, route] of config.routes.entries()) {
    if (!route.target.static) continue;
    route.target.static.root = resolve(dirOf("routes"), route.target.static.root);
    const problem = await checkReadable(route.target.static.root, "directory");
    if (problem) {
      problems.push(`${fileOf(["routes"])}: routes[${i}].target.static.root: ${problem}`);
    }
  }
  if (problems.length) throw new ConfigError(problems);

  const hash = (await sha256Hex(JSON.stringify([config, tls]))).slice(0, 12);
  return { config, document, file, files, tls, hash };
}
