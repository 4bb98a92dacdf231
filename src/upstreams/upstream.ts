/**
 * A named group of servers that routes proxy to: balancing, health and
 * circuit breaking for each of its targets, and the numbers the admin API
 * and the metrics show.
 *
 * @module
 */

import type { UpstreamConfig } from "./config.ts";
import { type BalanceAlgorithm, type Balancer, createBalancer } from "./balancer.ts";
import { type BreakerState, CircuitBreaker } from "./breaker.ts";
import type { UpstreamClient } from "./client.ts";
import { HealthChecker, TargetHealth } from "./health.ts";
import { TargetField, type TargetState, type TargetStatePool } from "./target_state.ts";

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
 * over. Its numbers live in its URL's {@link TargetState}, shared with
 * every other upstream built for that URL (the previous config's, during a
 * reload).
 */
export class UpstreamTarget {
  /** The origin: `http://127.0.0.1:9000`. */
  readonly url: string;
  /** The value of the Host header for this target: `127.0.0.1:9000`. */
  readonly host: string;
  readonly weight: number;
  readonly health: TargetHealth;
  readonly #state: TargetState;
  readonly #breaker: CircuitBreaker | undefined;

  constructor(
    upstream: string,
    entry: UpstreamConfig["targets"][number],
    config: UpstreamConfig,
    states: TargetStatePool,
    now: () => number,
  ) {
    const url = new URL(entry.url);
    this.url = url.origin;
    this.host = url.host;
    this.weight = entry.weight;
    this.#state = states.acquire(this.url);
    const labels = { upstream, target: this.url };
    this.health = new TargetHealth(this.#state, config, labels, now);
    this.#breaker = config.breaker &&
      new CircuitBreaker(this.#state, config.breaker, labels, now);
  }

  /** Requests picked and not yet released. */
  get inFlight(): number {
    return this.#state.get(TargetField.inFlight);
  }

  /** Whether it may take a request now: healthy, not ejected, breaker letting it through. */
  isAvailable(): boolean {
    return this.health.isAvailable() && (this.#breaker?.allowsRequest() ?? true);
  }

  /** Counts a request as sent to this target; {@link Upstream.pick} does it. */
  acquire(): void {
    this.#state.add(TargetField.inFlight, 1);
    this.#state.add(TargetField.requests, 1);
    this.#breaker?.begin();
  }

  /** The response headers arrived. */
  reportSuccess(): void {
    this.health.requestSucceeded();
    this.#breaker?.succeed();
  }

  /** The request failed (connect, timeout, protocol); `reason` goes to the log. */
  reportFailure(reason: string): void {
    this.#state.add(TargetField.failures, 1);
    this.health.requestFailed(reason);
    this.#breaker?.fail();
  }

  /** The exchange is over (response streamed, failed, or abandoned). */
  release(): void {
    this.#state.add(TargetField.inFlight, -1);
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
      inFlight: this.inFlight,
      requests: this.#state.get(TargetField.requests),
      failures: this.#state.get(TargetField.failures),
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
 * The targets' state comes from `states`, by URL: given the gateway's one
 * {@link TargetStatePool}, a reload's new upstream sees the health,
 * ejections, breakers and in-flight counts the old one left. The targets'
 * state is held from construction until {@link stop}, which a build that is
 * thrown away must call too.
 *
 * @example
 * ```ts
 * import { Upstream } from "./upstream.ts";
 * import { createHttp1Client } from "./http1_client.ts";
 * import { TargetStatePool } from "./target_state.ts";
 * import { UpstreamConfig } from "./config.ts";
 * const client = createHttp1Client();
 * const states = new TargetStatePool();
 * const upstream = new Upstream(
 *   "api",
 *   UpstreamConfig.parse({ targets: ["http://127.0.0.1:9000"] }),
 *   client,
 *   states,
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
  readonly #states: TargetStatePool;
  readonly #balancer: Balancer<UpstreamTarget>;
  readonly #checker: HealthChecker | undefined;
  #stopped: Promise<void> | undefined;

  constructor(
    readonly name: string,
    readonly config: UpstreamConfig,
    client: UpstreamClient,
    states: TargetStatePool,
    now: () => number = Date.now,
  ) {
    this.#states = states;
    this.targets = config.targets.map((entry) =>
      new UpstreamTarget(name, entry, config, states, now)
    );
    this.#balancer = createBalancer(config.balance, this.targets);
    this.#checker = config.healthCheck &&
      new HealthChecker(this.targets, config.healthCheck, client);
  }

  /** Starts the active health checks, if configured; the first round runs now. */
  start(): void {
    this.#checker?.start();
  }

  /**
   * Stops the health checks, waits for a round in flight, then lets go of
   * the targets' state (a URL no other upstream holds loses it). Idempotent.
   */
  stop(): Promise<void> {
    return this.#stopped ??= this.#stop();
  }

  async #stop(): Promise<void> {
    await this.#checker?.stop();
    for (const target of this.targets) this.#states.release(target.url);
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
