/**
 * Group commits to Deno KV: writes collected over an event-loop turn are
 * committed in as few transactions as Deno KV's limits allow, and payloads
 * larger than one KV value are stored in parts. Used by the MQTT bridge
 * queues and the MQTT session store.
 *
 * @module
 */

/** Payload bytes per KV value (a value holds at most 64 KiB). */
export const PART_BYTES = 60_000;
/** Mutations per transaction (Deno KV allows 1000) and bytes per transaction (it allows 800 KiB). */
const BATCH_MUTATIONS = 500;
const BATCH_BYTES = 600_000;

/** One write, with an estimate of its size in the transaction. */
export type KvMutation =
  | { kind: "set"; key: Deno.KvKey; value: unknown; bytes: number }
  | { kind: "delete"; key: Deno.KvKey; bytes: number };

/**
 * Splits `payload` into copies of at most {@link PART_BYTES} (at least one
 * part, empty for an empty payload). Copies, not views: a view would be stored
 * with the whole buffer behind it.
 *
 * @example
 * ```ts
 * import { payloadParts } from "./kv_writes.ts";
 * payloadParts(new Uint8Array(150_000)).length; // 3
 * ```
 */
export function payloadParts(payload: Uint8Array): Uint8Array[] {
  const count = Math.max(1, Math.ceil(payload.byteLength / PART_BYTES));
  return Array.from(
    { length: count },
    (_, part) =>
      Uint8Array.prototype.slice.call(payload, part * PART_BYTES, (part + 1) * PART_BYTES),
  );
}

/**
 * Commits `mutations` in order, in transactions within Deno KV's limits.
 * Throws when a transaction is not committed; the ones before it stay
 * committed.
 *
 * @example
 * ```ts
 * import { commitInBatches } from "./kv_writes.ts";
 * const kv = await Deno.openKv(":memory:");
 * await commitInBatches(kv, [{ kind: "set", key: ["a"], value: 1, bytes: 8 }]);
 * ```
 */
export async function commitInBatches(kv: Deno.Kv, mutations: KvMutation[]): Promise<void> {
  let op = kv.atomic();
  let count = 0;
  let bytes = 0;
  for (const mutation of mutations) {
    if (count >= BATCH_MUTATIONS || bytes + mutation.bytes > BATCH_BYTES) {
      await commitOrThrow(op);
      op = kv.atomic();
      count = 0;
      bytes = 0;
    }
    if (mutation.kind === "set") op.set(mutation.key, mutation.value);
    else op.delete(mutation.key);
    count++;
    bytes += mutation.bytes;
  }
  if (count > 0) await commitOrThrow(op);
}

async function commitOrThrow(op: Deno.AtomicOperation): Promise<void> {
  const result = await op.commit();
  if (!result.ok) throw new Error("the KV transaction was not committed");
}
