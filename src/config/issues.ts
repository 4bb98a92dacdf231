/**
 * Zod's issues as config problems in plain language: `must be a string, not
 * a number`, `must be one of line, length, …`, `unknown key (did you mean
 * "port"?)`. A message a schema writes itself is kept as written; zod's own
 * wording never reaches the user.
 *
 * @module
 */

import type { z } from "zod";
import type { Problem } from "./section.ts";
import { didYouMean } from "./suggest.ts";

type RawIssue = z.core.$ZodRawIssue;

const EXPECTED: Record<string, string> = {
  string: "a string",
  number: "a number",
  int: "a whole number",
  boolean: "true or false",
  object: "an object",
  record: "an object",
  array: "an array",
  tuple: "an array",
  null: "null",
};

/** What a JSON value is, for "not a …". */
function kindOf(input: unknown): string {
  if (input === null) return "null";
  if (Array.isArray(input)) return "an array";
  const type = typeof input;
  return type === "object" ? "an object" : type === "boolean" ? "a boolean" : `a ${type}`;
}

function expected(type: string): string {
  return EXPECTED[type] ?? `a ${type}`;
}

/** `a, b or c`. */
function either(parts: string[]): string {
  return parts.length < 2 ? parts.join("") : `${parts.slice(0, -1).join(", ")} or ${parts.at(-1)}`;
}

/** `must be one of a, b, c`, with a suggestion for a string close to one. */
function oneOf(values: readonly unknown[], input: unknown): string {
  if (values.length === 1) return `must be ${JSON.stringify(values[0])}`;
  const shown = values.map(String);
  const suggestion = typeof input === "string" ? didYouMean(input, shown) : "";
  return `must be one of ${shown.join(", ")}${suggestion}`;
}

function typeMessage(type: string, input: unknown): string {
  if (type === "never") return "is not allowed here";
  if (input === undefined) return `is required (${expected(type)})`;
  if (type === "int" && typeof input === "number") return `must be a whole number, not ${input}`;
  return `must be ${expected(type)}, not ${kindOf(input)}`;
}

function sizeMessage(
  issue: { origin: string; inclusive?: boolean; exact?: boolean },
  limit: number | bigint,
  side: "least" | "most",
): string {
  const bound = issue.exact ? "exactly" : `at ${side}`;
  const unit = issue.origin === "string" ? "character" : "item";
  if (issue.origin === "string" || issue.origin === "array" || issue.origin === "set") {
    if (side === "least" && limit === 1 && !issue.exact) return "must not be empty";
    return `must have ${bound} ${limit} ${unit}${limit === 1 ? "" : "s"}`;
  }
  if (issue.exact) return `must be ${limit}`;
  if (issue.inclusive) return `must be at ${side} ${limit}`;
  return `must be ${side === "least" ? "more" : "less"} than ${limit}`;
}

function formatMessage(issue: z.core.$ZodRawIssue<z.core.$ZodIssueInvalidStringFormat>): string {
  switch (issue.format) {
    case "regex":
      return `must match ${issue.pattern}`;
    case "starts_with":
      return `must start with ${JSON.stringify((issue as { prefix?: string }).prefix)}`;
    case "ends_with":
      return `must end with ${JSON.stringify((issue as { suffix?: string }).suffix)}`;
    case "includes":
      return `must contain ${JSON.stringify((issue as { includes?: string }).includes)}`;
    default:
      return `must be a valid ${issue.format}`;
  }
}

/**
 * A union's issue: what the alternatives are when each failed at the value
 * itself (`must be true, false or an array, not a string`), else the
 * problems of the one alternative whose shape fits.
 */
function unionMessage(branches: z.core.$ZodIssue[][], input: unknown): string {
  const values: unknown[] = [];
  const types: string[] = [];
  for (const issues of branches) {
    const [issue] = issues;
    if (issues.length !== 1 || issue.path.length > 0) {
      const fitting = branches.filter((b) => b.every((i) => i.path.length > 0));
      if (fitting.length !== 1) return "matches none of the forms it may take";
      return fitting[0].map((i) => `${i.path.join(".")}: ${i.message}`).join("; ");
    }
    if (issue.code === "invalid_value") values.push(...issue.values);
    else if (issue.code === "invalid_type") {
      types.push(...issue.expected === "boolean" ? ["true", "false"] : [expected(issue.expected)]);
    } else return issue.message;
  }
  if (types.length === 0) return oneOf(values, input);
  const parts = [...values.map((v) => JSON.stringify(v)), ...types];
  return `must be ${either(parts)}, not ${kindOf(input)}`;
}

/**
 * The message of an issue whose schema gave none (zod's error map for a
 * parse); undefined leaves zod's (for issue kinds configs never meet).
 */
function plainMessage(issue: RawIssue): string | undefined {
  switch (issue.code) {
    case "invalid_type":
      return typeMessage(issue.expected, issue.input);
    case "too_small":
      return sizeMessage(issue, issue.minimum, "least");
    case "too_big":
      return sizeMessage(issue, issue.maximum, "most");
    case "invalid_value":
      return oneOf(issue.values, issue.input);
    case "invalid_format":
      return formatMessage(issue);
    case "not_multiple_of":
      return `must be a multiple of ${issue.divisor}`;
    case "unrecognized_keys":
      return issue.keys.length === 1
        ? `unknown key ${JSON.stringify(issue.keys[0])}`
        : `unknown keys ${issue.keys.map((k) => JSON.stringify(k)).join(", ")}`;
    case "invalid_key":
      return `invalid key: ${issue.issues.map((i) => i.message).join("; ")}`;
    case "invalid_union": {
      const { discriminator, options } = issue as { discriminator?: string; options?: unknown[] };
      if (discriminator !== undefined && options) {
        const value = (issue.input as Record<string, unknown> | undefined)?.[discriminator];
        return value === undefined
          ? `is required (one of ${options.join(", ")})`
          : oneOf(options, value);
      }
      return unionMessage(issue.errors, issue.input);
    }
    case "custom":
      return "is not valid";
    default:
      return undefined;
  }
}

/**
 * The message for a key an object does not have: a suggestion when one of
 * its keys is close, else the keys it has.
 *
 * @example
 * ```ts
 * import { unknownKey } from "./issues.ts";
 * unknownKey("prot", ["type", "host", "port"]); // 'unknown key (did you mean "port"?)'
 * unknownKey("x", ["type", "port"]); // "unknown key; the keys here are type, port"
 * ```
 */
export function unknownKey(key: string, known: readonly string[]): string {
  const suggestion = didYouMean(key, known);
  if (suggestion) return `unknown key${suggestion}`;
  return known.length ? `unknown key; the keys here are ${known.join(", ")}` : "unknown key";
}

/**
 * Parses `input` with `schema`: its data, or its problems at `at` followed by
 * each issue's path. An unknown key is a problem at that key.
 *
 * @example
 * ```ts
 * import { z } from "zod";
 * import { parseProblems } from "./issues.ts";
 * const port = z.strictObject({ port: z.number() });
 * parseProblems(port, { port: "80" }, ["web"]).problems;
 * // [{ path: ["web", "port"], message: "must be a number, not a string" }]
 * parseProblems(port, { port: 80, prot: 1 }, ["web"]).problems;
 * // [{ path: ["web", "prot"], message: 'unknown key (did you mean "port"?)' }]
 * ```
 */
export function parseProblems<T>(
  schema: z.ZodType<T>,
  input: unknown,
  at: readonly PropertyKey[],
): { data: T; problems?: undefined } | { data?: undefined; problems: Problem[] } {
  // The keys of the object an unknown key was found in, by the issue's `keys` (kept by zod).
  const known = new Map<unknown, string[]>();
  const parsed = schema.safeParse(input, {
    error: (issue) => {
      if (issue.code === "unrecognized_keys") {
        const shape = (issue.inst as { _zod?: { def?: { shape?: object } } })?._zod?.def?.shape;
        known.set(issue.keys, Object.keys(shape ?? {}));
      }
      return plainMessage(issue);
    },
  });
  if (parsed.success) return { data: parsed.data };
  const problems: Problem[] = [];
  for (const issue of parsed.error.issues) {
    const path = [...at, ...issue.path];
    if (issue.code !== "unrecognized_keys") problems.push({ path, message: issue.message });
    else {
      for (const key of issue.keys) {
        problems.push({
          path: [...path, key],
          message: unknownKey(key, known.get(issue.keys) ?? []),
        });
      }
    }
  }
  return { problems };
}
