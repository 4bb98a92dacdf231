/**
 * Whether an upstream target should take requests: active health checks
 * (a request every `interval`) and passive health (real requests that fail
 * in a row eject the target for a while).
 *
 * @module
 */

import { getLogger } from "@logtape/logtape";
import type { UpstreamConfig } from "../config/schema.ts";
import { type UpstreamClient, UpstreamError } from "./client.ts";

/** Active health check settings of an upstream. */
export type HealthCheckConfig = NonNullable<UpstreamConfig["healthCheck"]>;

/** Passive health settings of an upstream. */
export type PassiveHealthConfig = UpstreamConfig["passive"];

const logger = getLogger(["gateway", "upstream"]);

/**
 * The health of one target. It is available when the active checks last
 * judged it healthy (it starts healthy) and it is not ejected. Passive
 * ejection ends after `ejectFor` ms, or sooner when `healthyThreshold`
 * active checks in a row pass after the ejection.
 *
 * @example
 * ```ts
 * import { TargetHealth } from "./health.ts";
 * let now = 0;
 * const health = new TargetHealth(
 *   { failures: 2, ejectFor: 30_000 },
 *   { upstream: "api", target: "http://127.0.0.1:9000" },
 *   () => now,
 * );
 * health.requestFailed("connect: refused");
 * health.requestFailed("connect: refused");
 * health.isAvailable(); // false: ejected until 30 000
 * now = 30_000;
 * health.isAvailable(); // true
 * ```
 */
export class TargetHealth {
  #checkedHealthy = true;
  #checkPasses = 0;
  #checkFailures = 0;
  #requestFailures = 0;
  #ejectedUntil: number | undefined;

  constructor(
    private readonly passive: PassiveHealthConfig,
    private readonly labels: { upstream: string; target: string },
    private readonly now: () => number = Date.now,
  ) {}

  /** When the passive ejection ends (epoch ms), if the target is ejected. */
  get ejectedUntil(): number | undefined {
    return this.#ejectedUntil;
  }

  /** Whether the target may take requests now. */
  isAvailable(): boolean {
    if (this.#ejectedUntil !== undefined && this.now() >= this.#ejectedUntil) {
      this.#readmit(`ejected for ${this.passive.ejectFor} ms`);
    }
    return this.#checkedHealthy && this.#ejectedUntil === undefined;
  }

  /** A real request got a response. */
  requestSucceeded(): void {
    this.#requestFailures = 0;
  }

  /** A real request failed; `passive.failures` in a row eject the target. */
  requestFailed(reason: string): void {
    if (this.#ejectedUntil !== undefined || ++this.#requestFailures < this.passive.failures) return;
    this.#ejectedUntil = this.now() + this.passive.ejectFor;
    this.#checkPasses = 0;
    logger.warn("target {target} of upstream {upstream} ejected for {ejectFor} ms: {reason}", {
      ...this.labels,
      ejectFor: this.passive.ejectFor,
      reason: `${this.#requestFailures} consecutive failures, last: ${reason}`,
    });
  }

  /** An active check passed; `threshold` in a row make the target healthy again. */
  checkPassed(threshold: number): void {
    this.#checkFailures = 0;
    if (++this.#checkPasses < threshold) return;
    if (!this.#checkedHealthy) {
      this.#checkedHealthy = true;
      logger.info("target {target} of upstream {upstream} is healthy: {reason}", {
        ...this.labels,
        reason: `${this.#checkPasses} health checks passed`,
      });
    }
    if (this.#ejectedUntil !== undefined) {
      this.#readmit(`${this.#checkPasses} health checks passed`);
    }
  }

  /** An active check failed; `threshold` in a row make the target unhealthy. */
  checkFailed(threshold: number, reason: string): void {
    this.#checkPasses = 0;
    if (++this.#checkFailures < threshold || !this.#checkedHealthy) return;
    this.#checkedHealthy = false;
    logger.warn("target {target} of upstream {upstream} is unhealthy: {reason}", {
      ...this.labels,
      reason: `${this.#checkFailures} health checks failed, last: ${reason}`,
    });
  }

  #readmit(reason: string): void {
    this.#ejectedUntil = undefined;
    this.#requestFailures = 0;
    logger.info("target {target} of upstream {upstream} returns from ejection: {reason}", {
      ...this.labels,
      reason,
    });
  }
}

/** A target as the health checker sees it. */
export interface CheckedTarget {
  /** Origin of the target: `http://127.0.0.1:9000`. */
  readonly url: string;
  readonly health: TargetHealth;
}

/**
 * Sends a GET to `path` on every target every `interval` ms and reports the
 * outcome to each target's {@link TargetHealth}. A status inside
 * `expectStatus` passes; another status, a timeout or a connection error
 * fails.
 *
 * @example
 * ```ts
 * import { HealthChecker, TargetHealth } from "./health.ts";
 * import { createHttp1Client } from "./http1_client.ts";
 * const client = createHttp1Client();
 * const url = "http://127.0.0.1:9000";
 * const health = new TargetHealth({ failures: 3, ejectFor: 30_000 }, { upstream: "api", target: url });
 * const checker = new HealthChecker([{ url, health }], {
 *   path: "/healthz",
 *   interval: 5000,
 *   timeout: 2000,
 *   healthyThreshold: 2,
 *   unhealthyThreshold: 3,
 *   expectStatus: [200, 399],
 * }, client);
 * checker.start();
 * await checker.stop();
 * client.close();
 * ```
 */
export class HealthChecker {
  readonly #checks: { url: URL; health: TargetHealth }[];
  #timer: ReturnType<typeof setTimeout> | undefined;
  #round: Promise<void> | undefined;
  #stopping = new AbortController();

  constructor(
    targets: readonly CheckedTarget[],
    private readonly config: HealthCheckConfig,
    private readonly client: UpstreamClient,
  ) {
    this.#checks = targets.map((target) => ({
      url: new URL(config.path, target.url),
      health: target.health,
    }));
  }

  /** Checks every target now, then every `interval` ms until {@link stop}. */
  start(): void {
    this.#runRound();
  }

  /** Checks every target once, in parallel, and reports the outcomes. */
  async checkAll(): Promise<void> {
    await Promise.all(this.#checks.map((check) => this.#check(check.url, check.health)));
  }

  /** Stops the checks; a check in flight is cancelled. Idempotent. */
  async stop(): Promise<void> {
    clearTimeout(this.#timer);
    this.#stopping.abort();
    await this.#round;
  }

  #runRound(): void {
    this.#round = this.checkAll().then(() => {
      if (!this.#stopping.signal.aborted) {
        this.#timer = setTimeout(() => this.#runRound(), this.config.interval);
      }
    });
  }

  async #check(url: URL, health: TargetHealth): Promise<void> {
    const { timeout, expectStatus: [lowest, highest] } = this.config;
    try {
      const response = await this.client.request({
        url,
        method: "GET",
        headers: new Headers({ host: url.host, "user-agent": "gateway-health-check" }),
        body: null,
        connectTimeout: timeout,
        responseTimeout: timeout,
        signal: this.#stopping.signal,
      });
      await response.body?.cancel();
      if (response.status >= lowest && response.status <= highest) {
        health.checkPassed(this.config.healthyThreshold);
      } else {
        health.checkFailed(this.config.unhealthyThreshold, `status ${response.status}`);
      }
    } catch (error) {
      if (this.#stopping.signal.aborted) return;
      const reason = error instanceof UpstreamError
        ? `${error.kind}: ${error.message}`
        : String(error);
      health.checkFailed(this.config.unhealthyThreshold, reason);
    }
  }
}
