/**
 * A circuit breaker for one upstream target: after enough consecutive
 * failures it stops sending requests there for a while, then lets a few trial
 * requests through to find out whether the target has recovered.
 *
 * @module
 */

import { getLogger } from "@logtape/logtape";
import type { UpstreamConfig } from "./config.ts";
import { TargetField, type TargetState } from "./target_state.ts";

/** The breaker settings of an upstream. */
export type BreakerConfig = NonNullable<UpstreamConfig["breaker"]>;

/** Where a breaker stands. */
export type BreakerState = "closed" | "open" | "half-open";

const logger = getLogger(["gateway", "upstream"]);

const STATES: readonly BreakerState[] = ["closed", "open", "half-open"];
const CLOSED = 0;
const OPEN = 1;
const HALF_OPEN = 2;

/**
 * Closed: requests flow and consecutive failures are counted; at
 * `failures` it opens. Open: no requests for `openFor` ms, then half-open.
 * Half-open: at most `halfOpenRequests` trial requests at a time; a success
 * closes it, a failure opens it again. Its state lives in the target's
 * {@link TargetState}, so an open breaker stays open across a reload.
 *
 * A request is bracketed by {@link begin} and {@link end}; in between,
 * {@link succeed} or {@link fail} gives its verdict (a request the client
 * abandoned gets none).
 *
 * @example
 * ```ts
 * import { CircuitBreaker } from "./breaker.ts";
 * import { TargetStatePool } from "./target_state.ts";
 * let now = 0;
 * const url = "http://127.0.0.1:9000";
 * const breaker = new CircuitBreaker(
 *   new TargetStatePool().acquire(url),
 *   { failures: 2, openFor: 1000, halfOpenRequests: 1 },
 *   { upstream: "api", target: url },
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
  constructor(
    private readonly slot: TargetState,
    private readonly config: BreakerConfig,
    private readonly labels: { upstream: string; target: string },
    private readonly now: () => number = Date.now,
  ) {}

  /** The current state; an open breaker whose time is up reads as half-open. */
  get state(): BreakerState {
    return STATES[this.#state()];
  }

  /** Whether a request may be sent now. Takes nothing: call {@link begin} when one is. */
  allowsRequest(): boolean {
    const state = this.#state();
    return state === CLOSED ||
      (state === HALF_OPEN &&
        this.slot.get(TargetField.breakerTrials) < this.config.halfOpenRequests);
  }

  /** A request is being sent; in half-open it takes a trial slot. */
  begin(): void {
    if (this.#state() === HALF_OPEN) this.slot.add(TargetField.breakerTrials, 1);
  }

  /** A request is over, with or without a verdict; frees its trial slot. */
  end(): void {
    if (
      this.slot.get(TargetField.breakerState) === HALF_OPEN &&
      this.slot.get(TargetField.breakerTrials) > 0
    ) {
      this.slot.add(TargetField.breakerTrials, -1);
    }
  }

  /** The target answered. */
  succeed(): void {
    this.slot.set(TargetField.breakerFailures, 0);
    if (this.#state() === HALF_OPEN) this.#moveTo(CLOSED, "trial request succeeded");
  }

  /** The target failed a request. */
  fail(): void {
    const state = this.#state();
    if (state === HALF_OPEN) {
      this.#open("trial request failed");
    } else if (state === CLOSED) {
      const failures = this.slot.add(TargetField.breakerFailures, 1);
      if (failures >= this.config.failures) this.#open(`${failures} consecutive failures`);
    }
  }

  #state(): number {
    const state = this.slot.get(TargetField.breakerState);
    if (
      state === OPEN &&
      this.now() - this.slot.get(TargetField.breakerOpenedAt) >= this.config.openFor
    ) {
      this.#moveTo(HALF_OPEN, `open for ${this.config.openFor} ms`);
      return HALF_OPEN;
    }
    return state;
  }

  #open(reason: string): void {
    this.slot.set(TargetField.breakerOpenedAt, this.now());
    this.#moveTo(OPEN, reason);
  }

  #moveTo(state: number, reason: string): void {
    logger[state === OPEN ? "warn" : "info"](
      "circuit breaker of {target} in upstream {upstream} is {state}: {reason}",
      {
        ...this.labels,
        state: STATES[state],
        reason,
      },
    );
    this.slot.set(TargetField.breakerState, state);
    this.slot.set(TargetField.breakerFailures, 0);
    this.slot.set(TargetField.breakerTrials, 0);
  }
}
