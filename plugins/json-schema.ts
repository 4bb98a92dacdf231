/**
 * json-schema: checks JSON request bodies against JSON Schemas before they go
 * on, with Ajv (draft-07 by default; `format`s from ajv-formats).
 *
 * Each rule names the requests it applies to — a `route` name, a `path`
 * pattern (URLPattern syntax: `/users/:id`, `/files/*`), or both — and the
 * `methods` (default `POST`, `PUT`, `PATCH`); the first rule that matches
 * applies. Its `schema` is a schema object or the name of one in `schemas`
 * (schemas there can `$ref` each other by that name). A matching request
 * whose body is not JSON answers 415; a body that does not parse or does not
 * match answers 400 with the errors, each a JSON Pointer into the body and a
 * message:
 *
 * ```json
 * { "error": { "status": 400, "code": "invalid_body", "requestId": "...",
 *   "message": "the request body does not match the schema",
 *   "errors": [{ "pointer": "/items/0/qty", "message": "must be >= 1" }] } }
 * ```
 *
 * Schemas are compiled once when the plugin loads; an invalid schema, an
 * unknown keyword or a bad path pattern refuses the settings with its place.
 * At most `maxErrors` (default 20) errors are listed.
 *
 * Metric: `json_schema_rejections_total{route,code}`.
 *
 * @example
 * ```json
 * {
 *   "plugins": {
 *     "settings": {
 *       "json-schema": {
 *         "schemas": {
 *           "item": { "type": "object", "required": ["sku", "qty"],
 *                     "properties": { "sku": { "type": "string" },
 *                                     "qty": { "type": "integer", "minimum": 1 } } }
 *         },
 *         "rules": [
 *           { "route": "orders", "methods": ["POST"],
 *             "schema": { "type": "object", "required": ["items"],
 *                         "properties": { "items": { "type": "array", "items": { "$ref": "item" } } } } },
 *           { "path": "/users/:id", "methods": ["PUT", "PATCH"],
 *             "schema": { "type": "object", "properties": { "email": { "type": "string", "format": "email" } } } }
 *         ]
 *       }
 *     }
 *   }
 * }
 * ```
 *
 * @module
 */

// A plugin is loaded on its own, outside this repository's import map: it names its packages.
// deno-lint-ignore no-import-prefix
import { Ajv, type ErrorObject, type ValidateFunction } from "npm:ajv@^8.20.0";
// deno-lint-ignore no-import-prefix
import addFormats from "npm:ajv-formats@^3.0.1";
import type { Plugin, PluginContext } from "../sdk/plugin.ts";

/** One compiled rule. */
interface Rule {
  route?: string;
  path?: URLPattern;
  methods: Set<string>;
  validate: ValidateFunction;
}

const JSON_TYPE = /^application\/(?:[\w.-]+\+)?json\s*(?:;|$)/i;
const SETTINGS = ["schemas", "rules", "maxErrors"];
const RULE_KEYS = ["route", "path", "methods", "schema"];

let rules: Rule[] = [];
let maxErrors = 20;
let rejections: ReturnType<PluginContext["metrics"]["counter"]>;

function isObject(value: unknown): value is Record<string, unknown> {
  return typeof value === "object" && value !== null && !Array.isArray(value);
}

function problemText(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}

/** Checks the settings and compiles every schema; throws with every problem and its place. */
function compile(settings: unknown): { rules: Rule[]; maxErrors: number } {
  if (!isObject(settings)) throw new Error("the settings must be an object with rules");
  const problems = Object.keys(settings).filter((key) => !SETTINGS.includes(key)).map((key) =>
    `${key} is not a setting (use ${SETTINGS.join(", ")})`
  );
  const ajv = new Ajv({ allErrors: true, strictTypes: false, strictTuples: false });
  // ajv-formats is CommonJS: its plugin function is the module's `default` export.
  addFormats.default(ajv);
  const { schemas = {}, rules: given, maxErrors = 20 } = settings;
  if (!Number.isInteger(maxErrors) || (maxErrors as number) < 1) {
    problems.push("maxErrors must be a positive integer");
  }
  if (!isObject(schemas)) problems.push("schemas must be an object of name to schema");
  const named = Object.entries(isObject(schemas) ? schemas : {});
  for (const [name, schema] of named) {
    try {
      ajv.addSchema(schema as object, name);
    } catch (error) {
      problems.push(`schemas.${name}: ${problemText(error)}`);
    }
  }
  for (const [name] of named) {
    try {
      ajv.getSchema(name);
    } catch (error) {
      problems.push(`schemas.${name}: ${problemText(error)}`);
    }
  }
  if (!Array.isArray(given) || given.length === 0) {
    problems.push("rules must be a non-empty array of { route and/or path, methods, schema }");
  }
  const compiled: Rule[] = [];
  for (const [i, rule] of (Array.isArray(given) ? given : []).entries()) {
    const at = `rules[${i}]`;
    if (!isObject(rule)) {
      problems.push(`${at} must be an object`);
      continue;
    }
    for (const key of Object.keys(rule).filter((key) => !RULE_KEYS.includes(key))) {
      problems.push(`${at}.${key} is not a setting (use ${RULE_KEYS.join(", ")})`);
    }
    const { route, path, methods = ["POST", "PUT", "PATCH"], schema } = rule;
    if (route === undefined && path === undefined) {
      problems.push(`${at} needs a route name, a path pattern or both`);
    }
    if (route !== undefined && typeof route !== "string") {
      problems.push(`${at}.route must be a route name`);
    }
    let pattern: URLPattern | undefined;
    if (path !== undefined) {
      try {
        if (typeof path !== "string" || !path.startsWith("/")) throw new Error("must start with /");
        pattern = new URLPattern({ pathname: path });
      } catch (error) {
        problems.push(`${at}.path ${JSON.stringify(path)}: ${problemText(error)}`);
      }
    }
    if (!Array.isArray(methods) || !methods.every((m) => /^[A-Za-z]+$/.test(String(m)))) {
      problems.push(`${at}.methods must be an array of HTTP methods`);
    }
    let validate: ValidateFunction | undefined;
    try {
      if (typeof schema === "string") {
        validate = ajv.getSchema(schema);
        if (!validate) throw new Error(`no schema named "${schema}" in schemas`);
      } else if (isObject(schema) || typeof schema === "boolean") {
        validate = ajv.compile(schema);
      } else {
        throw new Error("must be a schema object or the name of one in schemas");
      }
    } catch (error) {
      problems.push(`${at}.schema: ${problemText(error)}`);
    }
    if (validate) {
      compiled.push({
        ...(typeof route === "string" ? { route } : {}),
        ...(pattern ? { path: pattern } : {}),
        methods: new Set(
          (Array.isArray(methods) ? methods : []).map((m) => String(m).toUpperCase()),
        ),
        validate,
      });
    }
  }
  if (problems.length > 0) throw new Error(problems.join("; "));
  return { rules: compiled, maxErrors: maxErrors as number };
}

/** An Ajv error as a pointer to the offending value and a message. */
function describe(error: ErrorObject): { pointer: string; message: string } {
  const escape = (name: string) => name.replaceAll("~", "~0").replaceAll("/", "~1");
  if (error.keyword === "required") {
    return {
      pointer: `${error.instancePath}/${escape(error.params.missingProperty)}`,
      message: "is required",
    };
  }
  if (error.keyword === "additionalProperties") {
    return {
      pointer: `${error.instancePath}/${escape(error.params.additionalProperty)}`,
      message: "is not allowed",
    };
  }
  return { pointer: error.instancePath, message: error.message ?? error.keyword };
}

export default {
  name: "json-schema",
  version: "1.0.0",
  priority: 800,
  config: (settings) => void compile(settings),
  init(ctx) {
    ({ rules, maxErrors } = compile(ctx.config));
    rejections = ctx.metrics.counter("json_schema_rejections_total", "bodies refused, by reason");
  },
  async onRequest(req) {
    const rule = rules.find((rule) =>
      rule.methods.has(req.method) &&
      (rule.route === undefined || rule.route === req.route.name) &&
      (rule.path === undefined || rule.path.test({ pathname: req.path }))
    );
    if (!rule) return;
    const refuse = (
      status: 400 | 415,
      code: string,
      message: string,
      errors?: { pointer: string; message: string }[],
    ) => {
      rejections.inc(1, { route: req.route.name, code });
      return {
        status,
        headers: { "content-type": "application/json", "x-request-id": req.requestId },
        body: { error: { status, code, message, requestId: req.requestId, errors } },
      };
    };
    if (!JSON_TYPE.test(req.headers["content-type"] ?? "")) {
      return refuse(
        415,
        "unsupported_media_type",
        "the body must be JSON (content-type application/json)",
      );
    }
    const text = await req.text();
    let body: unknown;
    try {
      body = JSON.parse(text);
    } catch (error) {
      const message = text.trim() === "" ? "the body is empty" : problemText(error);
      return refuse(400, "invalid_json", "the request body is not valid JSON", [
        { pointer: "", message },
      ]);
    }
    if (rule.validate(body)) return;
    const errors = (rule.validate.errors ?? []).slice(0, maxErrors).map(describe);
    return refuse(400, "invalid_body", "the request body does not match the schema", errors);
  },
} satisfies Plugin;
