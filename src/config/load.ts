/**
 * Reads a config document from disk: JSON with line and column on syntax
 * errors, sections pulled in with `{ "$include": "file.json" }`, `"env:NAME"`
 * secrets, each section validated by its own schema, cross-references checked
 * against the names other sections define (and, for `gateway check`, the
 * names found outside the document: the plugins directory), and the files
 * each section names checked. Every problem is reported as
 * `file:line:column: json.path: message` in plain language, all at once. The
 * sections come from the caller (`src/sections.ts` for the gateway): this
 * folder knows no feature.
 *
 * @module
 */

import { dirname, isAbsolute, relative, resolve } from "node:path";
import { z } from "zod";
import { encodeHex } from "../util/hex.ts";
import { parseProblems, unknownKey } from "./issues.ts";
import { JsonPositions, positionAt } from "./json_positions.ts";
import { type Definition, References } from "./references.ts";
import type { DocumentOf, Problem, Sections } from "./section.ts";

export type { Problem } from "./section.ts";

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

/** How {@link loadConfig} reads a config. */
export interface LoadOptions {
  /** The environment for `env:` references (default: the process's). */
  env?: (name: string) => string | undefined;
  /**
   * Also run the sections' `discover` (the plugins directory and what each
   * plugin serves), so that references to what they find are checked: what
   * `gateway check` does. Serving does not: plugins come and go while it runs.
   */
  discover?: boolean;
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
 * that is valid, against the names the valid sections define and the names
 * `discovered` outside the document (by kind; a kind a section discovers and
 * `discovered` lacks is not checked). Problems of every section are listed
 * at once, in plain language. Unknown top-level keys are problems.
 *
 * @example
 * ```ts
 * import { z } from "zod";
 * import { validateDocument } from "./load.ts";
 * const sections = { greeting: { schema: z.string().default("hello") } };
 * validateDocument({}, sections).config; // { greeting: "hello" }
 * validateDocument({ greting: "hi" }, sections).problems[0];
 * // { path: ["greting"], message: 'unknown key (did you mean "greeting"?)' }
 * ```
 */
export function validateDocument<S extends Sections>(
  document: Record<string, unknown>,
  sections: S,
  discovered: Record<string, Definition[]> = {},
): Validated<DocumentOf<S>> {
  const problems: Problem[] = [];
  for (const key of Object.keys(document)) {
    if (key !== "$schema" && !Object.hasOwn(sections, key)) {
      problems.push({ path: [key], message: unknownKey(key, Object.keys(sections)) });
    }
  }
  const config: Record<string, unknown> = {};
  /** What checks see of an invalid section: its valid entries, or nothing. */
  const salvaged: Record<string, unknown> = {};
  for (const [key, section] of Object.entries(sections)) {
    const parsed = parseProblems(section.schema, document[key], [key]);
    if (parsed.problems === undefined) {
      config[key] = salvaged[key] = parsed.data;
      continue;
    }
    problems.push(...parsed.problems);
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
    for (const kind of section.discover?.kinds ?? []) {
      if (Object.hasOwn(discovered, kind)) (definitions[kind] ??= []).push(...discovered[kind]);
      else unknownKinds.push(kind);
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

/** A JSON file as read: its value, and where each of its values is written. */
interface JsonFile {
  value: unknown;
  positions: JsonPositions;
}

/**
 * Reads and parses a JSON file; `shown` is how problems name it, `section`
 * the key it is included as (its root's JSON path), `unreadable` the problem
 * when it cannot be read.
 */
async function readJson(
  file: string,
  shown: string,
  unreadable: (reason: string) => string,
  section?: string,
): Promise<JsonFile> {
  let text: string;
  try {
    text = await Deno.readTextFile(file);
  } catch (error) {
    const reason = error instanceof Deno.errors.NotFound ? "file not found" : String(error);
    throw new ConfigError([unreadable(reason)]);
  }
  try {
    const value = JSON.parse(text);
    return { value, positions: new JsonPositions(text, section === undefined ? [] : [section]) };
  } catch (error) {
    const message = (error as Error).message.replace(/ in JSON at position \d+.*$/s, "")
      .replace(/^JSON\.parse: /, "");
    const offset = /position (\d+)/.exec((error as Error).message)?.[1];
    let where = "";
    if (offset !== undefined) {
      const { line, column } = positionAt(text, Number(offset));
      where = `:${line}:${column}`;
    }
    const path = section === undefined ? "" : ` ${section}:`;
    throw new ConfigError([`${shown}${where}:${path} invalid JSON: ${message}`]);
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
 * {@link ConfigError} listing every problem, each naming the file, the line
 * and column, and the JSON path.
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
  options: LoadOptions = {},
): Promise<LoadedConfig<DocumentOf<S>>> {
  const env = options.env ?? ((name: string) => Deno.env.get(name));
  const file = resolve(path);
  const baseDir = dirname(file);
  const shown = (p: string) => {
    const rel = relative(Deno.cwd(), p);
    return rel.startsWith("..") || isAbsolute(rel) ? p : rel;
  };
  const main = await readJson(file, shown(file), (why) => `${shown(file)}: cannot read: ${why}`);
  /** `file:line:column` of a JSON path in the main file. */
  const inMain = (path: readonly PropertyKey[]) => {
    const { line, column } = main.positions.at(path);
    return `${shown(file)}:${line}:${column}`;
  };
  const root = main.value;
  if (!root || typeof root !== "object" || Array.isArray(root)) {
    throw new ConfigError([`${inMain([])}: the config must be a JSON object`]);
  }

  const document: Record<string, unknown> = {};
  const files = [file];
  /** The sections written in an included file: how it is shown, and its positions. */
  const included = new Map<string, { shown: string; positions: JsonPositions }>();
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
    const at = `${inMain([section, "$include"])}: ${section}.$include`;
    if (typeof include !== "string" || Object.keys(value as object).length !== 1) {
      problems.push(`${at}: must be the only key, naming a JSON file`);
      continue;
    }
    const path = resolve(baseDir, include);
    let read: JsonFile;
    try {
      read = await readJson(
        path,
        shown(path),
        (why) => `${at}: cannot read ${shown(path)}: ${why}`,
        section,
      );
    } catch (error) {
      if (!(error instanceof ConfigError)) throw error;
      problems.push(...error.problems);
      continue;
    }
    document[section] = read.value;
    files.push(path);
    included.set(section, { shown: shown(path), positions: read.positions });
    sectionDir.set(section, dirname(path));
  }
  if (problems.length) throw new ConfigError(problems);

  const describe = ({ path, message }: Problem) => {
    const inFile = included.get(String(path[0]));
    const { line, column } = (inFile?.positions ?? main.positions).at(path);
    return `${inFile?.shown ?? shown(file)}:${line}:${column}: ${formatPath(path)}: ${message}`;
  };
  const report = (path: readonly PropertyKey[], message: string) =>
    problems.push(describe({ path, message }));
  // Values whose variable is unset are reported once; their schema errors would only repeat it.
  const unset = new Map<string, Problem>();
  const substituted = substituteEnv(document, [], env, unset) as Record<string, unknown>;
  problems.push(...[...unset.values()].map(describe));
  const discovered: Record<string, Definition[]> = {};
  const discoveryProblems: Problem[] = [];
  for (const [key, section] of Object.entries(sections)) {
    if (!options.discover || !section.discover) continue;
    const parsed = section.schema.safeParse(substituted[key]);
    if (!parsed.success) continue; // its problems are the schema's
    Object.assign(
      discovered,
      await section.discover.find(parsed.data, {
        dir: sectionDir.get(key) ?? baseDir,
        report: (path, message) => discoveryProblems.push({ path, message }),
      }),
    );
  }
  const validated = validateDocument(substituted, sections, discovered);
  for (const problem of [...validated.problems, ...discoveryProblems]) {
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
      report,
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
