/**
 * What the plugins in a directory serve, for `gateway check`: each is read
 * the way the host reads what a plugin asks for, imported in a Worker that
 * may read only its own files, without settings or init.
 *
 * @module
 */

import { discoverPlugins } from "./discover.ts";
import type { PluginInfo } from "./messages.ts";
import { planPermissions } from "./permissions.ts";
import { PluginError, PluginSandbox, type SandboxServices } from "./sandbox.ts";

/** A plugin being imported is served nothing: it runs no hook, so it asks nothing. */
const UNSERVED: SandboxServices = {
  ask: () => Promise.reject(new Error("a plugin is not served while it is probed")),
  notify: () => {},
  crashed: () => {},
};

/**
 * Each plugin in `dir`, by name (in name order), with what it describes of
 * itself, or the error that kept it from loading.
 *
 * @example
 * ```ts
 * import { probePlugins } from "./probe.ts";
 * for (const [name, info] of await probePlugins("plugins", 10_000)) {
 *   console.log(name, info instanceof Error ? info.message : info.functions);
 * }
 * ```
 */
export async function probePlugins(
  dir: string,
  timeout: number,
): Promise<Map<string, PluginInfo | Error>> {
  const sources = await discoverPlugins(dir);
  const probed = await Promise.all([...sources.values()].map(async (source) => {
    if (source.escape) {
      const message = `a link leads outside the plugin's directory: ${source.escape}`;
      return new PluginError({ type: "PluginError", message, at: source.entry }, "threw");
    }
    const { permissions } = planPermissions(undefined, undefined, dir, source.files);
    const sandbox = new PluginSandbox(source, permissions, UNSERVED);
    try {
      return await sandbox.load(undefined, timeout, true);
    } catch (error) {
      return error as Error;
    } finally {
      sandbox.terminate();
    }
  }));
  return new Map([...sources.keys()].map((name, i) => [name, probed[i]]));
}
