/**
 * Watches config files for changes. Editors often save by writing a new file
 * and renaming it over the old one, so the watch is on the directories and
 * events are filtered by path; bursts are debounced into one callback.
 *
 * @module
 */

import { dirname, resolve } from "node:path";
import { watchDebounced } from "../util/watch.ts";

/**
 * Calls `onChange` once per burst of changes to any of `files`. Returns a
 * function that stops watching.
 *
 * @example
 * ```ts
 * import { watchFiles } from "./watch.ts";
 * const stop = watchFiles(["config/config.json"], () => console.log("changed"));
 * stop();
 * ```
 */
export function watchFiles(files: string[], onChange: () => void, debounceMs = 200): () => void {
  const wanted = new Set(files.map((file) => resolve(file)));
  return watchDebounced([...wanted].map((file) => dirname(file)), onChange, {
    recursive: false,
    debounceMs,
    filter: (path) => wanted.has(resolve(path)),
  });
}
