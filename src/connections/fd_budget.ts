/**
 * How many file descriptors the process may open, and how many of them
 * connections may take.
 *
 * Deno raises the soft `RLIMIT_NOFILE` to the hard limit when it starts
 * (`prlimit --nofile=64:4096` shows 4096 inside Deno), and child processes
 * inherit the raised limit. Deno 2 only lets a process read `/proc` (and
 * `/dev/fd`, `/sys`) with `--allow-all`, which the gateway does not run with,
 * so the limit is asked of a shell instead of read from `/proc/self/limits`,
 * and the descriptors actually open are not counted: see
 * `docs/fd-exhaustion.md` for the measurements.
 *
 * @module
 */

/** The limit assumed when no shell answers (no `--allow-run`, or no `sh`): Linux's default soft limit. */
export const FALLBACK_DESCRIPTOR_LIMIT = 1024;

/**
 * Descriptors kept out of the connection budget, however low the limit. A
 * bare Deno process holds about 22 (stdio, epoll and eventfd, Deno's cache
 * databases); on top of that come KV (3 per SQLite store: file, `-wal`,
 * `-shm`), plugin Workers, 3 pipes and a Unix socket per language worker,
 * config and plugin watchers, and the descriptor `accept()` needs to take a
 * connection it is about to refuse.
 */
export const MIN_HEADROOM = 64;

/**
 * The soft limit on open files, as `sh -c "ulimit -Sn"` reports it (about
 * 3 ms, once), or {@link FALLBACK_DESCRIPTOR_LIMIT} when that fails or says
 * `unlimited`.
 *
 * @example
 * ```ts
 * import { descriptorLimit } from "./fd_budget.ts";
 * descriptorLimit(); // 20000 on this machine
 * ```
 */
export function descriptorLimit(): number {
  try {
    const output = new Deno.Command("sh", {
      args: ["-c", "ulimit -Sn"],
      stdin: "null",
      stdout: "piped",
      stderr: "null",
    }).outputSync();
    const limit = Number(new TextDecoder().decode(output.stdout).trim());
    if (output.success && Number.isSafeInteger(limit) && limit > 0) return limit;
  } catch {
    // No permission to run a shell, or no shell: use the fallback.
  }
  return FALLBACK_DESCRIPTOR_LIMIT;
}

/**
 * How many descriptors admitted connections may hold: `limit` minus a
 * headroom of 10% of the limit, at least {@link MIN_HEADROOM}. The
 * proportional part is for what grows with load but is not admitted through
 * the connection manager: HTTP connections of unguarded listeners
 * (`Deno.serve` accepts them on its own) and upstream sockets of proxied
 * requests and L4 proxy connections.
 *
 * @example
 * ```ts
 * import { connectionBudget } from "./fd_budget.ts";
 * connectionBudget(20000); // 18000
 * connectionBudget(1024); // 921
 * connectionBudget(128); // 64
 * ```
 */
export function connectionBudget(limit: number): number {
  return Math.max(0, limit - Math.max(MIN_HEADROOM, Math.ceil(limit / 10)));
}
