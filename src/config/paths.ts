/**
 * Checks sections run on the paths they name.
 *
 * @module
 */

/**
 * What is wrong with `path` as a directory, or undefined when it is one.
 *
 * @example
 * ```ts
 * import { directoryProblem } from "./paths.ts";
 * await directoryProblem("/nonexistent"); // '"/nonexistent" does not exist'
 * await directoryProblem("/tmp"); // undefined
 * ```
 */
export async function directoryProblem(path: string): Promise<string | undefined> {
  try {
    const info = await Deno.stat(path);
    return info.isDirectory ? undefined : `"${path}" is not a directory`;
  } catch (error) {
    return error instanceof Deno.errors.NotFound
      ? `"${path}" does not exist`
      : `cannot read "${path}": ${(error as Error).message}`;
  }
}
