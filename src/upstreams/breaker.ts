/**
 * A circuit breaker for one upstream target: after enough consecutive
 * failures it stops sending requests there for a while, then lets a few trial
 * requests through to find out whether the target has recovered.
 *
 * @module
 */

import { getLogger } from "@logtape/logtape";
import type { UpstreamConfig } from "../config/schema.ts";

/** The breaker settings of an upstream. */
export type BreakerConfig = NonNullable<UpstreamConfig["breaker"]>;

/** Where a breaker stands. */
export type BreakerState = "closed" | "open" | "half-open";

const logger = getLogger(["gateway", "upstream"]);

/**
 * Closed: requests flow and consecutive failures are counted; at
 * `failures` it opens. Open: no requests for `openFor` ms, then half-open.
 * Half-open: at most `halfOpenRequests` trial requests at a time; a success
 * closes it, a failure opens it again.
 *
 * A request is bracketed by {@link begin} and {@link end}; in between,
 * {@link succeed} or {@link fail} gives its verdict (a request the client
 * abandoned gets none).
 *
 * @example
 * ```ts
 * import { CircuitBreaker } from "./breaker.ts";
 * let now = 0;
 * const breaker = new CircuitBreaker(
 *   { failures: 2, openFor: 1000, halfOpenRequests: 1 },
 *   { upstream: "api", target: "http://127.0.0.1:9000" },
 *   () => now,
 * );
 * breaker.fail();
 * breaker.fail();
 * breaker.state; // "open"
 * now = 1000;
 * breaker.allowsRequest(); // true: half-open, one trial
 * ```
 */
export class CircuitBreaker {
  #state: BreakerState = "closed";
  #consecutiveFailures = 0;
  #openedAt = 0;
  #trialsInFlight = 0;

  constructor(
    private readonly config: BreakerConfig,
    private readonly labels: { upstream: string; target: string },
    private readonly now: () => number = Date.now,
  ) {}

  /** The current state; an open breaker whose time is up reads as half-open. */
  get state(): BreakerState {
    if (this.#state === "open" && this.now() - this.#openedAt >= this.config.openFor) {
      this.#moveTo("half-open", `open for ${this.config.openFor} ms`);
    }
    return this.#state;
  }

  /** Whether a request may be sent now. Takes nothing: call {@link begin} when one is. */
  allowsRequest(): boolean {
    const state = this.state;
    return state === "closed" ||
      (state === "half-open" && this.#trialsInFlight < this.config.halfOpenRequests);
  }

  /** A request is being sent; in half-open it takes a trial slot. */
  begin(): void {
    if (this.state === "half-open") this.#trialsInFlight++;
  }

  /** A request is over, with or without a verdict; frees its trial slot. */
  end(): void {
    if (this.#state === "half-open" && this.#trialsInFlight > 0) this.#trialsInFlight--;
  }

  /** The target answered. */
  succeed(): void {
    this.#consecutiveFailures = 0;
    if (this.state === "half-open") this.#moveTo("closed", "trial request succeeded");
  }

  /** The target failed a request. */
  fail(): void {
    const state = this.state;
    if (state === "half-open") {
      this.#open("trial request failed");
    } else if (state === "closed" && ++this.#consecutiveFailures >= this.config.failures) {
      this.#open(`${this.#consecutiveFailures} consecutive failures`);
    }
  }

  #open(reason: string): void {
    this.#openedAt = this.now();
    this.#moveTo("open", reason);
  }

  #moveTo(state: BreakerState, reason: string): void {
    logger[state === "open" ? "warn" : "info"](
      "circuit breaker of {target} in upstream {upstream} is {state}: {reason}",
      {
        ...this.labels,
        state,
        reason,
      },
    );
    this.#state = state;
    this.#consecutiveFailures = 0;
    this.#trialsInFlight = 0;
  }
}
