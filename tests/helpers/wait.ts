/**
 * Polling for a condition in tests, with a deadline instead of a fixed sleep.
 *
 * @module
 */

/**
 * Calls `check` every 25 ms until it returns something other than
 * `undefined`, `null` or `false`, and resolves with that; throws
 * `timed out waiting for <what>` after `timeoutMs`.
 *
 * @example
 * ```ts
 * import { until } from "./wait.ts";
 * const started = Date.now();
 * await until("50 ms to pass", () => Date.now() - started > 50);
 * ```
 */
export async function until<T>(
  what: string,
  check: () => T | Promise<T>,
  timeoutMs = 15_000,
): Promise<Exclude<T, undefined | null | false>> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = await check();
    if (value !== undefined && value !== null && value !== false) {
      return value as Exclude<T, undefined | null | false>;
    }
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 25));
  }
}
