/**
 * Restarting a supervised process or Worker after it ended: capped
 * exponential backoff, and a `failed` state after repeated quick crashes, so
 * that a part that cannot live stops costing restarts and says why.
 *
 * @module
 */

import type { PartState } from "./stats.ts";

/** How a part is restarted. */
export interface RestartOptions {
  /** The first delay in ms; it doubles with each quick crash in a row. */
  baseMs: number;
  /** The longest delay in ms. */
  maxMs: number;
  /** A crash sooner than this many ms after a start is a quick crash. */
  quickMs: number;
  /** Quick crashes in a row after which the part is `failed`. */
  maxQuickCrashes: number;
}

/** The defaults every kind uses unless its config says otherwise. */
export const RESTART_DEFAULTS: RestartOptions = {
  baseMs: 100,
  maxMs: 30_000,
  quickMs: 10_000,
  maxQuickCrashes: 5,
};

/**
 * The delay before restart `attempt` (1 for the first): `baseMs` doubling,
 * never more than `maxMs`.
 *
 * @example
 * ```ts
 * import { backoffDelay } from "./restart.ts";
 * backoffDelay(3, { baseMs: 100, maxMs: 250 }); // 250
 * ```
 */
export function backoffDelay(attempt: number, options: Pick<RestartOptions, "baseMs" | "maxMs">) {
  return Math.min(options.baseMs * 2 ** Math.max(0, attempt - 1), options.maxMs);
}

/**
 * The restart state of one part: it runs `restart` after each crash, later
 * each time, until the crashes come too quickly too often.
 *
 * @example
 * ```ts
 * import { Restarter } from "./restart.ts";
 * const restarter = new Restarter(() => console.log("starting again"));
 * restarter.started();
 * restarter.crashed("exited with code 1", 50); // "backoff": restarts in 100 ms
 * restarter.stop();
 * ```
 */
export class Restarter {
  state: PartState = "starting";
  /** Restarts done (not the first start). */
  restarts = 0;
  /** Why it is in backoff or failed. */
  reason?: string;
  #quickCrashes = 0;
  #startedAt = Date.now();
  #timer?: ReturnType<typeof setTimeout>;
  readonly #options: RestartOptions;

  /** `restart` starts the part again; it calls {@link started} or {@link crashed} after. */
  constructor(readonly restart: () => void, options: Partial<RestartOptions> = {}) {
    this.#options = { ...RESTART_DEFAULTS, ...options };
  }

  /** Quick crashes in a row so far. */
  get quickCrashes(): number {
    return this.#quickCrashes;
  }

  /** Marks a (re)start: the clock for "quick" runs from here. */
  starting(): void {
    if (this.state === "stopped") return;
    this.state = "starting";
    this.#startedAt = Date.now();
  }

  /** The part is up and taking calls. */
  started(): void {
    if (this.state === "stopped") return;
    this.state = "running";
    this.reason = undefined;
  }

  /**
   * The part ended without being asked to, `uptime` ms after its start.
   * Schedules {@link restart} and answers `backoff`, or answers `failed` after
   * too many quick crashes in a row (`reason` then says so and why).
   */
  crashed(why: string, uptime = Date.now() - this.#startedAt): "backoff" | "failed" | "stopped" {
    if (this.state === "stopped") return "stopped";
    const { quickMs, maxQuickCrashes } = this.#options;
    this.#quickCrashes = uptime < quickMs ? this.#quickCrashes + 1 : 0;
    if (this.#quickCrashes >= maxQuickCrashes) {
      this.state = "failed";
      this.reason = `exited ${this.#quickCrashes} times in a row within ${quickMs / 1000} s ` +
        `of starting; gave up. Last: ${why}`;
      return "failed";
    }
    this.state = "backoff";
    this.reason = why;
    clearTimeout(this.#timer);
    this.#timer = setTimeout(() => {
      if (this.state !== "backoff") return;
      this.restarts++;
      this.starting();
      this.restart();
    }, this.delay);
    return "backoff";
  }

  /** The delay before the next restart, in ms. */
  get delay(): number {
    return backoffDelay(Math.max(1, this.#quickCrashes), this.#options);
  }

  /** Forgets the crashes (a new version, a requested restart) and cancels a pending restart. */
  reset(): void {
    clearTimeout(this.#timer);
    this.#quickCrashes = 0;
    this.reason = undefined;
    if (this.state !== "stopped") this.state = "starting";
  }

  /** Gives up at once (the part cannot be started at all): `failed`, for `why`. */
  fail(why: string): void {
    clearTimeout(this.#timer);
    this.state = "failed";
    this.reason = why;
  }

  /** Cancels a pending restart for good. */
  stop(): void {
    clearTimeout(this.#timer);
    this.state = "stopped";
  }
}
