/**
 * The `plugins` section of the config: where plugins live, which run on
 * every route, what each is granted, their settings and deadlines.
 *
 * @module
 */

import { resolve } from "node:path";
import { z } from "zod";
import type { Definition } from "../config/references.ts";
import type { ConfigSection } from "../config/section.ts";
import { Duration } from "../config/units.ts";
import { filterError } from "../bus/topic.ts";
import { probePlugins } from "./probe.ts";

/** A plugin name: the file or directory name under the plugins directory. */
export const PluginName = z.string().regex(
  /^[A-Za-z0-9][A-Za-z0-9_-]*$/,
  "a plugin name is letters, digits, '_' and '-', not starting with '_' or '-'",
);

const Grant = z.union([z.boolean(), z.array(z.string().min(1))]);
const Filters = z.array(
  z.string().superRefine((filter, context) => {
    const problem = filterError(filter);
    if (problem) context.addIssue({ code: "custom", message: problem });
  }),
);

/** What the config allows one plugin at most; the plugin gets the part of this it asks for. */
export const PluginGrantConfig = z.strictObject({
  net: Grant.optional().describe("hosts ('api.example.com:443') or true"),
  read: Grant.optional().describe("paths relative to the plugins directory, or true"),
  write: Grant.optional().describe("paths relative to the plugins directory, or true"),
  env: Grant.optional().describe("variable names or true"),
  sys: Grant.optional().describe("Deno.* system API names or true"),
  bus: z.strictObject({
    publish: Filters.optional().describe("MQTT filters of the topics it may publish on"),
    subscribe: Filters.optional().describe("MQTT filters its subscriptions must lie within"),
  }).optional().describe(
    "narrows its bus access; without it, every topic outside the reserved fn/, reply and $ ones",
  ),
});

/** The `plugins` section. */
export const PluginsConfig = z.strictObject({
  dir: z.string().default("plugins").describe("relative to the config file"),
  global: z.array(PluginName).default([]).describe("plugins that run on every HTTP route"),
  disabled: z.array(PluginName).default([]).describe(
    "plugins not loaded: routes that name them answer 503 plugin_disabled (the admin API's " +
      "enable overrides this until the next config reload)",
  ),
  grants: z.record(PluginName, PluginGrantConfig).default({}).describe(
    "per plugin, the most it may be given; nothing is granted by default, 'run' and 'ffi' never",
  ),
  // Only each plugin's own schema knows which settings are keys: GET /config shows none.
  settings: z.record(PluginName, z.unknown()).meta({ secret: true }).default({}).describe(
    "per plugin, its settings (ctx.config), checked against the plugin's own schema",
  ),
  debounce: Duration.default(150).describe("how long the plugins directory must be quiet"),
  hookTimeout: Duration.default(5000).describe("a hook past this answers 504"),
  initTimeout: Duration.default(10_000).describe("load and init past this fail the version"),
  drainTimeout: Duration.default(10_000).describe(
    "how long a replaced version may finish in-flight hooks",
  ),
  maxMetricSeries: z.number().int().positive().default(1000).describe(
    "per plugin, the most metric series (name and label values) it may create; " +
      "a new series beyond it is dropped and counted",
  ),
});

/** The validated `plugins` section. */
export type PluginsConfig = z.output<typeof PluginsConfig>;
/** A validated grant. */
export type PluginGrantConfig = z.output<typeof PluginGrantConfig>;

/**
 * The `plugins` section; `dir` is made absolute. It defines `plugin-use` for
 * the plugins that run on every route (`global`). For `gateway check` it
 * discovers `plugin` (the plugins in `dir`) and `plugin-function`
 * (`owner.name` of what each serves, read by importing it with no
 * permissions), and checks that every plugin used, granted or given
 * settings is one of them.
 */
export const pluginsSection = {
  schema: PluginsConfig.prefault({}),
  defines: {
    "plugin-use": (plugins) =>
      plugins.global.map((name, i) => ({ name, path: ["plugins", "global", i] })),
  },
  discover: {
    kinds: ["plugin", "plugin-function"],
    async find(plugins, { dir, report }) {
      const path = ["plugins", "dir"];
      const plugin: Definition[] = [];
      const functions: Definition[] = [];
      let loaded = true;
      const probed = await probePlugins(resolve(dir, plugins.dir), plugins.initTimeout);
      for (const [name, info] of probed) {
        plugin.push({ name, path });
        if (info instanceof Error) {
          loaded = false;
          report(path, `plugin "${name}" does not load: ${info.message}`);
        } else functions.push(...info.functions.map((fn) => ({ name: `${name}.${fn}`, path })));
      }
      // What a plugin that does not load serves is not known: then no function name is checked.
      const found: Record<string, Definition[]> = { plugin };
      if (loaded) found["plugin-function"] = functions;
      return found;
    },
  },
  check(plugins, references, report) {
    for (const { name, path } of references.all("plugin-use")) {
      if (!references.has("plugin", name)) report(path, references.unknown("plugin", name));
    }
    plugins.disabled.forEach((name, i) => {
      if (!references.has("plugin", name)) {
        report(["plugins", "disabled", i], references.unknown("plugin", name));
      }
    });
    for (const part of ["grants", "settings"] as const) {
      for (const name of Object.keys(plugins[part])) {
        if (!references.has("plugin", name)) {
          report(["plugins", part, name], references.unknown("plugin", name));
        }
      }
    }
  },
  resolve(plugins, { dir }) {
    plugins.dir = resolve(dir, plugins.dir);
  },
} satisfies ConfigSection<z.ZodPrefault<typeof PluginsConfig>>;
