/**
 * Watching directories for file changes, with bursts of events (an editor's
 * write-then-rename, a `git checkout`) debounced into one call.
 *
 * @module
 */

/** Options for {@link watchDebounced}. */
export interface WatchOptions {
  /** Watch subdirectories too (default true). */
  recursive?: boolean;
  /** Quiet time after the last event before `onChange` runs (default 200 ms). */
  debounceMs?: number;
  /** Which changed paths count (default: all). */
  filter?: (path: string) => boolean;
  /**
   * Called for a directory that cannot be watched, which is then skipped.
   * Without it, that error is thrown (and nothing is watched).
   */
  onError?: (dir: string, error: Error) => void;
}

/**
 * Calls `onChange` with the changed paths (those `filter` keeps) once per burst
 * of changes under `dirs`. Access events are ignored. Returns the function that
 * stops watching.
 *
 * @example
 * ```ts
 * import { watchDebounced } from "./watch.ts";
 * const stop = watchDebounced([Deno.cwd()], (paths) => console.log(paths), {
 *   filter: (path) => path.endsWith(".json"),
 * });
 * stop();
 * ```
 */
export function watchDebounced(
  dirs: readonly string[],
  onChange: (paths: string[]) => void,
  options: WatchOptions = {},
): () => void {
  const { recursive = true, debounceMs = 200, filter = () => true, onError } = options;
  const watchers: Deno.FsWatcher[] = [];
  let changed = new Set<string>();
  let timer: ReturnType<typeof setTimeout> | undefined;
  let stopped = false;
  const stop = () => {
    stopped = true;
    clearTimeout(timer);
    for (const watcher of watchers) {
      try {
        watcher.close();
      } catch { /* already closed */ }
    }
  };
  const fire = () => {
    const paths = [...changed];
    changed = new Set();
    onChange(paths);
  };
  for (const dir of new Set(dirs)) {
    let watcher: Deno.FsWatcher;
    try {
      watcher = Deno.watchFs(dir, { recursive });
    } catch (error) {
      if (!onError) {
        stop();
        throw error;
      }
      onError(dir, error as Error);
      continue;
    }
    watchers.push(watcher);
    (async () => {
      for await (const event of watcher) {
        // An event already read when stop() ran must not start a new timer.
        if (stopped) break;
        if (event.kind === "access") continue;
        const kept = event.paths.filter(filter);
        if (kept.length === 0) continue;
        for (const path of kept) changed.add(path);
        clearTimeout(timer);
        timer = setTimeout(fire, debounceMs);
      }
    })().catch(() => {/* closed */});
  }
  return stop;
}
