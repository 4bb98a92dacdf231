/**
 * Deno KV stores that only the gateway's user can read: the broker's
 * sessions, the bridges' queues and the plugins' store hold messages and
 * credentials, so their files get mode 0600.
 *
 * @module
 */

/** The files SQLite keeps beside a database in WAL mode. */
const SIDE_FILES = ["", "-wal", "-shm"];

/**
 * Opens the Deno KV store at `path` with its files at mode 0600. A new store
 * is created as an empty 0600 file before it opens (SQLite gives its `-wal`
 * and `-shm` files the database file's mode), and the files of an existing
 * one are set to 0600 after it opens (Deno's `openKv` takes no mode).
 *
 * @example
 * ```ts
 * import { openPrivateKv } from "./private_kv.ts";
 * const kv = await openPrivateKv(`${await Deno.makeTempDir()}/store.sqlite3`);
 * kv.close();
 * ```
 */
export async function openPrivateKv(path: string): Promise<Deno.Kv> {
  try {
    await Deno.writeFile(path, new Uint8Array(), { createNew: true, mode: 0o600 });
  } catch (error) {
    if (!(error instanceof Deno.errors.AlreadyExists)) throw error;
  }
  const kv = await Deno.openKv(path);
  for (const suffix of SIDE_FILES) {
    await Deno.chmod(`${path}${suffix}`, 0o600).catch((error) => {
      if (!(error instanceof Deno.errors.NotFound)) throw error;
    });
  }
  return kv;
}
