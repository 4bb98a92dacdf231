/**
 * Finds the plugins in the plugins directory: `<name>.ts` files and
 * `<name>/mod.ts` directories, skipping names that start with `_` or `.`,
 * each with a content hash of its files so an unchanged save reloads nothing.
 *
 * @module
 */

import { isAbsolute, join, relative } from "node:path";
import { concat } from "../util/concat.ts";
import { encodeHex } from "../util/hex.ts";

/** A plugin found on disk. */
export interface PluginSource {
  name: string;
  /** The module to import: `<dir>/<name>.ts` or `<dir>/<name>/mod.ts`. */
  entry: string;
  /** What the plugin owns: its file, or its directory. */
  root: string;
  /**
   * The files it may always read: its file, or the files in its directory when
   * it was found (links and names starting with `.` left out). Read permission
   * is granted on these paths, not on the directory: Deno checks a path where
   * it is, not where a link there leads, so a link added to the directory
   * later would be read through.
   */
  files: string[];
  /** SHA-256 (hex, 16 chars) of the plugin's files. */
  hash: string;
  /**
   * A symbolic link in the plugin's directory that leads outside it, when
   * there is one. Such a plugin is not loaded: read permission on its
   * directory would reach through the link.
   */
  escape?: string;
}

const NAME = /^[A-Za-z0-9][A-Za-z0-9_-]*$/;

/** The files under `dir`, and the symbolic links that lead outside `root`. */
async function filesUnder(
  dir: string,
  root: string,
): Promise<{ files: string[]; escapes: string[] }> {
  const files: string[] = [];
  const escapes: string[] = [];
  for await (const entry of Deno.readDir(dir)) {
    const path = join(dir, entry.name);
    if (entry.isSymlink) {
      const target = await Deno.realPath(path).catch(() => undefined);
      const rel = target === undefined ? "" : relative(root, target);
      if (target === undefined || rel.startsWith("..") || isAbsolute(rel)) {
        escapes.push(`${path} -> ${target ?? "(missing)"}`);
      }
      continue;
    }
    if (entry.name.startsWith(".")) continue;
    if (entry.isDirectory) {
      const inner = await filesUnder(path, root);
      files.push(...inner.files);
      escapes.push(...inner.escapes);
    } else if (entry.isFile) files.push(path);
  }
  return { files: files.sort(), escapes };
}

/**
 * The hash of a plugin's `files` and of the `links` leading out of its
 * directory: adding, removing or retargeting such a link is a change too.
 */
async function hashFiles(files: string[], root: string, links: string[] = []): Promise<string> {
  const parts: Uint8Array[] = [];
  const encoder = new TextEncoder();
  for (const file of files) {
    parts.push(encoder.encode(`\0${file.slice(root.length)}\0`), await Deno.readFile(file));
  }
  for (const link of links) parts.push(encoder.encode(`\0link\0${link}`));
  const digest = new Uint8Array(await crypto.subtle.digest("SHA-256", concat(parts)));
  return encodeHex(digest.subarray(0, 8));
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
          files: [entryFile],
          hash: await hashFiles([entryFile], dir),
        });
      } else if (entry.isDirectory && NAME.test(entry.name)) {
        const root = join(dir, entry.name);
        const entryFile = join(root, "mod.ts");
        if (!(await Deno.stat(entryFile).catch(() => undefined))?.isFile) continue;
        const { files, escapes } = await filesUnder(root, await Deno.realPath(root));
        found.set(entry.name, {
          name: entry.name,
          entry: entryFile,
          root,
          files,
          hash: await hashFiles(files, root, escapes),
          ...(escapes.length > 0 ? { escape: escapes.join(", ") } : {}),
        });
      }
    } catch (error) {
      if (!(error instanceof Deno.errors.NotFound)) throw error;
    }
  }
  return found;
}
