/**
 * Field schemas many sections share: names, ports and HTTP methods.
 *
 * @module
 */

import { z } from "zod";

/**
 * A name of a listener, upstream or route: letters, digits, `_`, `.`, `-`.
 *
 * @example
 * ```ts
 * import { Name } from "./fields.ts";
 * Name.safeParse("api-v2").success; // true
 * Name.safeParse("a b").success; // false
 * ```
 */
export const Name = z.string().regex(
  /^[A-Za-z0-9_][A-Za-z0-9_.-]*$/,
  "names use letters, digits, '_', '.' and '-'",
);

/** A TCP or UDP port; 0 asks the system for a free one. */
export const Port = z.number().int().min(0).max(65535);

/** An HTTP method, upper-cased. */
export const Method = z.string().regex(/^[A-Za-z]+$/).transform((m) => m.toUpperCase());
