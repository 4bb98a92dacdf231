/**
 * Every plugin's `ctx.store`: one Deno KV file, `<dataDir>/plugins.kv`
 * (mode 0600), each plugin's keys under `["plugin", <name>, <key>]` so no
 * plugin reads another's. Besides get, set, delete and list it answers the
 * two operations concurrent handlers need: `increment` (read, add, write as
 * one step) and `atomic` (writes committed only if the keys checked still
 * have the versionstamps the plugin read).
 *
 * @module
 */

import { join } from "node:path";
import { openPrivateKv } from "../storage/private_kv.ts";
import type { StoreAsk } from "./messages.ts";

/**
 * The plugins' stores, opened on first use.
 *
 * @example
 * ```ts
 * import { PluginStores } from "./store.ts";
 * const stores = new PluginStores();
 * stores.dataDir = await Deno.makeTempDir();
 * await stores.answer("counter", { op: "store.increment", key: "hits", by: 2 }); // 2
 * await stores.answer("counter", { op: "store.get", key: "hits" }); // 2
 * await stores.close();
 * ```
 */
export class PluginStores {
  /** The directory of `plugins.kv`; set before the first operation. */
  dataDir = "";
  #kv?: Promise<Deno.Kv>;
  /** The increments waiting on each key, so that those of one key do not race each other. */
  readonly #increments = new Map<string, Promise<unknown>>();

  /** Runs one store operation of `plugin`. */
  async answer(plugin: string, ask: StoreAsk): Promise<unknown> {
    const kv = await this.#open();
    switch (ask.op) {
      case "store.get":
        return (await kv.get(keyOf(plugin, ask.key))).value ?? undefined;
      case "store.getEntry": {
        const entry = await kv.get(keyOf(plugin, ask.key));
        return { value: entry.value ?? undefined, versionstamp: entry.versionstamp };
      }
      case "store.set":
        await kv.set(keyOf(plugin, ask.key), ask.value, ask.ttl ? { expireIn: ask.ttl } : {});
        return;
      case "store.delete":
        await kv.delete(keyOf(plugin, ask.key));
        return;
      case "store.list": {
        const found: { key: string; value: unknown; versionstamp: string }[] = [];
        const range = {
          start: keyOf(plugin, ask.prefix),
          end: ["plugin", plugin, `${ask.prefix}\uffff`],
        };
        for await (const entry of kv.list(range, { limit: Math.max(ask.limit, 1) })) {
          found.push({
            key: String(entry.key[2]),
            value: entry.value,
            versionstamp: entry.versionstamp,
          });
        }
        return found;
      }
      case "store.increment":
        return await this.#increment(kv, keyOf(plugin, ask.key), ask.by);
      case "store.atomic": {
        const op = kv.atomic();
        for (const { key, versionstamp } of ask.checks) {
          op.check({ key: keyOf(plugin, key), versionstamp });
        }
        for (const mutation of ask.mutations) {
          const key = keyOf(plugin, mutation.key);
          if (mutation.type === "delete") op.delete(key);
          else op.set(key, mutation.value, mutation.ttl ? { expireIn: mutation.ttl } : {});
        }
        const result = await op.commit();
        return result.ok ? { ok: true, versionstamp: result.versionstamp } : { ok: false };
      }
    }
  }

  /** Closes the KV file, once the plugins are stopped. */
  async close(): Promise<void> {
    if (this.#kv) (await this.#kv).close();
    this.#kv = undefined;
  }

  #open(): Promise<Deno.Kv> {
    return this.#kv ??= Deno.mkdir(this.dataDir, { recursive: true }).then(() =>
      openPrivateKv(join(this.dataDir, "plugins.kv"))
    );
  }

  /**
   * Adds `by` to the number at `key` (absent is 0) and resolves with the sum.
   * Increments of one key wait for each other; the versionstamp check retries
   * when a `set` or `atomic` wrote the key in between.
   */
  #increment(kv: Deno.Kv, key: Deno.KvKey, by: number): Promise<number> {
    if (typeof by !== "number" || !Number.isFinite(by)) {
      throw new TypeError(`increment by ${String(by)}: not a finite number`);
    }
    const id = JSON.stringify(key);
    const run = (this.#increments.get(id) ?? Promise.resolve()).then(async () => {
      for (;;) {
        const entry = await kv.get(key);
        const value = entry.value ?? 0;
        if (typeof value !== "number") {
          throw new TypeError(`"${String(key[2])}" holds a ${typeof value}, not a number`);
        }
        const sum = value + by;
        if ((await kv.atomic().check(entry).set(key, sum).commit()).ok) return sum;
      }
    });
    const settled = run.catch(() => {});
    this.#increments.set(id, settled);
    void settled.then(() => {
      if (this.#increments.get(id) === settled) this.#increments.delete(id);
    });
    return run;
  }
}

/** Where `plugin`'s `key` is in the KV store. */
function keyOf(plugin: string, key: string): Deno.KvKey {
  if (typeof key !== "string") throw new TypeError("a store key is a string");
  return ["plugin", plugin, key];
}
