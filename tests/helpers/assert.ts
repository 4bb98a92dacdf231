/**
 * The few assertions the tests use (JSR's @std/assert is not reachable here).
 * Each throws an `Error` whose message shows what was expected and what came.
 *
 * @module
 */

import { deepStrictEqual } from "node:assert";

/**
 * Throws unless `condition` is truthy.
 *
 * @example
 * ```ts
 * import { assert } from "./assert.ts";
 * assert(1 + 1 === 2, "arithmetic");
 * ```
 */
export function assert(condition: unknown, message = "assertion failed"): asserts condition {
  if (!condition) throw new Error(message);
}

/**
 * Throws unless `actual` deeply equals `expected`.
 *
 * @example
 * ```ts
 * import { assertEquals } from "./assert.ts";
 * assertEquals({ a: [1] }, { a: [1] });
 * ```
 */
export function assertEquals<T>(
  actual: unknown,
  expected: T,
  message?: string,
): asserts actual is T {
  try {
    deepStrictEqual(actual, expected);
  } catch {
    throw new Error(
      `${message ? message + ": " : ""}expected ${Deno.inspect(expected)}, got ${
        Deno.inspect(actual)
      }`,
    );
  }
}

/**
 * Throws unless `text` matches `pattern`.
 *
 * @example
 * ```ts
 * import { assertMatch } from "./assert.ts";
 * assertMatch("gateway 1.0.0", /^gateway /);
 * ```
 */
export function assertMatch(text: string, pattern: RegExp, message?: string): void {
  if (!pattern.test(text)) {
    throw new Error(
      `${message ? message + ": " : ""}${Deno.inspect(text)} does not match ${pattern}`,
    );
  }
}

/**
 * Throws unless `text` contains `part`.
 *
 * @example
 * ```ts
 * import { assertStringIncludes } from "./assert.ts";
 * assertStringIncludes("port in use", "in use");
 * ```
 */
export function assertStringIncludes(text: string, part: string, message?: string): void {
  if (!text.includes(part)) {
    throw new Error(
      `${message ? message + ": " : ""}${Deno.inspect(text)} does not include ${
        Deno.inspect(part)
      }`,
    );
  }
}

/**
 * The error `promise` rejects with, which must be an instance of `type`;
 * throws when it resolves or rejects with anything else.
 *
 * @example
 * ```ts
 * import { rejectionOf } from "./assert.ts";
 * const error = await rejectionOf(Promise.reject(new RangeError("too big")), RangeError);
 * error.message; // "too big"
 * ```
 */
export async function rejectionOf<E extends Error>(
  promise: Promise<unknown>,
  type: new (...args: never[]) => E,
): Promise<E> {
  try {
    await promise;
  } catch (error) {
    if (error instanceof type) return error;
    throw error;
  }
  throw new Error(`expected a rejection with ${type.name}`);
}
