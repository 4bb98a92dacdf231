/**
 * Reads a config document from disk: JSON with line and column on syntax
 * errors, sections pulled in with `{ "$include": "file.json" }`, `"env:NAME"`
 * secrets, each section validated by its own schema, cross-references checked
 * against the names other sections define, and the files each section names
 * checked. Every problem is reported as `file: json.path: message`, all at
 * once. The sections come from the caller (`src/sections.ts` for the
 * gateway): this folder knows no feature.
 *
 * @module
 */

import { dirname, isAbsolute, relative, resolve } from "node:path";
import { z } from "zod";
import { encodeHex } from "../util/hex.ts";
import { type Definition, References } from "./references.ts";
import type { DocumentOf, Sections } from "./section.ts";

/** A config that cannot be used, with every problem found. */
export class ConfigError extends Error {
  constructor(readonly problems: string[]) {
    super(problems.join("\n"));
    this.name = "ConfigError";
  }
}

/** A validated config and what was learnt while reading it. */
export interface LoadedConfig<Config = Record<string, unknown>> {
  /** Validated, with defaults applied, units parsed and paths made absolute. */
  config: Config;
  /** The names the sections define, for cross-references. */
  references: References;
  /** The document as written, includes inlined, `env:` references kept: safe to show. */
  document: Record<string, unknown>;
  /** Absolute path of the main config file. */
  file: string;
  /** The main file and every included file, for watching. */
  files: string[];
  /** Short hash of the validated config and the files it names; equal hashes mean nothing changed. */
  hash: string;
}

/** One problem in a document, at a JSON path. */
export interface Problem {
  path: readonly PropertyKey[];
  message: string;
}

/** The outcome of {@link validateDocument}. */
export interface Validated<Config> {
  /** The validated document, when there were no problems. */
  config?: Config;
  references: References;
  problems: Problem[];
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

/**
 * Validates a document (already parsed from JSON, `env:` substituted) section
 * by section: each section's schema, then the references of every section
 * that is valid, against the names the valid sections define. Problems of
 * every section are listed at once. Unknown top-level keys are problems.
 *
 * @example
 * ```ts
 * import { z } from "zod";
 * import { validateDocument } from "./load.ts";
 * const sections = { greeting: { schema: z.string().default("hello") } };
 * validateDocument({}, sections).config; // { greeting: "hello" }
 * validateDocument({ greting: "hi" }, sections).problems[0].message; // 'Unrecognized key: "greting"'
 * ```
 */
export function validateDocument<S extends Sections>(
  document: Record<string, unknown>,
  sections: S,
): Validated<DocumentOf<S>> {
  const problems: Problem[] = [];
  for (const key of Object.keys(document)) {
    if (key !== "$schema" && !Object.hasOwn(sections, key)) {
      problems.push({ path: [], message: `Unrecognized key: "${key}"` });
    }
  }
  const config: Record<string, unknown> = {};
  /** What checks see of an invalid section: its valid entries, or nothing. */
  const salvaged: Record<string, unknown> = {};
  for (const [key, section] of Object.entries(sections)) {
    const parsed = section.schema.safeParse(document[key]);
    if (parsed.success) {
      config[key] = salvaged[key] = parsed.data;
      continue;
    }
    for (const issue of parsed.error.issues) {
      problems.push({ path: [key, ...issue.path], message: issue.message });
    }
    salvaged[key] = validEntries(section.schema, document[key]);
  }
  const definitions: Record<string, Definition[]> = {};
  const unknownKinds: string[] = [];
  for (const [key, section] of Object.entries(sections)) {
    for (const [kind, define] of Object.entries(section.defines ?? {})) {
      // A section too broken to salvage defines no known names: references to it are not checked.
      if (salvaged[key] === undefined && !(key in config)) unknownKinds.push(kind);
      else (definitions[kind] ??= []).push(...define(salvaged[key]));
    }
  }
  const references = new References(definitions, unknownKinds);
  const report = (path: readonly PropertyKey[], message: string) =>
    problems.push({ path, message });
  for (const [key, section] of Object.entries(sections)) {
    if (salvaged[key] !== undefined || key in config) {
      section.check?.(salvaged[key], references, report);
    }
  }
  return problems.length
    ? { references, problems }
    : { config: config as DocumentOf<S>, references, problems };
}

/**
 * The entries of an invalid array or record section that are valid on their
 * own, so that its references are still checked and every problem is listed
 * at once: an array keeps its indices (an invalid entry is left out, a hole
 * that iteration with `entries()` sees as `undefined`), a record its valid
 * keys. Undefined for any other schema, or input of the wrong shape.
 */
function validEntries(schema: z.ZodType, input: unknown): unknown {
  let inner: z.ZodType = schema;
  while (
    inner instanceof z.ZodDefault || inner instanceof z.ZodPrefault ||
    inner instanceof z.ZodOptional
  ) {
    inner = inner.unwrap() as z.ZodType;
  }
  if (inner instanceof z.ZodArray && Array.isArray(input)) {
    const entries: unknown[] = new Array(input.length);
    input.forEach((item, i) => {
      const parsed = z.safeParse(inner.element, item);
      if (parsed.success) entries[i] = parsed.data;
    });
    return entries;
  }
  if (inner instanceof z.ZodRecord && input && typeof input === "object") {
    const entries: Record<string, unknown> = {};
    for (const [name, item] of Object.entries(input)) {
      const parsed = z.safeParse(inner.valueType, item);
      if (parsed.success) entries[name] = parsed.data;
    }
    return entries;
  }
  return undefined;
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
  unset: Map<string, Problem>,
): unknown {
  if (typeof value === "string") {
    const name = ENV_REFERENCE.exec(value)?.[1];
    if (!name) return value;
    const resolved = env(name);
    if (resolved === undefined) {
      unset.set(formatPath(path), { path, message: `environment variable ${name} is not set` });
    }
    return resolved ?? "";
  }
  if (Array.isArray(value)) {
    return value.map((item, i) => substituteEnv(item, [...path, i], env, unset));
  }
  if (value && typeof value === "object") {
    return Object.fromEntries(
      Object.entries(value).map((
        [key, item],
      ) => [key, substituteEnv(item, [...path, key], env, unset)]),
    );
  }
  return value;
}

/**
 * Loads and validates a config file made of `sections`. Throws a
 * {@link ConfigError} listing every problem, each naming the file and the
 * JSON path.
 *
 * @example
 * ```ts
 * import { z } from "zod";
 * import { ConfigError, loadConfig } from "./load.ts";
 * const sections = { greeting: { schema: z.string().default("hello") } };
 * try {
 *   const { config } = await loadConfig("config/config.json", sections);
 *   console.log(config.greeting);
 * } catch (error) {
 *   if (error instanceof ConfigError) console.error(error.problems.join("\n"));
 * }
 * ```
 */
export async function loadConfig<S extends Sections>(
  path: string,
  sections: S,
  env: (name: string) => string | undefined = (name) => Deno.env.get(name),
): Promise<LoadedConfig<DocumentOf<S>>> {
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
  const describe = ({ path, message }: Problem) =>
    `${fileOf(path)}: ${formatPath(path)}: ${message}`;
  // Values whose variable is unset are reported once; their schema errors would only repeat it.
  const unset = new Map<string, Problem>();
  const substituted = substituteEnv(document, [], env, unset) as Record<string, unknown>;
  problems.push(...[...unset.values()].map(describe));
  const validated = validateDocument(substituted, sections);
  for (const problem of validated.problems) {
    if (!unset.has(formatPath(problem.path))) problems.push(describe(problem));
  }
  const config = validated.config;
  if (problems.length || !config) throw new ConfigError(problems);

  const fingerprints: string[] = [];
  for (const [key, section] of Object.entries(sections)) {
    await section.resolve?.(config[key], {
      dir: sectionDir.get(key) ?? baseDir,
      env,
      fingerprint: (text) => fingerprints.push(text),
      report: (path, message) => problems.push(describe({ path, message })),
    });
  }
  if (problems.length) throw new ConfigError(problems);

  const digest = await crypto.subtle.digest(
    "SHA-256",
    new TextEncoder().encode(JSON.stringify([config, fingerprints])),
  );
  const hash = encodeHex(digest).slice(0, 12);
  return { config, references: validated.references, document, file, files, hash };
}
