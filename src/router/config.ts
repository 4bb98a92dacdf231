/**
 * The `routes` section: what a request must look like (match), where it goes
 * (target), and what guards it (plugins, limits, rate limits, CORS). It
 * defines `plugin-use` (the plugins routes run) and checks each route's
 * references: HTTP listeners, upstreams, models, OCR templates, the MQTT
 * broker, topic placeholders, and (for `gateway check`, which reads the
 * plugins directory) the functions it calls. Static roots are made absolute
 * and must be directories.
 *
 * @module
 */

import { resolve } from "node:path";
import { z } from "zod";
import { Method, Name } from "../config/fields.ts";
import { directoryProblem } from "../config/paths.ts";
import type { ConfigSection, Report } from "../config/section.ts";
import type { References } from "../config/references.ts";
import { CorsConfig, LimitsConfig, RateLimitConfig } from "../pipeline/config.ts";
import { PluginName } from "../plugins/config.ts";
import {
  type FunctionTargetConfig,
  TargetConfig,
  WEBSOCKET_PLACEHOLDERS,
} from "../targets/config.ts";
import { placeholderProblem } from "../bus/topic_template.ts";
import { parseFunctionRef } from "../functions/call.ts";
import { didYouMean } from "../config/suggest.ts";

/** What a request must look like for a route to take it. */
export const MatchConfig = z.strictObject({
  path: z.string().startsWith("/").default("/*").describe(
    "'/users/:id', '/files/*', '/items/:id{[0-9]+}'",
  ),
  methods: z.array(Method).optional().describe("any method when absent"),
  host: z.string().optional().describe("'example.com' or '*.example.com'"),
  headers: z.record(z.string(), z.string()).optional().describe(
    "exact values; '*' only requires presence",
  ),
});

/** One route: a match, a target, and the limits that guard it. */
export const RouteConfig = z.strictObject({
  name: Name.optional().describe("used in logs and metrics; defaults to routes[i]"),
  listeners: z.array(Name).optional().describe("listener names; all HTTP listeners when absent"),
  priority: z.number().int().default(0).describe("higher runs first; then the more specific match"),
  match: MatchConfig.prefault({}),
  plugins: z.array(PluginName).optional().describe(
    "plugins whose hooks run on this route (after plugins.global and the listener's), by priority",
  ),
  target: TargetConfig,
  rateLimit: RateLimitConfig.optional(),
  limits: LimitsConfig.optional(),
  cors: CorsConfig.optional(),
  accessLog: z.boolean().default(true).describe(
    "false: no access-log line for this route's requests (health checks, polling)",
  ),
});

/** The `routes` section. */
export const RoutesConfig = z.array(RouteConfig);

/** One route's validated config. */
export type RouteConfig = z.output<typeof RouteConfig>;
/** The validated `routes` section. */
export type RoutesConfig = z.output<typeof RoutesConfig>;

/** Reports `name` at `path` when no section defines it as a `kind`. */
function checkReference(
  references: References,
  kind: string,
  name: string | undefined,
  path: PropertyKey[],
  report: Report,
  what = kind,
): void {
  if (name !== undefined && !references.has(kind, name)) {
    report(path, references.unknown(kind, name, what));
  }
}

/** The names of a route path's params: `/devices/:id/:part{[a-z]+}` has `id` and `part`. */
function pathParams(path: string): string[] {
  return path.split("/").filter((segment) => segment.startsWith(":"))
    .map((segment) => segment.slice(1).replace(/\{.*$/, "").replace(/\?$/, ""));
}

/**
 * What is wrong with the function a route calls: an owner that no plugin in
 * the plugins directory, worker or model is, or a function its plugin does
 * not have. Worker functions are known only once a worker runs: for them the
 * worker's name is checked.
 */
function functionProblem(
  target: FunctionTargetConfig,
  references: References,
): string | undefined {
  const { kind, owner, name } = parseFunctionRef(target.name);
  if (kind === "model" || (!kind && owner === "model")) {
    return references.has("model", name) ? undefined : references.unknown("model", name);
  }
  if (kind === "worker" || (!kind && references.has("worker", owner))) {
    return references.has("worker", owner) ? undefined : references.unknown("worker", owner);
  }
  if (!references.has("plugin", owner)) {
    if (kind) return references.unknown("plugin", owner);
    const owners = [...references.names("plugin"), ...references.names("worker")];
    return `no plugin or worker is called "${owner}"${didYouMean(owner, owners)}`;
  }
  if (references.has("plugin-function", `${owner}.${name}`)) return undefined;
  const own = references.names("plugin-function").filter((f) => f.startsWith(`${owner}.`))
    .map((f) => f.slice(owner.length + 1));
  return `plugin "${owner}" has no function "${name}"${didYouMean(name, own)}; ` +
    (own.length ? `its functions are ${own.join(", ")}` : "it has none");
}

/** The `routes` section. */
export const routesSection = {
  schema: RoutesConfig.default([]),
  defines: {
    "plugin-use": (routes) =>
      routes.flatMap((route, i) =>
        (route.plugins ?? []).map((name, j) => ({ name, path: ["routes", i, "plugins", j] }))
      ),
  },
  check(routes, references, report) {
    for (const [i, route] of routes.entries()) {
      if (!route) continue; // invalid: reported by the schema
      const at = ["routes", i];
      for (const [j, name] of (route.listeners ?? []).entries()) {
        const path = [...at, "listeners", j];
        const listener = references.get("listener", name);
        if (!references.has("listener", name)) report(path, references.unknown("listener", name));
        else if (!references.has("http-listener", name)) {
          report(path, `listener "${name}" does not serve HTTP (type ${listener?.detail})`);
        }
      }
      const { target } = route;
      checkReference(
        references,
        "upstream",
        target.upstream,
        [...at, "target", "upstream"],
        report,
      );
      checkReference(
        references,
        "upstream",
        target.websocket?.upstream,
        [...at, "target", "websocket", "upstream"],
        report,
      );
      checkReference(
        references,
        "model",
        target.model?.name,
        [...at, "target", "model", "name"],
        report,
      );
      checkReference(
        references,
        "ocr-template",
        target.ocr?.template,
        [...at, "target", "ocr", "template"],
        report,
        "OCR template",
      );
      const params = pathParams(route.match.path);
      for (
        const [kind, topic, placeholders] of [
          ["websocket", target.websocket?.topic, [...WEBSOCKET_PLACEHOLDERS, ...params]],
          ["topic", target.topic?.topic, params],
        ] as const
      ) {
        const problem = topic === undefined ? undefined : placeholderProblem(topic, placeholders);
        if (problem) report([...at, "target", kind, "topic"], problem);
      }
      // Functions are served by whatever runs (plugins come and go): `gateway check` looks.
      const problem = target.function && references.known("plugin")
        ? functionProblem(target.function, references)
        : undefined;
      if (problem) report([...at, "target", "function", "name"], problem);
      if (target.mqtt !== undefined && !references.has("mqtt-broker", "embedded")) {
        report(
          [...at, "target", "mqtt"],
          "an mqtt target needs the mqtt section (the embedded broker)",
        );
      }
    }
  },
  async resolve(routes, { dir, report }) {
    for (const [i, route] of routes.entries()) {
      const root = route.target.static?.root;
      if (root === undefined) continue;
      const absolute = route.target.static!.root = resolve(dir, root);
      const problem = await directoryProblem(absolute);
      if (problem) report(["routes", i, "target", "static", "root"], problem);
    }
  },
} satisfies ConfigSection<z.ZodDefault<typeof RoutesConfig>>;
