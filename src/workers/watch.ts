/**
 * Watching a worker's source files: absolute globs (`*`, `?`, `**`) watched
 * with `Deno.watchFs` from their longest directory prefix without wildcards,
 * changes debounced into one call.
 *
 * @module
 */

import { dirname } from "node:path";
import { getLogger } from "@logtape/logtape";
import { watchDebounced } from "../util/watch.ts";

const logger = getLogger(["gateway", "workers"]);
const DEBOUNCE_MS = 200;

/**
 * The regular expression of an absolute glob: `**` spans directories, `*` and
 * `?` stay within one.
 *
 * @example
 * ```ts
 * import { globToRegExp } from "./watch.ts";
 * globToRegExp("/app/**\/*.py").test("/app/lib/orders.py"); // true
 * ```
 */
export function globToRegExp(glob: string): RegExp {
  let source = "";
  for (let i = 0; i < glob.length; i++) {
    const char = glob[i];
    if (char === "*" && glob[i + 1] === "*") {
      const slash = glob[i + 2] === "/";
      source += slash ? "(?:.*/)?" : ".*";
      i += slash ? 2 : 1;
    } else if (char === "*") source += "[^/]*";
    else if (char === "?") source += "[^/]";
    else source += char.replace(/[.+^${}()|[\]\\]/g, "\\$&");
  }
  return new RegExp(`^${source}$`);
}

/** The directory to watch for `glob`: its longest prefix without wildcards. */
function watchRoot(glob: string): string {
  const wild = glob.search(/[*?[]/);
  return wild < 0 ? dirname(glob) : dirname(glob.slice(0, wild + 1));
}

/**
 * Calls `onChange` (debounced) when a file matching one of `globs` changes.
 * Returns the function that stops watching. Globs whose directory does not
 * exist are logged and skipped.
 *
 * @example
 * ```ts
 * import { watchGlobs } from "./watch.ts";
 * const stop = watchGlobs(["/tmp/app/*.py"], (paths) => console.log(paths));
 * stop();
 * ```
 */
export function watchGlobs(globs: string[], onChange: (paths: string[]) => void): () => void {
  const patterns = globs.map(globToRegExp);
  return watchDebounced(globs.map(watchRoot), onChange, {
    debounceMs: DEBOUNCE_MS,
    filter: (path) => patterns.some((pattern) => pattern.test(path)),
    onError: (root, error) =>
      logger.warning("cannot watch {root}: {error}", { root, error: error.message }),
  });
}
