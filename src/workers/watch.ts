/**
 * Watching a worker's source files: absolute globs (`*`, `?`, `**`) watched
 * with `Deno.watchFs` from their longest directory prefix without wildcards,
 * changes debounced into one call.
 *
 * @module
 */

import { dirname } from "node:path";
import { getLogger } from "@logtape/logtape";

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
  const roots = [...new Set(globs.map(watchRoot))];
  const watchers: Deno.FsWatcher[] = [];
  let changed = new Set<string>();
  let timer: ReturnType<typeof setTimeout> | undefined;
  for (const root of roots) {
    let watcher: Deno.FsWatcher;
    try {
      watcher = Deno.watchFs(root, { recursive: true });
    } catch (error) {
      logger.warning("cannot watch {root}: {error}", { root, error: (error as Error).message });
      continue;
    }
    watchers.push(watcher);
    (async () => {
      for await (const event of watcher) {
        if (event.kind === "access") continue;
        for (const path of event.paths) {
          if (patterns.some((pattern) => pattern.test(path))) changed.add(path);
        }
        if (changed.size === 0) continue;
        clearTimeout(timer);
        timer = setTimeout(() => {
          const paths = [...changed];
          changed = new Set();
          onChange(paths);
        }, DEBOUNCE_MS);
      }
    })().catch(() => {/* closed */});
  }
  return () => {
    clearTimeout(timer);
    for (const watcher of watchers) {
      try {
        watcher.close();
      } catch { /* closed */ }
    }
  };
}
