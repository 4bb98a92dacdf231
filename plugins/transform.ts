/**
 * transform: header and JSON body rewrites on the way in and on the way out.
 *
 * Each side (`request`, `response`) takes:
 * - `headers.remove`: header names to drop; then `headers.set`: name to value.
 * - `json.remove`: paths to delete; then `json.set`: path to any JSON value.
 *   Missing parents are created (an object, or an array when the next step is
 *   an index); a path that runs into a value of the wrong kind is skipped.
 *
 * Paths are a small JSONPath subset: `$` then steps, each `.name`,
 * `['any name']` (or double quotes) or `[index]`, as in `$.order.items[0].sku`
 * or `$['content-type']`. No wildcards, filters or `..`. A bad path in the
 * settings is refused when the plugin loads, with the setting and the offset.
 * `set` may use an index equal to the array's length to append.
 *
 * Bodies are touched only when their `content-type` is JSON
 * (`application/json` or `application/*+json`), they are not
 * content-encoded (gzip etc.), and they parse; anything else passes unchanged.
 *
 * `routes.<route name>` holds more rules for one route; they run after the
 * top-level ones.
 *
 * @example
 * ```json
 * {
 *   "plugins": {
 *     "settings": {
 *       "transform": {
 *         "request": {
 *           "headers": { "remove": ["cookie"], "set": { "x-source": "gateway" } },
 *           "json": { "remove": ["$.debug"], "set": { "$.meta.via": "gateway" } }
 *         },
 *         "routes": {
 *           "users": { "response": { "json": { "remove": ["$.user.passwordHash"] } } }
 *         }
 *       }
 *     }
 *   },
 *   "routes": [{ "name": "users", "match": { "path": "/users/*" }, "plugins": ["transform"],
 *                "target": { "upstream": "api" } }]
 * }
 * ```
 *
 * @module
 */

import type { Plugin } from "../sdk/plugin.ts";

type Step = string | number;

interface SideRules {
  headers?: { set?: Record<string, string>; remove?: string[] };
  json?: { set?: Record<string, unknown>; remove?: string[] };
}

interface Rules {
  request?: SideRules;
  response?: SideRules;
}

interface Settings extends Rules {
  routes?: Record<string, Rules>;
}

/** One side's rules, ready to apply. */
interface CompiledSide {
  removeHeaders: string[];
  setHeaders: [string, string][];
  removePaths: Step[][];
  setPaths: [Step[], unknown][];
}

const JSON_TYPE = /^application\/(?:[\w.-]+\+)?json\s*(?:;|$)/i;
const HEADER_TOKEN = /^[!#$%&'*+.^_`|~0-9A-Za-z-]+$/;
const NAME_STEP = /^\.([^.[\]'"\s]+)/;
const INDEX_STEP = /^\[(\d+)\]/;
const QUOTED_STEP = /^\[(['"])(.*?)\1\]/;
const UNSETTABLE = new Set(["content-length", "transfer-encoding", "connection", "host"]);

/**
 * Parses `$.a.b[0]['c d']` into steps; throws with the offset of the problem.
 */
function parsePath(path: string): Step[] {
  if (!path.startsWith("$")) throw new Error(`must start with "$"`);
  const steps: Step[] = [];
  let offset = 1;
  while (offset < path.length) {
    const rest = path.slice(offset);
    const name = NAME_STEP.exec(rest) ?? QUOTED_STEP.exec(rest);
    const index = INDEX_STEP.exec(rest);
    if (name?.[2] === "__proto__" || name?.[1] === "__proto__") {
      throw new Error(`uses "__proto__" at offset ${offset}, which cannot be addressed`);
    }
    if (name) steps.push(name[2] ?? name[1]);
    else if (index) steps.push(Number(index[1]));
    else {
      throw new Error(
        `has unexpected ${JSON.stringify(rest)} at offset ${offset}: a step is .name, ` +
          `['name'] or [index] (no wildcards, filters or "..")`,
      );
    }
    offset += (name ?? index)![0].length;
  }
  if (steps.length === 0) throw new Error(`names no member ("$" alone is the whole body)`);
  return steps;
}

function isObject(value: unknown): value is Record<string, unknown> {
  return typeof value === "object" && value !== null && !Array.isArray(value);
}

/** The container that holds the last step, created on the way when `create`. */
function parentOf(root: unknown, steps: Step[], create: boolean): unknown {
  let node = root;
  for (const [i, step] of steps.slice(0, -1).entries()) {
    const container = node as Record<Step, unknown>;
    if (!fits(node, step)) return undefined;
    if (!Object.hasOwn(container, step) && create) {
      container[step] = typeof steps[i + 1] === "number" ? [] : {};
    }
    node = Object.hasOwn(container, step) ? container[step] : undefined;
  }
  return node;
}

/** Whether `step` can address a member of `node`. */
function fits(node: unknown, step: Step): boolean {
  return typeof step === "number" ? Array.isArray(node) && step <= node.length : isObject(node);
}

function setPath(root: unknown, steps: Step[], value: unknown): void {
  const parent = parentOf(root, steps, true);
  const last = steps.at(-1)!;
  if (fits(parent, last)) (parent as Record<Step, unknown>)[last] = structuredClone(value);
}

function removePath(root: unknown, steps: Step[]): void {
  const parent = parentOf(root, steps, false);
  const last = steps.at(-1)!;
  if (Array.isArray(parent) && typeof last === "number") parent.splice(last, 1);
  else if (isObject(parent) && typeof last === "string") delete parent[last];
}

/** Every problem in one side's rules, prefixed with where it is. */
function sideProblems(side: unknown, where: string): string[] {
  if (side === undefined) return [];
  if (!isObject(side)) return [`${where} must be an object`];
  const problems: string[] = [];
  for (const key of Object.keys(side)) {
    if (key !== "headers" && key !== "json") {
      problems.push(`${where}.${key} is not a setting (use headers or json)`);
    }
  }
  const check = (
    part: "headers" | "json",
    problemOf: (key: string, value: unknown, at: string) => string | undefined,
  ) => {
    const rules = side[part];
    if (rules === undefined) return;
    if (!isObject(rules)) return problems.push(`${where}.${part} must be an object`);
    for (const key of Object.keys(rules)) {
      if (key !== "set" && key !== "remove") {
        problems.push(`${where}.${part}.${key} is not a setting (use set or remove)`);
      }
    }
    const { set, remove } = rules;
    if (remove !== undefined && !Array.isArray(remove)) {
      problems.push(`${where}.${part}.remove must be an array`);
    }
    for (const [i, key] of (Array.isArray(remove) ? remove : []).entries()) {
      const at = `${where}.${part}.remove[${i}]`;
      const problem = typeof key === "string"
        ? problemOf(key, undefined, at)
        : `${at} must be a string`;
      if (problem) problems.push(problem);
    }
    if (set !== undefined && !isObject(set)) {
      problems.push(`${where}.${part}.set must be an object`);
    }
    for (const [key, value] of Object.entries(isObject(set) ? set : {})) {
      const problem = problemOf(key, value, `${where}.${part}.set[${JSON.stringify(key)}]`);
      if (problem) problems.push(problem);
    }
  };
  check("headers", (name, value, at) => {
    if (!HEADER_TOKEN.test(name)) return `${at}: ${JSON.stringify(name)} is not a header name`;
    if (value === undefined) return undefined;
    if (typeof value !== "string" || /[\r\n\0]/.test(value)) {
      return `${at} must be a string without line breaks`;
    }
    if (UNSETTABLE.has(name.toLowerCase())) return `${at}: the gateway sets this header itself`;
  });
  check("json", (path, _value, at) => {
    try {
      parsePath(path);
    } catch (error) {
      return `${at}: the path ${JSON.stringify(path)} ${(error as Error).message}`;
    }
  });
  return problems;
}

/** The settings' problems, all of them, or nothing when they are fine. */
function validate(settings: unknown): string | void {
  if (!isObject(settings)) return "the settings must be an object";
  const problems: string[] = [];
  const rules = (value: Record<string, unknown>, where: string) => {
    for (const key of Object.keys(value)) {
      if (key === "request" || key === "response") {
        problems.push(...sideProblems(value[key], `${where}${key}`));
      } else if (key !== "routes" || where !== "") {
        problems.push(`${where}${key} is not a setting (use request, response or routes)`);
      }
    }
  };
  rules(settings, "");
  const { routes } = settings;
  if (routes !== undefined && !isObject(routes)) problems.push("routes must be an object");
  for (const [name, value] of Object.entries(isObject(routes) ? routes : {})) {
    if (isObject(value)) rules(value, `routes.${name}.`);
    else problems.push(`routes.${name} must be an object`);
  }
  if (problems.length > 0) return problems.join("; ");
}

function compileSide(side: SideRules | undefined): CompiledSide {
  return {
    removeHeaders: (side?.headers?.remove ?? []).map((name) => name.toLowerCase()),
    setHeaders: Object.entries(side?.headers?.set ?? {}).map((
      [name, value],
    ) => [name.toLowerCase(), value]),
    removePaths: (side?.json?.remove ?? []).map(parsePath),
    setPaths: Object.entries(side?.json?.set ?? {}).map((
      [path, value],
    ) => [parsePath(path), value]),
  };
}

let topLevel: { request: CompiledSide; response: CompiledSide };
let perRoute: Map<string, { request: CompiledSide; response: CompiledSide }>;

/** The rule lists for one route and side, top-level first. */
function sidesFor(route: string, side: "request" | "response"): CompiledSide[] {
  const own = perRoute.get(route);
  return own ? [topLevel[side], own[side]] : [topLevel[side]];
}

/** Whether a body with these headers is JSON this plugin may rewrite. */
function rewritable(headers: Record<string, string>): boolean {
  const encoding = headers["content-encoding"];
  return JSON_TYPE.test(headers["content-type"] ?? "") &&
    (encoding === undefined || encoding === "identity");
}

/**
 * The changes for one side: the headers when rules touch them or the body,
 * the body only when it is JSON (and `read` is given) and rules rewrote it.
 */
async function transform(
  sides: CompiledSide[],
  headers: Record<string, string>,
  read?: () => Promise<string>,
): Promise<{ headers?: Record<string, string>; body?: string }> {
  const hasHeaderRules = sides.some((side) =>
    side.removeHeaders.length + side.setHeaders.length > 0
  );
  const changed = { ...headers };
  for (const side of sides) {
    for (const name of side.removeHeaders) delete changed[name];
    for (const [name, value] of side.setHeaders) changed[name] = value;
  }
  const unchanged = hasHeaderRules ? { headers: changed } : {};
  const hasRules = sides.some((side) => side.removePaths.length + side.setPaths.length > 0);
  if (!read || !hasRules || !rewritable(headers)) return unchanged;
  let document: unknown;
  try {
    document = JSON.parse(await read());
  } catch {
    return unchanged;
  }
  for (const side of sides) {
    for (const steps of side.removePaths) removePath(document, steps);
    for (const [steps, value] of side.setPaths) setPath(document, steps, value);
  }
  delete changed["content-length"];
  return { headers: changed, body: JSON.stringify(document) };
}

export default {
  name: "transform",
  version: "1.0.0",
  priority: 500,
  config: validate,
  init(ctx) {
    topLevel = {
      request: compileSide(ctx.config.request),
      response: compileSide(ctx.config.response),
    };
    perRoute = new Map(
      Object.entries(ctx.config.routes ?? {}).map(([name, rules]) => [name, {
        request: compileSide(rules.request),
        response: compileSide(rules.response),
      }]),
    );
  },
  onRequest(req) {
    return transform(sidesFor(req.route.name, "request"), req.headers, () => req.text());
  },
  onResponse(res) {
    const hasBody = res.request.method !== "HEAD" && ![204, 304].includes(res.status);
    const sides = sidesFor(res.request.route.name, "response");
    return transform(sides, res.headers, hasBody ? () => res.text() : undefined);
  },
} satisfies Plugin<Settings>;
