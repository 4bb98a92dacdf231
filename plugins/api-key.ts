/**
 * api-key: lets a request through only with one of the configured API keys.
 *
 * The key is read from a header (default `x-api-key`; with `authorization`, a
 * `Bearer ` prefix is taken off) and, when `query` is set, from that query
 * parameter. No key answers 401, a wrong one 403, both with the gateway's
 * JSON error body `{ "error": { "status", "code", "message", "requestId" } }`.
 * Keys are compared in constant time (SHA-256 digests, every key compared).
 * The key never goes upstream: the header and the query parameter are removed.
 * With `forwardName`, the matching key's name goes upstream in that header
 * (a value the client sent in it is always dropped, so it cannot be forged).
 *
 * Settings (`plugins.settings["api-key"]`):
 * - `keys` (required): key name to key. Write secrets as `"env:NAME"`: the
 *   gateway's config loader puts the variable's value there. Or write the
 *   key's SHA-256 digest, `"sha256:<64 hex digits>"` (what `gateway token`
 *   prints), so the config holds no key at all. Keys must be non-empty and
 *   distinct.
 * - `header` (default `"x-api-key"`): the header that carries the key.
 * - `query`: a query parameter that may carry the key instead (off when absent).
 * - `forwardName`: the header that tells the upstream whose key it was.
 *
 * Metric: `api_key_checks_total{route,result,key}` with result `accepted`
 * (key = the key's name), `missing` or `invalid`.
 *
 * Put it before plugins that should only see authenticated requests (its
 * priority, 900, runs it after request-id and before json-schema, transform
 * and cache, so a cached answer is never served to a client without a key).
 *
 * @example
 * ```json
 * {
 *   "plugins": {
 *     "settings": {
 *       "api-key": {
 *         "keys": { "alice": "env:ALICE_KEY", "ci": "env:CI_KEY" },
 *         "query": "api_key",
 *         "forwardName": "x-consumer"
 *       }
 *     }
 *   },
 *   "routes": [{ "match": { "path": "/api/*" }, "plugins": ["api-key"],
 *                "target": { "upstream": "api" } }]
 * }
 * ```
 *
 * @module
 */

// node:crypto, not the gateway's src/util: a plugin imports no gateway code at run time.
import { timingSafeEqual } from "node:crypto";
import type { Plugin, PluginContext, PluginRequest } from "../sdk/plugin.ts";

interface Settings {
  keys: Record<string, string>;
  header?: string;
  query?: string;
  forwardName?: string;
}

const HEADER_NAME = /^[A-Za-z0-9-]+$/;
/** A key written as its digest. */
const DIGEST = /^sha256:([0-9a-f]{64})$/;
const encoder = new TextEncoder();

/** The configured keys as digests, with their names. */
let known: { name: string; digest: Uint8Array }[] = [];
let checks: ReturnType<PluginContext["metrics"]["counter"]>;

async function digestOf(key: string): Promise<Uint8Array> {
  return new Uint8Array(await crypto.subtle.digest("SHA-256", encoder.encode(key)));
}

/** A configured key's digest: given as `sha256:<hex>`, or computed from the key. */
function configuredDigest(key: string): Promise<Uint8Array> | Uint8Array {
  const hex = DIGEST.exec(key)?.[1];
  if (hex === undefined) return digestOf(key);
  return Uint8Array.from(hex.match(/../g)!, (byte) => parseInt(byte, 16));
}

/** The name of the key whose digest equals `digest`, comparing every byte of every key. */
function match(digest: Uint8Array): string | undefined {
  let found: string | undefined;
  for (const { name, digest: expected } of known) {
    if (timingSafeEqual(expected, digest)) found = name;
  }
  return found;
}

function validate(settings: unknown): string | void {
  if (typeof settings !== "object" || settings === null || Array.isArray(settings)) {
    return "the settings must be an object with keys";
  }
  const { keys, header, query, forwardName, ...rest } = settings as Record<string, unknown>;
  const problems = Object.keys(rest).map((key) =>
    `${key} is not a setting (use keys, header, query, forwardName)`
  );
  if (typeof keys !== "object" || keys === null || Array.isArray(keys)) {
    problems.push(
      `keys must be an object of key name to key, such as { "alice": "env:ALICE_KEY" }`,
    );
  } else if (Object.keys(keys).length === 0) {
    problems.push("keys is empty: no request could pass");
  } else {
    const seen = new Map<string, string>();
    for (const [name, key] of Object.entries(keys)) {
      if (typeof key !== "string" || key === "") {
        problems.push(`keys.${name} must be a non-empty string (is its env: variable set?)`);
      } else if (key.startsWith("sha256:") && !DIGEST.test(key)) {
        problems.push(`keys.${name}: a digest is "sha256:" and 64 lowercase hex digits`);
      } else if (seen.has(key)) {
        problems.push(`keys.${name} is the same key as keys.${seen.get(key)}`);
      } else seen.set(key, name);
    }
  }
  for (const [setting, value] of Object.entries({ header, forwardName })) {
    if (value !== undefined && (typeof value !== "string" || !HEADER_NAME.test(value))) {
      problems.push(`${setting} must be a header name (letters, digits and '-')`);
    }
  }
  if (query !== undefined && (typeof query !== "string" || query === "")) {
    problems.push("query must be a non-empty query parameter name");
  }
  if (problems.length > 0) return problems.join("; ");
}

/** The URL's path and query without the parameter `name`, other parameters kept as written. */
function withoutParam(req: PluginRequest, name: string): string {
  const url = new URL(req.url);
  const kept = url.search.slice(1).split("&").filter((part) =>
    part !== "" && !new URLSearchParams(part).has(name)
  );
  return `${url.pathname}${kept.length > 0 ? `?${kept.join("&")}` : ""}`;
}

export default {
  name: "api-key",
  version: "1.0.0",
  priority: 900,
  config: validate,
  async init(ctx) {
    checks = ctx.metrics.counter("api_key_checks_total", "API key checks by result");
    known = await Promise.all(
      Object.entries(ctx.config.keys).map(async ([name, key]) => ({
        name,
        digest: await configuredDigest(key),
      })),
    );
  },
  async onRequest(req, ctx) {
    const header = (ctx.config.header ?? "x-api-key").toLowerCase();
    const { query, forwardName } = ctx.config;
    let given = req.headers[header];
    if (given !== undefined && header === "authorization") given = given.replace(/^Bearer /i, "");
    if (!given && query !== undefined) given = req.query[query];
    const route = req.route.name;
    const refuse = (status: 401 | 403, code: string, message: string) => ({
      status,
      headers: {
        "content-type": "application/json",
        "x-request-id": req.requestId,
        ...(status === 401 ? { "www-authenticate": `ApiKey header="${header}"` } : {}),
      },
      body: { error: { status, code, message, requestId: req.requestId } },
    });
    if (!given) {
      checks.inc(1, { route, result: "missing", key: "" });
      const where = query === undefined
        ? `the ${header} header`
        : `the ${header} header or the ${query} query parameter`;
      return refuse(401, "api_key_missing", `an API key is required in ${where}`);
    }
    const name = match(await digestOf(given));
    if (name === undefined) {
      checks.inc(1, { route, result: "invalid", key: "" });
      return refuse(403, "api_key_invalid", "the API key is not valid");
    }
    checks.inc(1, { route, result: "accepted", key: name });
    const headers = { ...req.headers };
    delete headers[header];
    if (forwardName !== undefined) headers[forwardName.toLowerCase()] = name;
    return {
      headers,
      ...(query !== undefined && Object.hasOwn(req.query, query)
        ? { url: withoutParam(req, query) }
        : {}),
    };
  },
} satisfies Plugin<Settings>;
