/**
 * A named group of servers that routes proxy to: balancing, health and
 * circuit breaking for each of its targets, and the numbers the admin API
 * and the metrics show.
 *
 * @module
 */

import type { UpstreamConfig } from "../config/schema.ts";
import { type BalanceAlgorithm, type Balancer, createBalancer } from "./balancer.ts";
import { type BreakerState, CircuitBreaker } from "./breaker.ts";
import type { UpstreamClient } from "./client.ts";
import { HealthChecker, TargetHealth } from "./health.ts";

/** One target's state, as plain data. */
export interface TargetSnapshot {
  url: string;
  weight: number;
  /** Passes its health checks and is not ejected by passive health. */
  healthy: boolean;
  /** Epoch ms when a passive ejection ends. */
  ejectedUntil?: number;
  breaker: BreakerState;
  inFlight: number;
  requests: number;
  failures: number;
}

/** An upstream's state, as plain data. */
export interface UpstreamSnapshot {
  name: string;
  balance: BalanceAlgorithm;
  targets: TargetSnapshot[];
}

/**
 * One server of an upstream, as {@link Upstream.pick} hands it out. The
 * caller reports the outcome ({@link reportSuccess} when the response
 * headers arrive, {@link reportFailure} when the request fails, nothing
 * when the client went away) and calls {@link release} once the exchange is
 * over.
 */
export class UpstreamTarget {
  /** The origin: `http://127.0.0.1:9000`. */
  readonly url: string;
  /** The value of the Host header for this target: `127.0.0.1:9000`. */
  readonly host: string;
  readonly weight: number;
  readonly health: TargetHealth;
  readonly #breaker: CircuitBreaker | undefined;
  #inFlight = 0;
  #requests = 0;
  #failures = 0;

  constructor(
    upstream: string,
    entry: UpstreamConfig["targets"][number],
    config: UpstreamConfig,
    now: () => number,
  ) {
    const url = new URL(entry.url);
    this.url = url.origin;
    this.host = url.host;
    this.weight = entry.weight;
    const labels = { upstream, target: this.url };
    this.health = new TargetHealth(config.passive, labels, now);
    this.#breaker = config.breaker && new CircuitBreaker(config.breaker, labels, now);
  }

  /** Requests picked and not yet released. */
  get inFlight(): number {
    return this.#inFlight;
  }

  /** Whether it may take a request now: healthy, not ejected, breaker letting it through. */
  isAvailable(): boolean {
    return this.health.isAvailable() && (this.#breaker?.allowsRequest() ?? true);
  }

  /** Counts a request as sent to this target; {@link Upstream.pick} does it. */
  acquire(): void {
    this.#inFlight++;
    this.#requests++;
    this.#breaker?.begin();
  }

  /** The response headers arrived. */
  reportSuccess(): void {
    this.health.requestSucceeded();
    this.#breaker?.succeed();
  }

  /** The request failed (connect, timeout, protocol); `reason` goes to the log. */
  reportFailure(reason: string): void {
    this.#failures++;
    this.health.requestFailed(reason);
    this.#breaker?.fail();
  }

  /** The exchange is over (response streamed, failed, or abandoned). */
  release(): void {
    this.#inFlight--;
    this.#breaker?.end();
  }

  /** This target's state as plain data. */
  snapshot(): TargetSnapshot {
    return {
      url: this.url,
      weight: this.weight,
      healthy: this.health.isAvailable(),
      ejectedUntil: this.health.ejectedUntil,
      breaker: this.#breaker?.state ?? "closed",
      inFlight: this.#inFlight,
      requests: this.#requests,
      failures: this.#failures,
    };
  }
}

/**
 * A named group of targets with one balancing algorithm, optional active
 * health checks, passive health and optional circuit breakers.
 *
 * Passive health and breakers count transport failures only (connect
 * errors, timeouts, malformed responses): a 5xx answer is the
 * application's, and one broken endpoint must not eject every target.
 *
 * @example
 * ```ts
 * import { Upstream } from "./upstream.ts";
 * import { createHttp1Client } from "./http1_client.ts";
 * import { UpstreamConfig } from "../config/schema.ts";
 * const client = createHttp1Client();
 * const upstream = new Upstream(
 *   "api",
 *   UpstreamConfig.parse({ targets: ["http://127.0.0.1:9000"] }),
 *   client,
 * );
 * upstream.start();
 * const target = upstream.pick();
 * target?.reportSuccess();
 * target?.release();
 * await upstream.stop();
 * client.close();
 * ```
 */
export class Upstream {
  readonly targets: readonly UpstreamTarget[];
  readonly #balancer: Balancer<UpstreamTarget>;
  readonly #checker: HealthChecker | undefined;

  constructor(
    readonly name: string,
    readonly config: UpstreamConfig,
    client: UpstreamClient,
    now: () => number = Date.now,
  ) {
    this.targets = config.targets.map((entry) => new UpstreamTarget(name, entry, config, now));
    this.#balancer = createBalancer(config.balance, this.targets);
    this.#checker = config.healthCheck &&
      new HealthChecker(this.targets, config.healthCheck, client);
  }

  /** Starts the active health checks, if configured; the first round runs now. */
  start(): void {
    this.#checker?.start();
  }

  /** Stops the health checks and waits for a round in flight. Idempotent. */
  async stop(): Promise<void> {
    await this.#checker?.stop();
  }

  /**
   * The target for the next request, already counted in flight, or
   * undefined when no target outside `exclude` is available.
   */
  pick(exclude?: ReadonlySet<UpstreamTarget>): UpstreamTarget | undefined {
    const target = this.#balancer.pick(exclude);
    target?.acquire();
    return target;
  }

  /** The upstream's state as plain data, for the admin API and metrics. */
  snapshot(): UpstreamSnapshot {
    return {
      name: this.name,
      balance: this.config.balance,
      targets: this.targets.map((target) => target.snapshot()),
    };
  }
}
