/**
 * The contract between a feature folder and the config document: a section
 * is its key's zod schema plus what it defines for others, how it checks its
 * references, and how it makes its paths absolute. `src/config/` assembles a
 * document from sections it is given and imports no feature folder.
 *
 * @module
 */

import { z } from "zod";
import type { Definition, References } from "./references.ts";

/** One problem in a document, at a JSON path (starting with the section key). */
export interface Problem {
  path: readonly PropertyKey[];
  message: string;
}

/** Reports one problem at a JSON path of the document (starting with the section key). */
export type Report = (path: readonly PropertyKey[], message: string) => void;

/** What a section's `discover` gets besides its value. */
export interface DiscoverContext {
  /** The directory of the file the section is written in (an `$include`d file's own). */
  dir: string;
  report: Report;
}

/**
 * Names a section finds outside the document (files in a directory, what
 * they serve), for `gateway check`: only a loader asked to look runs `find`.
 * Otherwise, and for a kind `find` leaves out, every name of `kinds` counts
 * as defined (`References.known` is false), so references to them are
 * checked only by `gateway check`.
 */
export interface Discovery<Value> {
  kinds: readonly string[];
  find(value: Value, context: DiscoverContext): Promise<Record<string, Definition[]>>;
}

/** What a section's `resolve` gets besides its value. */
export interface ResolveContext {
  /** The directory of the file the section is written in (an `$include`d file's own). */
  dir: string;
  /** The environment, as the loader was given it. */
  env: (name: string) => string | undefined;
  /** Adds text (a file the section names) to the config hash, so its change is a change. */
  fingerprint: (text: string) => void;
  report: Report;
}

/**
 * One top-level section of the config document.
 *
 * @example
 * ```ts
 * import { z } from "zod";
 * import type { ConfigSection } from "./section.ts";
 * const greetings = {
 *   schema: z.record(z.string(), z.string()).default({}),
 *   defines: {
 *     greeting: (value) => Object.keys(value).map((name) => ({ name, path: ["greetings", name] })),
 *   },
 * } satisfies ConfigSection<z.ZodDefault<z.ZodRecord<z.ZodString, z.ZodString>>>;
 * ```
 */
export interface ConfigSection<Schema extends z.ZodType = z.ZodType> {
  /** Validates the section (defaults applied, units parsed); objects are strict. */
  schema: Schema;
  /** The names this section defines, by kind, for other sections' references. */
  defines?: Record<string, (value: z.output<Schema>) => Iterable<Definition>>;
  /**
   * Checks the section's references to names other sections define. Runs on
   * an invalid array or record section too, with its valid entries only (an
   * array keeps its indices and has holes where entries are invalid), so that
   * every problem is listed at once; `defines` likewise.
   */
  check?(value: z.output<Schema>, references: References, report: Report): void;
  /** Names found outside the document, for `gateway check`. */
  discover?: Discovery<z.output<Schema>>;
  /** Makes paths absolute and checks that the files and programs it names exist. */
  resolve?(value: z.output<Schema>, context: ResolveContext): void | Promise<void>;
}

/** A document's sections, by key (each with its own schema type, hence `any`). */
// deno-lint-ignore no-explicit-any
export type Sections = Record<string, ConfigSection<any>>;

/** The validated document of `sections`. */
export type DocumentOf<S extends Sections> = { [K in keyof S]: z.output<S[K]["schema"]> };

/**
 * The whole document of `sections` as one strict zod schema (each section's
 * own schema, no cross-references), for JSON Schema export and quick parsing.
 *
 * @example
 * ```ts
 * import { z } from "zod";
 * import { documentSchema } from "./section.ts";
 * const schema = documentSchema({ greeting: { schema: z.string().default("hello") } });
 * schema.parse({}).greeting; // "hello"
 * ```
 */
export function documentSchema<S extends Sections>(
  sections: S,
): z.ZodObject<{ $schema: z.ZodOptional<z.ZodString> } & { [K in keyof S]: S[K]["schema"] }> {
  const shape = Object.fromEntries(Object.entries(sections).map(([key, s]) => [key, s.schema]));
  return z.strictObject({ $schema: z.string().optional(), ...shape }) as never;
}
