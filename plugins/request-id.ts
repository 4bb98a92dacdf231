/**
 * request-id: every request carries an id, and the upstream learns who it is
 * talking to ("access tagging").
 *
 * - The id is the client's own id header when it is well-formed (1 to 128 of
 *   `A-Z a-z 0-9 . _ : -`), else the gateway's request id. It is set on the
 *   request that goes on (so the upstream sees it) and echoed on the response.
 * - Tags: the static `tags` plus the `derive`d ones (route, listener, method,
 *   client address, device) go upstream in one header as
 *   `name=value,name=value`. A tags header the client sent is replaced, so a
 *   client cannot forge tags.
 * - Metrics: `access_requests_total{route}` counts every request, and
 *   `access_tags_total{route,tag}` counts it once per static tag
 *   (`tag="env=prod"`). Derived tags are not labels: a client address would
 *   make one series per client.
 *
 * Settings (`plugins.settings["request-id"]`, all optional):
 * - `header` (default `"x-request-id"`): the id header, upstream and back.
 * - `tagsHeader` (default `"x-gateway-tags"`): the tags header sent upstream.
 * - `tags` (default `{}`): static tags, name to value; names and values are
 *   `A-Z a-z 0-9 _ . : / @ + -`.
 * - `derive` (default `["route"]`): any of `"route"`, `"listener"`,
 *   `"method"`, `"clientIp"`, `"deviceId"` (skipped when the request has none).
 *
 * @example
 * ```json
 * {
 *   "plugins": {
 *     "global": ["request-id"],
 *     "settings": {
 *       "request-id": {
 *         "header": "x-correlation-id",
 *         "tags": { "env": "prod", "region": "eu-west" },
 *         "derive": ["route", "clientIp"]
 *       }
 *     }
 *   }
 * }
 * ```
 * The upstream then gets `x-correlation-id: <id>` and
 * `x-gateway-tags: env=prod,region=eu-west,route=api,clientIp=203.0.113.7`.
 *
 * @module
 */

import type { Plugin, PluginContext, PluginRequest } from "../sdk/plugin.ts";

type Derived = "route" | "listener" | "method" | "clientIp" | "deviceId";

interface Settings {
  header?: string;
  tagsHeader?: string;
  tags?: Record<string, string>;
  derive?: Derived[];
}

type RequestView = Omit<PluginRequest, "text" | "bytes" | "json">;

const WELL_FORMED_ID = /^[A-Za-z0-9._:-]{1,128}$/;
const HEADER_NAME = { type: "string", pattern: "^[A-Za-z0-9-]+$" };
const TAG_TEXT = "^[A-Za-z0-9_.:/@+-]+$";
const DERIVE: Record<Derived, (req: RequestView) => string | undefined> = {
  route: (req) => req.route.name,
  listener: (req) => req.route.listener,
  method: (req) => req.method,
  clientIp: (req) => req.clientIp,
  deviceId: (req) => req.deviceId,
};

/** The id this request goes by: the client's well-formed one, else the gateway's. */
function requestIdOf(req: RequestView, header: string): string {
  const given = req.headers[header];
  return given !== undefined && WELL_FORMED_ID.test(given) ? given : req.requestId;
}

function idHeader(ctx: PluginContext<Settings>): string {
  return (ctx.config.header ?? "x-request-id").toLowerCase();
}

let requests: ReturnType<PluginContext["metrics"]["counter"]>;
let tagged: ReturnType<PluginContext["metrics"]["counter"]>;

export default {
  name: "request-id",
  version: "1.0.0",
  priority: 1000,
  config: {
    type: "object",
    additionalProperties: false,
    properties: {
      header: HEADER_NAME,
      tagsHeader: HEADER_NAME,
      tags: {
        type: "object",
        propertyNames: { pattern: TAG_TEXT },
        additionalProperties: { type: "string", pattern: TAG_TEXT },
      },
      derive: {
        type: "array",
        uniqueItems: true,
        items: { enum: Object.keys(DERIVE) },
      },
    },
  },
  init(ctx) {
    requests = ctx.metrics.counter("access_requests_total", "requests seen, by route");
    tagged = ctx.metrics.counter("access_tags_total", "requests by route and static tag");
  },
  onRequest(req, ctx) {
    const staticTags = Object.entries(ctx.config.tags ?? {});
    const derived = (ctx.config.derive ?? ["route"]).flatMap((name) => {
      const value = DERIVE[name](req);
      return value === undefined ? [] : [[name, value]];
    });
    const tags = [...staticTags, ...derived].map(([name, value]) => `${name}=${value}`);
    const route = req.route.name;
    requests.inc(1, { route });
    for (const [name, value] of staticTags) tagged.inc(1, { route, tag: `${name}=${value}` });
    const header = idHeader(ctx);
    const headers = { ...req.headers, [header]: requestIdOf(req, header) };
    const tagsHeader = (ctx.config.tagsHeader ?? "x-gateway-tags").toLowerCase();
    delete headers[tagsHeader];
    if (tags.length > 0) headers[tagsHeader] = tags.join(",");
    return { headers };
  },
  onResponse(res, ctx) {
    const header = idHeader(ctx);
    return { headers: { ...res.headers, [header]: requestIdOf(res.request, header) } };
  },
} satisfies Plugin<Settings>;
