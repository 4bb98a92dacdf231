/**
 * Whether an upstream target should take requests: active health checks
 * (a request every `interval`) and passive health (real requests that fail
 * in a row eject the target for a while).
 *
 * @module
 */

import { getLogger } from "@logtape/logtape";
import type { UpstreamConfig } from "./config.ts";
import { type UpstreamClient, UpstreamError } from "./client.ts";
import { TargetField, type TargetState } from "./target_state.ts";

/** Active health check settings of an upstream. */
export type HealthCheckConfig = NonNullable<UpstreamConfig["healthCheck"]>;

/** Passive health settings of an upstream. */
export type PassiveHealthConfig = UpstreamConfig["passive"];

const logger = getLogger(["gateway", "upstream"]);

/** What a target's health depends on: the upstream's passive settings, and whether it checks actively. */
export type TargetHealthConfig = Pick<UpstreamConfig, "passive" | "healthCheck">;

/**
 * The health of one target, kept in its {@link TargetState} so that it
 * survives a reload. It is available when it is not ejected and, if its
 * upstream checks actively, the checks last judged it healthy (a new target
 * starts healthy; a known one keeps its verdict until a check changes it,
 * whatever the checks' new settings). Passive ejection ends after `ejectFor`
 * ms, or sooner when `healthyThreshold` active checks in a row pass after
 * the ejection.
 *
 * @example
 * ```ts
 * import { TargetHealth } from "./health.ts";
 * import { TargetStatePool } from "./target_state.ts";
 * let now = 0;
 * const url = "http://127.0.0.1:9000";
 * const health = new TargetHealth(
 *   new TargetStatePool().acquire(url),
 *   { passive: { failures: 2, ejectFor: 30_000 } },
 *   { upstream: "api", target: url },
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
  constructor(
    private readonly slot: TargetState,
    private readonly config: TargetHealthConfig,
    private readonly labels: { upstream: string; target: string },
    private readonly now: () => number = Date.now,
  ) {}

  /** When the passive ejection ends (epoch ms), if the target is ejected. */
  get ejectedUntil(): number | undefined {
    return this.slot.get(TargetField.ejectedUntil) || undefined;
  }

  /** Whether the target may take requests now. */
  isAvailable(): boolean {
    const ejectedUntil = this.slot.get(TargetField.ejectedUntil);
    if (ejectedUntil !== 0 && this.now() >= ejectedUntil) {
      this.#readmit(`ejected for ${this.config.passive.ejectFor} ms`);
    }
    return this.slot.get(TargetField.ejectedUntil) === 0 &&
      (this.config.healthCheck === undefined || this.slot.get(TargetField.unhealthy) === 0);
  }

  /** A real request got a response. */
  requestSucceeded(): void {
    this.slot.set(TargetField.requestFailures, 0);
  }

  /** A real request failed; `passive.failures` in a row eject the target. */
  requestFailed(reason: string): void {
    const { failures, ejectFor } = this.config.passive;
    if (this.slot.get(TargetField.ejectedUntil) !== 0) return;
    const inARow = this.slot.add(TargetField.requestFailures, 1);
    if (inARow < failures) return;
    this.slot.set(TargetField.ejectedUntil, this.now() + ejectFor);
    this.slot.set(TargetField.checkPasses, 0);
    logger.warn("target {target} of upstream {upstream} ejected for {ejectFor} ms: {reason}", {
      ...this.labels,
      ejectFor,
      reason: `${inARow} consecutive failures, last: ${reason}`,
    });
  }

  /** An active check passed; `threshold` in a row make the target healthy again. */
  checkPassed(threshold: number): void {
    this.slot.set(TargetField.checkFailures, 0);
    const passes = this.slot.add(TargetField.checkPasses, 1);
    if (passes < threshold) return;
    if (this.slot.get(TargetField.unhealthy) !== 0) {
      this.slot.set(TargetField.unhealthy, 0);
      logger.info("target {target} of upstream {upstream} is healthy: {reason}", {
        ...this.labels,
        reason: `${passes} health checks passed`,
      });
    }
    if (this.slot.get(TargetField.ejectedUntil) !== 0) {
      this.#readmit(`${passes} health checks passed`);
    }
  }

  /** An active check failed; `threshold` in a row make the target unhealthy. */
  checkFailed(threshold: number, reason: string): void {
    this.slot.set(TargetField.checkPasses, 0);
    const failures = this.slot.add(TargetField.checkFailures, 1);
    if (failures < threshold || this.slot.get(TargetField.unhealthy) !== 0) return;
    this.slot.set(TargetField.unhealthy, 1);
    logger.warn("target {target} of upstream {upstream} is unhealthy: {reason}", {
      ...this.labels,
      reason: `${failures} health checks failed, last: ${reason}`,
    });
  }

  #readmit(reason: string): void {
    this.slot.set(TargetField.ejectedUntil, 0);
    this.slot.set(TargetField.requestFailures, 0);
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
 * import { TargetStatePool } from "./target_state.ts";
 * const client = createHttp1Client();
 * const url = "http://127.0.0.1:9000";
 * const healthCheck = {
 *   path: "/healthz",
 *   interval: 5000,
 *   timeout: 2000,
 *   healthyThreshold: 2,
 *   unhealthyThreshold: 3,
 *   expectStatus: [200, 399] as [number, number],
 * };
 * const health = new TargetHealth(
 *   new TargetStatePool().acquire(url),
 *   { passive: { failures: 3, ejectFor: 30_000 }, healthCheck },
 *   { upstream: "api", target: url },
 * );
 * const checker = new HealthChecker([{ url, health }], healthCheck, client);
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
