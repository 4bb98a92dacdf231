/**
 * The process-wide budget of request-body bytes held in memory at once
 * (`security.limits.maxBufferedBytes`). A target or plugin that reads a
 * whole body takes its bytes from the budget before reading them and gives
 * them back when the request is answered; a request the budget cannot hold
 * answers 503 with `Retry-After` instead of growing the heap.
 *
 * @module
 */

import { GatewayError } from "../errors.ts";

/** Seconds a client refused for want of body budget is told to wait. */
const RETRY_AFTER_SECONDS = 1;

/** The 503 of a body the budget cannot hold, with `Retry-After`. */
export class BodyBudgetError extends GatewayError {
  /**
   * Creates the error for a budget of `limit` bytes.
   *
   * @example
   * ```ts
   * import { BodyBudgetError } from "./body_budget.ts";
   * new BodyBudgetError(1024).status; // 503
   * ```
   */
  constructor(readonly limit: number) {
    super(
      503,
      "body_budget",
      `the gateway already holds its ${limit} bytes of request bodies: try again shortly`,
      { headers: { "retry-after": String(RETRY_AFTER_SECONDS) } },
    );
    this.name = "BodyBudgetError";
  }
}

/**
 * Counts the body bytes held in memory against a limit.
 *
 * @example
 * ```ts
 * import { BodyBudget } from "./body_budget.ts";
 * const budget = new BodyBudget(100);
 * budget.take(80); // true
 * budget.take(30); // false: 110 would pass the limit
 * budget.give(80);
 * budget.used; // 0
 * ```
 */
export class BodyBudget {
  #used = 0;

  /**
   * `limit`: the most bytes held at once. The gateway keeps one budget for
   * the process and sets a reloaded config's limit on it at commit.
   */
  constructor(public limit: number) {}

  /** Bytes taken and not yet given back. */
  get used(): number {
    return this.#used;
  }

  /** Takes `bytes`; false, taking nothing, when that would pass the limit. */
  take(bytes: number): boolean {
    if (this.#used + bytes > this.limit) return false;
    this.#used += bytes;
    return true;
  }

  /** Gives back `bytes` taken before. */
  give(bytes: number): void {
    this.#used -= bytes;
  }
}
