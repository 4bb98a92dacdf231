/**
 * cache: keeps upstream responses in memory and answers repeats from there.
 *
 * - Only `GET` and `HEAD` are cached; the key is route + method + full URL +
 *   the values of the `vary` request headers. Answers carry `x-cache: HIT`
 *   (with `age`) or `x-cache: MISS`.
 * - A response is stored when its status is in `statuses`, and it has no
 *   `Cache-Control: no-store`, `private` or `no-cache`, no `Set-Cookie`, and
 *   no `Vary` naming a header outside `vary` (or `Vary: *`). Its lifetime is
 *   `ttl`, shortened by the upstream's `s-maxage` or `max-age` when smaller.
 * - Requests with an `Authorization` header are neither answered from nor
 *   stored in the cache, unless `authorization` is in `vary`.
 * - Bounded: at most `maxEntries` entries and `maxBytes` bytes (least recently
 *   used go first); a body over `maxEntryBytes` is not stored, nor one without
 *   `Content-Length` (a stream, such as server-sent events, is never buffered).
 * - Metrics: `cache_hits_total{route}` and `cache_misses_total{route}`.
 *
 * The cache is a Map inside the plugin's Worker, not `ctx.store`: a hit must
 * not cost a round trip to the host and a database read, `ctx.store` keeps
 * JSON (bodies would have to be base64) with a value size limit and no byte
 * bound or LRU, and it outlives restarts, when stale answers are the last
 * thing wanted. A reload of the plugin or the gateway starts empty.
 *
 * Run it last on the way in (priority -1000): the key is worked out again from
 * the request as it reaches the target, so a plugin after it that changes the
 * URL or a `vary` header would make lookups miss.
 *
 * Settings (`plugins.settings.cache`, all optional); durations are
 * milliseconds or `"250ms"`, `"30s"`, `"5m"`, `"1h"`; sizes bytes or
 * `"64KB"`, `"10MB"`, `"1GB"`:
 * - `ttl` (default `"60s"`), `vary` (default `[]`), `statuses` (default
 *   `[200, 203, 300, 301, 308, 404, 410]`).
 * - `routes.<route name>`: `ttl`, `vary` and `statuses` for one route.
 * - `maxEntries` (default 10000), `maxBytes` (default `"64MB"`),
 *   `maxEntryBytes` (default `"1MB"`).
 *
 * @example
 * ```json
 * {
 *   "plugins": {
 *     "settings": {
 *       "cache": {
 *         "ttl": "30s",
 *         "maxBytes": "32MB",
 *         "routes": { "catalog": { "ttl": "5m", "vary": ["accept-language"] } }
 *       }
 *     }
 *   },
 *   "routes": [{ "name": "catalog", "match": { "path": "/catalog/*" }, "plugins": ["cache"],
 *                "target": { "upstream": "api" } }]
 * }
 * ```
 *
 * @module
 */

import type { Plugin, PluginContext, PluginRequest } from "../sdk/plugin.ts";

/** What to cache on one route. */
interface Policy {
  ttl: number;
  vary: string[];
  statuses: Set<number>;
}

/** The settings, checked and with units parsed. */
interface Parsed {
  defaults: Policy;
  routes: Map<string, Policy>;
  maxEntries: number;
  maxBytes: number;
  maxEntryBytes: number;
}

interface Entry {
  status: number;
  headers: Record<string, string>;
  body: Uint8Array;
  storedAt: number;
  expires: number;
  size: number;
}

type Counter = ReturnType<PluginContext["metrics"]["counter"]>;
type RequestView = Omit<PluginRequest, "text" | "bytes" | "json">;

const DURATION_UNITS: Record<string, number> = { ms: 1, s: 1000, m: 60_000, h: 3_600_000 };
const SIZE_UNITS: Record<string, number> = { "": 1, b: 1, kb: 1024, mb: 1024 ** 2, gb: 1024 ** 3 };
const POLICY_KEYS = ["ttl", "vary", "statuses"];
const LIMIT_KEYS = ["maxEntries", "maxBytes", "maxEntryBytes", "routes"];
const DEFAULT_STATUSES = [200, 203, 300, 301, 308, 404, 410];
/** Headers that belong to one exchange, not to the stored answer. */
const NOT_STORED = new Set(["x-request-id", "x-cache", "age", "connection", "keep-alive"]);

/** Parses a duration or size as the gateway's config does; undefined when malformed. */
function amount(value: unknown, units: Record<string, number>, unitRequired: boolean) {
  if (typeof value === "number") return value >= 0 && Number.isFinite(value) ? value : undefined;
  if (typeof value !== "string") return undefined;
  const match = /^(\d+(?:\.\d+)?)\s*([a-z]*)$/i.exec(value.trim());
  const unit = match?.[2].toLowerCase();
  if (!match || !(unit! in units) || (unitRequired && unit === "")) return undefined;
  return Math.floor(Number(match[1]) * units[unit!]);
}

function isObject(value: unknown): value is Record<string, unknown> {
  return typeof value === "object" && value !== null && !Array.isArray(value);
}

/** Checks and parses the settings; throws with every problem, each with its setting's path. */
function parseSettings(settings: unknown): Parsed {
  const problems: string[] = [];
  const source = isObject(settings) ? settings : {};
  if (!isObject(settings)) problems.push("the settings must be an object");
  const unknown = (object: Record<string, unknown>, allowed: string[], where: string) => {
    for (const key of Object.keys(object)) {
      if (!allowed.includes(key)) {
        problems.push(`${where}${key} is not a setting (use ${allowed.join(", ")})`);
      }
    }
  };
  const duration = (value: unknown, where: string, fallback: number) => {
    if (value === undefined) return fallback;
    const ms = amount(value, DURATION_UNITS, true);
    if (ms === undefined) {
      problems.push(`${where}: invalid duration ${JSON.stringify(value)} (use "30s", "5m", ...)`);
    }
    return ms ?? fallback;
  };
  const size = (value: unknown, where: string, fallback: number) => {
    if (value === undefined) return fallback;
    const bytes = amount(value, SIZE_UNITS, false);
    if (bytes === undefined || bytes < 1) {
      problems.push(
        `${where}: invalid size ${JSON.stringify(value)} (use bytes or "64KB", "10MB")`,
      );
    }
    return bytes || fallback;
  };
  const policy = (value: Record<string, unknown>, where: string, base: Policy): Policy => {
    const { vary, statuses } = value;
    if (vary !== undefined && (!Array.isArray(vary) || vary.some((h) => typeof h !== "string"))) {
      problems.push(`${where}vary must be an array of header names`);
    }
    const validStatus = (s: unknown) =>
      Number.isInteger(s) && (s as number) >= 200 && (s as number) < 600;
    if (statuses !== undefined && (!Array.isArray(statuses) || !statuses.every(validStatus))) {
      problems.push(`${where}statuses must be an array of HTTP status codes (200 to 599)`);
    }
    return {
      ttl: duration(value.ttl, `${where}ttl`, base.ttl),
      vary: Array.isArray(vary) ? vary.map((h) => String(h).toLowerCase()) : base.vary,
      statuses: Array.isArray(statuses) ? new Set(statuses as number[]) : base.statuses,
    };
  };
  unknown(source, [...POLICY_KEYS, ...LIMIT_KEYS], "");
  const defaults = policy(source, "", {
    ttl: 60_000,
    vary: [],
    statuses: new Set(DEFAULT_STATUSES),
  });
  const routes = new Map<string, Policy>();
  if (source.routes !== undefined && !isObject(source.routes)) {
    problems.push("routes must be an object of route name to { ttl, vary, statuses }");
  }
  for (const [name, value] of Object.entries(isObject(source.routes) ? source.routes : {})) {
    if (!isObject(value)) {
      problems.push(`routes.${name} must be an object`);
      continue;
    }
    unknown(value, POLICY_KEYS, `routes.${name}.`);
    routes.set(name, policy(value, `routes.${name}.`, defaults));
  }
  const { maxEntries } = source;
  if (maxEntries !== undefined && (!Number.isInteger(maxEntries) || (maxEntries as number) < 1)) {
    problems.push("maxEntries must be a positive integer");
  }
  const parsed = {
    defaults,
    routes,
    maxEntries: Number.isInteger(maxEntries) ? maxEntries as number : 10_000,
    maxBytes: size(source.maxBytes, "maxBytes", 64 * 1024 ** 2),
    maxEntryBytes: size(source.maxEntryBytes, "maxEntryBytes", 1024 ** 2),
  };
  if (problems.length > 0) throw new Error(problems.join("; "));
  return parsed;
}

/** Entries in least-recently-used order, within the entry and byte bounds. */
class LruCache {
  readonly #entries = new Map<string, Entry>();
  #bytes = 0;

  constructor(readonly maxEntries: number, readonly maxBytes: number) {}

  get(key: string, now: number): Entry | undefined {
    const entry = this.#entries.get(key);
    if (!entry) return undefined;
    this.#delete(key, entry);
    if (entry.expires <= now) return undefined;
    this.#entries.set(key, entry);
    this.#bytes += entry.size;
    return entry;
  }

  set(key: string, entry: Entry): void {
    const old = this.#entries.get(key);
    if (old) this.#delete(key, old);
    this.#entries.set(key, entry);
    this.#bytes += entry.size;
    for (const [oldest, victim] of this.#entries) {
      if (this.#entries.size <= this.maxEntries && this.#bytes <= this.maxBytes) break;
      this.#delete(oldest, victim);
    }
  }

  #delete(key: string, entry: Entry): void {
    this.#entries.delete(key);
    this.#bytes -= entry.size;
  }
}

let settings: Parsed;
let cache: LruCache;
let hits: Counter;
let misses: Counter;

function policyFor(route: string): Policy {
  return settings.routes.get(route) ?? settings.defaults;
}

/** The cache key, or undefined when the request is not one the cache takes. */
function keyOf(req: RequestView, policy: Policy): string | undefined {
  if (req.method !== "GET" && req.method !== "HEAD") return undefined;
  if (req.headers.authorization !== undefined && !policy.vary.includes("authorization")) {
    return undefined;
  }
  const varying = policy.vary.map((name) => req.headers[name] ?? null);
  return JSON.stringify([req.route.name, req.method, req.url, ...varying]);
}

/** How long a response may be kept, in milliseconds (0: not at all). */
function lifetime(status: number, headers: Record<string, string>, policy: Policy): number {
  if (!policy.statuses.has(status) || headers["set-cookie"] !== undefined) return 0;
  const varies = (headers.vary ?? "").split(",").map((h) => h.trim().toLowerCase()).filter(Boolean);
  if (varies.some((name) => name === "*" || !policy.vary.includes(name))) return 0;
  const directives = new Map(
    (headers["cache-control"] ?? "").split(",").map((part) => {
      const [name, value] = part.split("=", 2);
      return [name.trim().toLowerCase(), value?.trim().replace(/^"|"$/g, "")];
    }),
  );
  if (["no-store", "private", "no-cache"].some((name) => directives.has(name))) return 0;
  const maxAge = Number(directives.get("s-maxage") ?? directives.get("max-age"));
  return Number.isFinite(maxAge) ? Math.min(policy.ttl, maxAge * 1000) : policy.ttl;
}

export default {
  name: "cache",
  version: "1.0.0",
  priority: -1000,
  config: (value) => void parseSettings(value),
  init(ctx) {
    settings = parseSettings(ctx.config);
    cache = new LruCache(settings.maxEntries, settings.maxBytes);
    hits = ctx.metrics.counter("cache_hits_total", "answers served from the cache");
    misses = ctx.metrics.counter("cache_misses_total", "cacheable requests not in the cache");
  },
  onRequest(req) {
    const key = keyOf(req, policyFor(req.route.name));
    if (key === undefined) return;
    const now = Date.now();
    const entry = cache.get(key, now);
    const route = req.route.name;
    if (!entry) {
      misses.inc(1, { route });
      return;
    }
    hits.inc(1, { route });
    return {
      status: entry.status,
      headers: {
        ...entry.headers,
        "x-cache": "HIT",
        age: String(Math.floor((now - entry.storedAt) / 1000)),
        "x-request-id": req.requestId,
      },
      body: req.method === "HEAD" || entry.body.length === 0 ? undefined : entry.body,
    };
  },
  async onResponse(res) {
    // A hit answered in onRequest never comes back here: a plugin's own answer skips its onResponse.
    const headers = { ...res.headers };
    const policy = policyFor(res.request.route.name);
    const key = keyOf(res.request, policy);
    if (key === undefined) return;
    headers["x-cache"] = "MISS";
    const ttl = lifetime(res.status, res.headers, policy);
    const head = res.request.method === "HEAD";
    const declared = head ? 0 : Number(res.headers["content-length"] ?? NaN);
    if (ttl <= 0 || !(declared <= settings.maxEntryBytes)) return { headers };
    const body = head ? new Uint8Array() : await res.bytes();
    if (body.length > settings.maxEntryBytes) return { headers };
    const stored = Object.fromEntries(
      Object.entries(res.headers).filter(([name]) => !NOT_STORED.has(name)),
    );
    const now = Date.now();
    cache.set(key, {
      status: res.status,
      headers: stored,
      body,
      storedAt: now,
      expires: now + ttl,
      size: body.length + JSON.stringify(stored).length,
    });
    return { headers };
  },
} satisfies Plugin;
