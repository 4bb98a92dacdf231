/**
 * Keeps the process alive when it runs out of file descriptors.
 *
 * `Deno.serve` accepts connections in a loop of its own; when `accept()`
 * fails with EMFILE, that loop ends and the server's `finished` promise
 * rejects with `Deno.errors.Http` "Error: Too many open files (os error 24)".
 * Nothing in user code awaits that promise unless asked to, so the rejection
 * goes unhandled and Deno exits with code 1. {@link installDescriptorGuard}
 * handles exactly those rejections. The server whose loop ended stays
 * stopped (its listening socket is closed; its open connections are still
 * served): see `docs/fd-exhaustion.md`.
 *
 * Deno also panics ("ext/signals/lib.rs: ... Too many open files") when the
 * first signal listener of the process is registered while no descriptor is
 * left, because it creates its signal thread's socketpair lazily and unwraps
 * the result. The guard registers one at once, while descriptors are free.
 *
 * @module
 */

import { getLogger } from "@logtape/logtape";

const logger = getLogger(["gateway", "connections"]);

/**
 * Whether `error` means "no descriptor left": EMFILE (this process) or
 * ENFILE (the whole system). `Deno.listen`'s `accept()` throws an `Error`
 * with `code: "EMFILE"`; `Deno.serve` rejects with a `Deno.errors.Http`
 * that has no code, only "(os error 24)" in its message.
 *
 * @example
 * ```ts
 * import { isDescriptorExhaustion } from "./fd_guard.ts";
 * isDescriptorExhaustion(new Deno.errors.Http("Error: Too many open files (os error 24)")); // true
 * isDescriptorExhaustion(new Error("connection reset")); // false
 * ```
 */
export function isDescriptorExhaustion(error: unknown): boolean {
  if (!(error instanceof Error)) return false;
  const code = (error as { code?: unknown }).code;
  return code === "EMFILE" || code === "ENFILE" || /\(os error 2[34]\)/.test(error.message);
}

/**
 * Handles unhandled promise rejections that are descriptor exhaustion, so
 * that they are logged instead of ending the process; any other unhandled
 * rejection still ends it. Also makes Deno set up its signal handling now
 * (adding and removing a listener for SIGWINCH, whose default is to be
 * ignored), so that it cannot panic later for want of a descriptor. Call it
 * at startup. Returns a function that removes the rejection handler.
 *
 * @example
 * ```ts
 * import { installDescriptorGuard } from "./fd_guard.ts";
 * const removeGuard = installDescriptorGuard();
 * // ... serve ...
 * removeGuard();
 * ```
 */
export function installDescriptorGuard(): () => void {
  const onRejection = (event: PromiseRejectionEvent) => {
    if (!isDescriptorExhaustion(event.reason)) return;
    event.preventDefault();
    logger.error(
      "out of file descriptors, the process keeps running: {error}. From Deno.serve this means " +
        "that HTTP listener stopped accepting (its open connections are still served)",
      { error: event.reason },
    );
  };
  globalThis.addEventListener("unhandledrejection", onRejection);
  if (Deno.build.os !== "windows") {
    const ignore = () => {};
    Deno.addSignalListener("SIGWINCH", ignore);
    Deno.removeSignalListener("SIGWINCH", ignore);
  }
  return () => globalThis.removeEventListener("unhandledrejection", onRejection);
}
