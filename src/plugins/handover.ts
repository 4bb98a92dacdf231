/**
 * State hand-over on hot reload: the running version's `snapshot()` goes to
 * the new version's `restore(state)` during the swap, as structured-clone
 * bytes, bounded in size and time. Any failure is the new version's: it is
 * dropped and the old one keeps serving.
 *
 * @module
 */

import { PluginError, type PluginSandbox } from "./sandbox.ts";

/** At most this much state crosses (serialised), within this long for snapshot and restore together. */
export const HANDOVER_LIMITS = { bytes: 1024 * 1024, ms: 2000 };

/**
 * Hands `old`'s state to `next` (both loaded, `next` after its `init`);
 * resolves with the bytes handed over (0 when there was nothing to hand).
 * Rejects with a {@link PluginError} saying which side failed and why.
 *
 * @example
 * ```ts
 * import { handOver } from "./handover.ts";
 * // const bytes = await handOver(slot.active, loaded); // then make `loaded` current
 * ```
 */
export async function handOver(
  old: PluginSandbox,
  next: PluginSandbox,
  limits = HANDOVER_LIMITS,
): Promise<number> {
  if (!old.info?.handover.snapshot) return 0;
  const deadline = Date.now() + limits.ms;
  const refuse = (message: string, cause?: unknown) =>
    new PluginError({
      type: "HandoverError",
      message: `${message}${
        cause ? `: ${cause instanceof PluginError ? cause.info.message : String(cause)}` : ""
      }; the running version keeps serving`,
      at: next.source.entry,
      ...(cause instanceof PluginError && cause.info.stack ? { stack: cause.info.stack } : {}),
    }, "threw");
  let state: Uint8Array | undefined;
  try {
    state = await old.snapshot(deadline);
  } catch (error) {
    throw refuse("snapshot() of the running version failed", error);
  }
  if (state === undefined) return 0;
  if (state.byteLength > limits.bytes) {
    throw refuse(
      `snapshot() returned ${state.byteLength} bytes, more than the ${limits.bytes} a hand-over carries`,
    );
  }
  if (!next.info?.handover.restore) return 0;
  try {
    await next.restore(state, deadline);
  } catch (error) {
    throw refuse("restore() of the new version failed", error);
  }
  return state.byteLength;
}
