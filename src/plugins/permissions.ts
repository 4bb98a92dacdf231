/**
 * A plugin's Worker permissions: what the plugin asks for, cut down to what
 * the config grants it. Nothing is granted by default; `run`, `ffi` and
 * `import` from the network are never granted; a plugin can always read its
 * own files, each by its path (not its directory: Deno checks a path as
 * given, so read permission on a directory reaches through any link put in
 * it later).
 *
 * @module
 */

import { isAbsolute, relative, resolve } from "node:path";
import type { PluginGrantConfig } from "./config.ts";

type Grant = boolean | string[] | undefined;
const KINDS = ["net", "read", "write", "env", "sys"] as const;
const PATH_KINDS = new Set(["read", "write"]);

/** The permissions to start a plugin's Worker with, and what was asked but not granted. */
export interface PluginPermissionPlan {
  permissions: Deno.PermissionOptionsObject;
  /** `kind: item` for every part of the request the grant does not cover. */
  denied: string[];
}

function within(path: string, dir: string): boolean {
  const rel = relative(dir, path);
  return rel === "" || (!rel.startsWith("..") && !isAbsolute(rel));
}

function intersect(kind: string, asked: Grant, granted: Grant, base: string): Grant {
  if (!asked || !granted) return false;
  const resolveAll = (items: string[]) =>
    PATH_KINDS.has(kind) ? items.map((item) => resolve(base, item)) : items;
  if (asked === true) return granted === true ? true : resolveAll(granted);
  const wanted = resolveAll(asked);
  if (granted === true) return wanted;
  const allowed = resolveAll(granted);
  return wanted.filter((item) =>
    PATH_KINDS.has(kind)
      ? allowed.some((dir) => within(item, dir))
      : allowed.includes(item) || allowed.includes(item.replace(/:\d+$/, ""))
  );
}

/**
 * Works out a plugin Worker's permissions from the plugin's request and the
 * config's grant. Paths are relative to `pluginsDir`; `ownFiles` (the plugin's
 * files as found when it was loaded) are always readable, and nothing else
 * in its directory.
 *
 * @example
 * ```ts
 * import { planPermissions } from "./permissions.ts";
 * const plan = planPermissions(
 *   { net: ["api.example.com:443"], env: ["HOME"] },
 *   { net: true },
 *   "/srv/plugins",
 *   ["/srv/plugins/stamp.ts"],
 * );
 * plan.permissions.net; // ["api.example.com:443"]
 * plan.denied; // ["env: HOME"]
 * ```
 */
export function planPermissions(
  asked: Partial<Record<(typeof KINDS)[number], Grant>> | undefined,
  granted: PluginGrantConfig | undefined,
  pluginsDir: string,
  ownFiles: readonly string[],
): PluginPermissionPlan {
  const permissions: Deno.PermissionOptionsObject = {
    run: false,
    ffi: false,
    import: false,
  };
  const denied: string[] = [];
  for (const kind of KINDS) {
    const want = asked?.[kind];
    const got = intersect(kind, want, granted?.[kind], pluginsDir);
    if (want === true && got !== true) denied.push(`${kind}: all`);
    if (Array.isArray(want)) {
      const kept = got === true ? [] : (got || []) as string[];
      const resolved = PATH_KINDS.has(kind) ? want.map((item) => resolve(pluginsDir, item)) : want;
      for (const item of resolved) if (!kept.includes(item)) denied.push(`${kind}: ${item}`);
    }
    permissions[kind] = got as never;
  }
  const read = permissions.read;
  if (read !== true) permissions.read = [...(read || []), ...ownFiles];
  return { permissions, denied };
}
