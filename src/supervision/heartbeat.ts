/**
 * Heartbeats: a part is pinged every interval, and one that says nothing
 * for several intervals while it has no call to work on counts as hung.
 * Silence during a call is not a missed heartbeat (a sequential SDK cannot
 * answer pings while it runs one; calls have their own deadlines).
 *
 * @module
 */

/** What a heartbeat needs from its part. */
export interface HeartbeatTarget {
  /** Sends a ping (the part's answer, any message, counts as a sign of life). */
  ping(): void;
  /** Whether a call is in flight now (silence then is not missing a heartbeat). */
  busy(): boolean;
  /** The part missed `missed` heartbeats: it was silent, idle, for `silentMs`. */
  hung(silentMs: number): void;
}

/**
 * The heartbeat of one part.
 *
 * @example
 * ```ts
 * import { Heartbeat } from "./heartbeat.ts";
 * const heartbeat = new Heartbeat(5000, 3, {
 *   ping: () => {},
 *   busy: () => false,
 *   hung: (ms) => console.log(`silent for ${ms} ms`),
 * });
 * heartbeat.start();
 * heartbeat.seen(); // on every message from the part
 * heartbeat.stop();
 * ```
 */
export class Heartbeat {
  #lastSeen = Date.now();
  #timer?: ReturnType<typeof setInterval>;

  constructor(
    readonly intervalMs: number,
    readonly missed: number,
    readonly target: HeartbeatTarget,
  ) {}

  /** Starts pinging (again: a running heartbeat keeps its timer). */
  start(): void {
    this.#lastSeen = Date.now();
    this.#timer ??= setInterval(() => this.beat(), this.intervalMs);
  }

  /** The part said something. */
  seen(): void {
    this.#lastSeen = Date.now();
  }

  /** One beat: declares the part hung, or pings it. */
  beat(): void {
    const silent = Date.now() - this.#lastSeen;
    if (!this.target.busy() && silent > this.missed * this.intervalMs) {
      this.stop();
      this.target.hung(silent);
      return;
    }
    this.target.ping();
  }

  /** Stops pinging. */
  stop(): void {
    clearInterval(this.#timer);
    this.#timer = undefined;
  }
}
