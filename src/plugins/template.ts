/**
 * `gateway plugin new NAME`: writes a commented plugin to start from, and the
 * SDK's types beside it (`_sdk/plugin.ts`, skipped by discovery) so an editor
 * can check the plugin.
 *
 * @module
 */

import { join } from "node:path";

const SDK = new URL("../../sdk/plugin.ts", import.meta.url);

function template(name: string): string {
  return `/**
 * The ${name} plugin. Saved changes are live within a moment; a broken save is
 * reported (GET /plugins on the admin API, and the log) and the previous
 * version keeps serving. Run it on a route with \`"plugins": ["${name}"]\`.
 */

import type { Plugin } from "./_sdk/plugin.ts";

/** Settings from plugins.settings.${name} in the config. */
interface Settings {
  greeting: string;
}

export default {
  name: "${name}",
  version: "0.1.0",
  // Higher runs first; onResponse hooks run in the reverse order.
  priority: 0,
  // Asked for here AND granted in plugins.grants.${name}, or denied. For example:
  // permissions: { net: ["api.example.com:443"], env: ["API_TOKEN"] },

  // Checked before init; a function returning an error message, or a JSON Schema object.
  config: (settings) => {
    const greeting = (settings as Partial<Settings>).greeting;
    if (greeting !== undefined && typeof greeting !== "string") return "greeting must be a string";
  },

  init(ctx) {
    ctx.log.info("starting", { greeting: ctx.config.greeting ?? "hello" });
  },

  // Return nothing to continue, { headers, body, url, method } to change the request,
  // or { status, headers, body } to answer at once.
  onRequest(req, ctx) {
    if (req.path === "/${name}/ping") return { status: 200, body: { pong: ctx.config.greeting ?? "hello" } };
    return { headers: { ...req.headers, "x-${name}": "seen" } };
  },

  // Return nothing, or { status, headers, body } changes.
  onResponse(res) {
    return { headers: { ...res.headers, "x-${name}-version": "0.1.0" } };
  },

  // Callable as "${name}.hello" from routes ({ "function": { "name": "plugin:${name}.hello" } }),
  // other plugins (ctx.call) and workers.
  functions: {
    hello: (args: { who?: string }, ctx) => ({ message: \`\${ctx.config.greeting ?? "hello"}, \${args?.who ?? "world"}\` }),
  },
} satisfies Plugin<Partial<Settings>>;
`;
}

/**
 * Writes `<dir>/<name>.ts` from the template (refusing to overwrite) and
 * `<dir>/_sdk/plugin.ts`. Returns the plugin's path.
 *
 * @example
 * ```ts
 * import { writePluginTemplate } from "./template.ts";
 * const file = await writePluginTemplate("plugins", "stamp"); // "plugins/stamp.ts"
 * ```
 */
export async function writePluginTemplate(dir: string, name: string): Promise<string> {
  if (!/^[A-Za-z0-9][A-Za-z0-9_-]*$/.test(name)) {
    throw new Error(`"${name}" is not a plugin name (letters, digits, '_' and '-')`);
  }
  const file = join(dir, `${name}.ts`);
  await Deno.mkdir(join(dir, "_sdk"), { recursive: true });
  await Deno.writeTextFile(join(dir, "_sdk", "plugin.ts"), await Deno.readTextFile(SDK));
  try {
    await Deno.writeTextFile(file, template(name), { createNew: true });
  } catch (error) {
    if (error instanceof Deno.errors.AlreadyExists) throw new Error(`${file} already exists`);
    throw error;
  }
  return file;
}
