/**
 * Token-bucket rate limits for a route: one bucket per client address
 * (`perClient`) and one for the whole route (`total`). A rejected request
 * gets 429 with `Retry-After`.
 *
 * @module
 */

import type { RateLimitConfig } from "./config.ts";
import { errorResponse, GatewayError } from "../errors.ts";
import type { Stage } from "./stage.ts";

/** One bucket's settings: `rate` tokens per `per` milliseconds, holding at most `burst`. */
export type TokenBucketConfig = NonNullable<RateLimitConfig["total"]>;

/** Which limit rejected a request. */
export type RateLimitScope = "client" | "route";

/** Options of {@link createRateLimitStage}, for tests and tuning. */
export interface RateLimitOptions {
  /** Monotonic clock in milliseconds; `performance.now` by default. */
  now?: () => number;
  /** Most client buckets kept at once (default 10 000); see {@link ClientBuckets}. */
  maxClients?: number;
  /** The buckets to spend, kept by a {@link RateLimitPool}; new ones when absent. */
  buckets?: RouteBuckets;
}

const DEFAULT_MAX_CLIENTS = 10_000;
/** How often client buckets that have refilled completely are dropped. */
const SWEEP_INTERVAL_MS = 10_000;

/**
 * A token bucket that refills lazily: tokens are added for the time elapsed
 * whenever it is looked at, so an idle bucket costs nothing. Times are
 * milliseconds from any monotonic clock, passed in by the caller.
 */
export class TokenBucket {
  readonly #burst: number;
  readonly #tokensPerMs: number;
  #tokens: number;
  #updatedAt: number;

  /**
   * Creates a full bucket. `burst` defaults to `rate` (at least 1).
   *
   * @example
   * ```ts
   * import { TokenBucket } from "./rate_limit.ts";
   * const bucket = new TokenBucket({ rate: 2, per: 1000 }, 0);
   * bucket.take(0); // true
   * bucket.take(0); // true
   * bucket.take(0); // false
   * bucket.msUntilToken(0); // 500
   * ```
   */
  constructor(config: TokenBucketConfig, now: number) {
    this.#burst = config.burst ?? Math.max(1, config.rate);
    this.#tokensPerMs = config.rate / config.per;
    this.#tokens = this.#burst;
    this.#updatedAt = now;
  }

  /**
   * Takes one token; false when there is none.
   *
   * @example
   * ```ts
   * import { TokenBucket } from "./rate_limit.ts";
   * const bucket = new TokenBucket({ rate: 1, per: 1000 }, 0);
   * bucket.take(0); // true
   * bucket.take(999); // false
   * bucket.take(1000); // true
   * ```
   */
  take(now: number): boolean {
    this.#refill(now);
    if (this.#tokens < 1) return false;
    this.#tokens -= 1;
    return true;
  }

  /**
   * Milliseconds until a token is available; 0 when one is.
   *
   * @example
   * ```ts
   * import { TokenBucket } from "./rate_limit.ts";
   * const bucket = new TokenBucket({ rate: 10, per: 60_000, burst: 1 }, 0);
   * bucket.take(0);
   * bucket.msUntilToken(0); // 6000
   * ```
   */
  msUntilToken(now: number): number {
    this.#refill(now);
    return this.#tokens >= 1 ? 0 : (1 - this.#tokens) / this.#tokensPerMs;
  }

  /**
   * Whether the bucket has refilled completely, and so behaves like a new one.
   *
   * @example
   * ```ts
   * import { TokenBucket } from "./rate_limit.ts";
   * const bucket = new TokenBucket({ rate: 1, per: 1000 }, 0);
   * bucket.take(0);
   * bucket.isFull(500); // false
   * bucket.isFull(1000); // true
   * ```
   */
  isFull(now: number): boolean {
    this.#refill(now);
    return this.#tokens >= this.#burst;
  }

  #refill(now: number): void {
    const elapsed = now - this.#updatedAt;
    if (elapsed <= 0) return;
    this.#tokens = Math.min(this.#burst, this.#tokens + elapsed * this.#tokensPerMs);
    this.#updatedAt = now;
  }
}

/**
 * The buckets of a route's clients, by address, bounded in memory. Buckets
 * that have refilled completely carry no state and are dropped every 10 s;
 * at `maxClients`, the least recently used bucket is dropped, so that client
 * starts again with a full bucket. That gives a client rotating addresses
 * nothing it did not already have (each new address starts full anyway);
 * the route's `total` limit is what holds against it.
 */
export class ClientBuckets {
  readonly #config: TokenBucketConfig;
  readonly #maxClients: number;
  readonly #buckets = new Map<string, TokenBucket>();
  #nextSweepAt = -Infinity;

  /**
   * Creates an empty set of client buckets.
   *
   * @example
   * ```ts
   * import { ClientBuckets } from "./rate_limit.ts";
   * const clients = new ClientBuckets({ rate: 1, per: 1000 }, 2);
   * clients.get("10.0.0.1", 0).take(0); // true
   * clients.get("10.0.0.1", 0).take(0); // false
   * ```
   */
  constructor(config: TokenBucketConfig, maxClients: number) {
    this.#config = config;
    this.#maxClients = maxClients;
  }

  /** How many buckets are held. */
  get size(): number {
    return this.#buckets.size;
  }

  /**
   * The bucket of client `ip`, created full on first use.
   *
   * @example
   * ```ts
   * import { ClientBuckets } from "./rate_limit.ts";
   * const clients = new ClientBuckets({ rate: 5, per: 1000 }, 10_000);
   * const allowed = clients.get("192.0.2.7", performance.now()).take(performance.now());
   * ```
   */
  get(ip: string, now: number): TokenBucket {
    if (now >= this.#nextSweepAt) {
      for (const [key, bucket] of this.#buckets) {
        if (bucket.isFull(now)) this.#buckets.delete(key);
      }
      this.#nextSweepAt = now + SWEEP_INTERVAL_MS;
    }
    let bucket = this.#buckets.get(ip);
    if (bucket) {
      // Re-inserted below, so the first entry is always the least recently used.
      this.#buckets.delete(ip);
    } else {
      if (this.#buckets.size >= this.#maxClients) {
        this.#buckets.delete(this.#buckets.keys().next().value!);
      }
      bucket = new TokenBucket(this.#config, now);
    }
    this.#buckets.set(ip, bucket);
    return bucket;
  }
}

/** The buckets behind one route's limits. */
export interface RouteBuckets {
  /** One bucket per client address (`perClient`). */
  clients?: ClientBuckets;
  /** One bucket for the whole route (`total`). */
  route?: TokenBucket;
}

/**
 * New, full buckets for the limits `config` sets, at time `now`.
 *
 * @example
 * ```ts
 * import { createRouteBuckets } from "./rate_limit.ts";
 * const { route } = createRouteBuckets({ total: { rate: 1, per: 1000 } }, performance.now());
 * route?.take(performance.now()); // true
 * ```
 */
export function createRouteBuckets(
  config: RateLimitConfig,
  now: number,
  maxClients: number = DEFAULT_MAX_CLIENTS,
): RouteBuckets {
  return {
    clients: config.perClient && new ClientBuckets(config.perClient, maxClients),
    route: config.total && new TokenBucket(config.total, now),
  };
}

/** The buckets of one route table being built; see {@link RateLimitPool.prepare}. */
export interface PreparedRateLimits {
  /**
   * The buckets of route `route` limited by `config`: the serving table's
   * when that route had the same limits, new ones otherwise.
   */
  buckets(route: string, config: RateLimitConfig): RouteBuckets;
  /** This table now serves: its buckets are the ones the next build carries on from. */
  commit(): void;
}

/**
 * Rate-limit buckets kept across reloads, by route name and limit settings:
 * a route whose limits did not change keeps its spent buckets, a changed
 * limit starts full, and a route that went away takes its buckets with it.
 * Each build of the route table {@link prepare}s; the one that is committed
 * serves, a build that is not committed changes nothing.
 *
 * Buckets live in this isolate. A bucket is two numbers (tokens and when
 * they were counted), so a data path spread over several isolates can move
 * the route buckets into shared slots the way `TargetStatePool` keeps
 * upstream targets, with epoch-millisecond times instead of
 * `performance.now`, which each isolate counts from its own start.
 *
 * @example
 * ```ts
 * import { RateLimitPool } from "./rate_limit.ts";
 * const pool = new RateLimitPool();
 * const limit = { total: { rate: 1, per: 60_000 } };
 * const first = pool.prepare();
 * first.buckets("api", limit).route?.take(performance.now()); // true
 * first.commit();
 * const reload = pool.prepare();
 * reload.buckets("api", limit).route?.take(performance.now()); // false: still spent
 * reload.commit();
 * ```
 */
export class RateLimitPool {
  #serving = new Map<string, RouteBuckets>();

  /** A pool whose buckets read `options.now` and hold `options.maxClients` clients. */
  constructor(private readonly options: Omit<RateLimitOptions, "buckets"> = {}) {}

  /** Starts the buckets of a new route table beside the serving one. */
  prepare(): PreparedRateLimits {
    const serving = this.#serving;
    const prepared = new Map<string, RouteBuckets>();
    const now = this.options.now ?? (() => performance.now());
    return {
      buckets: (route, config) => {
        const key = `${route}\n${JSON.stringify(config)}`;
        const buckets = prepared.get(key) ?? serving.get(key) ??
          createRouteBuckets(config, now(), this.options.maxClients);
        prepared.set(key, buckets);
        return buckets;
      },
      commit: () => {
        this.#serving = prepared;
      },
    };
  }
}

/**
 * Creates the rate-limit stage of one route; null when `config` sets no limit,
 * so the caller can leave it out of the chain. The per-client limit is checked
 * first, so a client over its own limit does not use up the route's tokens.
 * `onReject` is called for every rejection, e.g. to count it in metrics.
 *
 * @example
 * ```ts
 * import { createRateLimitStage } from "./rate_limit.ts";
 * const stage = createRateLimitStage(
 *   { perClient: { rate: 10, per: 1000 }, total: { rate: 500, per: 1000 } },
 *   (scope) => console.log(`rate limited by ${scope}`),
 * );
 * ```
 */
export function createRateLimitStage(
  config: RateLimitConfig,
  onReject: (scope: RateLimitScope) => void,
  options: RateLimitOptions = {},
): Stage | null {
  if (!config.perClient && !config.total) return null;
  const now = options.now ?? (() => performance.now());
  const { clients, route: routeBucket } = options.buckets ??
    createRouteBuckets(config, now(), options.maxClients);

  return (c, next) => {
    const time = now();
    if (clients) {
      const bucket = clients.get(c.env.clientIp, time);
      if (!bucket.take(time)) {
        onReject("client");
        return tooManyRequests(bucket, time, "this client", c.env.requestId);
      }
    }
    if (routeBucket && !routeBucket.take(time)) {
      onReject("route");
      return tooManyRequests(routeBucket, time, `route "${c.env.route.name}"`, c.env.requestId);
    }
    return next();
  };
}

function tooManyRequests(
  bucket: TokenBucket,
  time: number,
  subject: string,
  requestId: string,
): Response {
  const retryAfter = Math.max(1, Math.ceil(bucket.msUntilToken(time) / 1000));
  return errorResponse(
    new GatewayError(
      429,
      "rate_limited",
      `rate limit exceeded for ${subject}; retry in ${retryAfter} s`,
      { headers: { "retry-after": String(retryAfter) } },
    ),
    requestId,
  );
}
