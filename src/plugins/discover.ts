/**
 * Finds the plugins in the plugins directory: `<name>.ts` files and
 * `<name>/mod.ts` directories, skipping names that start with `_` or `.`,
 * each with a content hash of its files so an unchanged save reloads nothing.
 *
 * @module
 */

import { join } from "node:path";

/** A plugin found on disk. */
export interface PluginSource {
  name: string;
  /** The module to import: `<dir>/<name>.ts` or `<dir>/<name>/mod.ts`. */
  entry: string;
  /** What the plugin owns and may always read: its file, or its directory. */
  root: string;
  /** SHA-256 (hex, 16 chars) of the plugin's files. */
  hash: string;
}

const NAME = /^[A-Za-z0-9][A-Za-z0-9_-]*$/;

async function filesUnder(dir: string): Promise<string[]> {
  const files: string[] = [];
  for await (const entry of Deno.readDir(dir)) {
    if (entry.name.startsWith(".")) continue;
    const path = join(dir, entry.name);
    if (entry.isDirectory) files.push(...await filesUnder(path));
    else if (entry.isFile) files.push(path);
  }
  return files.sort();
}

async function hashFiles(files: string[], root: string): Promise<string> {
  const parts: Uint8Array[] = [];
  const encoder = new TextEncoder();
  for (const file of files) {
    parts.push(encoder.encode(`\0${file.slice(root.length)}\0`), await Deno.readFile(file));
  }
  const all = new Uint8Array(parts.reduce((n, part) => n + part.length, 0));
  let offset = 0;
  for (const part of parts) {
    all.set(part, offset);
    offset += part.length;
  }
  const digest = new Uint8Array(await crypto.subtle.digest("SHA-256", all));
  return [...digest.subarray(0, 8)].map((b) => b.toString(16).padStart(2, "0")).join("");
}

/**
 * Lists the plugins in `dir` by name. A missing directory has none. A file or
 * directory that disappears while it is read is left out (it is being saved;
 * the next scan sees it).
 *
 * @example
 * ```ts
 * import { discoverPlugins } from "./discover.ts";
 * const plugins = await discoverPlugins("plugins");
 * for (const [name, source] of plugins) console.log(name, source.hash);
 * ```
 */
export async function discoverPlugins(dir: string): Promise<Map<string, PluginSource>> {
  const found = new Map<string, PluginSource>();
  let entries: Deno.DirEntry[];
  try {
    entries = await Array.fromAsync(Deno.readDir(dir));
  } catch (error) {
    if (error instanceof Deno.errors.NotFound) return found;
    throw error;
  }
  for (const entry of entries.sort((a, b) => a.name.localeCompare(b.name))) {
    try {
      if (entry.isFile && entry.name.endsWith(".ts")) {
        const name = entry.name.slice(0, -3);
        if (!NAME.test(name)) continue;
        const entryFile = join(dir, entry.name);
        found.set(name, {
          name,
          entry: entryFile,
          root: entryFile,
          hash: await hashFiles([entryFile], dir),
        });
      } else if (entry.isDirectory && NAME.test(entry.name)) {
        const root = join(dir, entry.name);
        const entryFile = join(root, "mod.ts");
        if (!(await Deno.stat(entryFile).catch(() => undefined))?.isFile) continue;
        found.set(entry.name, {
          name: entry.name,
          entry: entryFile,
          root,
          hash: await hashFiles(await filesUnder(root), root),
        });
      }
    } catch (error) {
      if (!(error instanceof Deno.errors.NotFound)) throw error;
    }
  }
  return found;
}
