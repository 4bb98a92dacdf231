/**
 * Warnings about events a client can repeat at will (a refused connection or
 * datagram, a malformed frame, a denied publish) go through one rate limit,
 * so that a flood costs a counter per event instead of a log line: per key,
 * the first event of an interval is logged at once, the others are counted,
 * and at the end of the interval one summary line gives how many there were
 * (with the fields of the last one). An interval without events ends the key.
 *
 * @module
 */

import type { Logger } from "@logtape/logtape";

/** Milliseconds between two lines of one key: the gateway's per-event warning rate. */
export const EVENT_LOG_INTERVAL = 10_000;
/**
 * Keys with events counted but not yet summarised. Keys name a kind of event
 * and a listener, not a peer; past this many, a new key's events are logged
 * only in the summary of the `overflow` key.
 */
const MAX_KEYS = 1000;
const OVERFLOW_KEY = "\0overflow";

/** One key's interval: events since its first line, and the fields of the latest. */
interface Window {
  logger: Logger;
  message: string;
  properties: Record<string, unknown>;
  suppressed: number;
  timer: ReturnType<typeof setTimeout>;
}

/**
 * Rate-limited warnings, by key.
 *
 * @example
 * ```ts
 * import { getLogger } from "@logtape/logtape";
 * import { RateLimitedLog } from "./rate_limited_log.ts";
 *
 * const log = new RateLimitedLog(1000);
 * const logger = getLogger(["gateway", "demo"]);
 * for (let i = 0; i < 5; i++) {
 *   log.warn(logger, "demo/refused", "refused {peer}", { peer: `10.0.0.${i}` });
 * }
 * // one line now ("refused 10.0.0.0"); after a second, "refused 10.0.0.4 (and 4 more like it in 1 s)"
 * log.suppressed("demo/refused"); // 4
 * log.clear();
 * ```
 */
export class RateLimitedLog {
  readonly #windows = new Map<string, Window>();

  /** `interval`: milliseconds between two lines of one key. */
  constructor(readonly interval: number = EVENT_LOG_INTERVAL) {}

  /**
   * Logs `message` (a logtape template) at warning level now, unless a line
   * with this `key` went out less than an interval ago: then the event is
   * counted into that interval's summary line.
   */
  warn(logger: Logger, key: string, message: string, properties: Record<string, unknown>): void {
    let window = this.#windows.get(key);
    if (window === undefined && this.#windows.size >= MAX_KEYS) {
      window = this.#windows.get(OVERFLOW_KEY);
      key = OVERFLOW_KEY;
    }
    if (window) {
      window.suppressed++;
      window.logger = logger;
      window.message = message;
      window.properties = properties;
      return;
    }
    logger.warn(message, properties);
    this.#open(key, { logger, message, properties });
  }

  /** Events of `key` counted in its current interval and not logged yet. */
  suppressed(key: string): number {
    return this.#windows.get(key)?.suppressed ?? 0;
  }

  /** Drops every interval without logging its summary (for tests and shutdown). */
  clear(): void {
    for (const window of this.#windows.values()) clearTimeout(window.timer);
    this.#windows.clear();
  }

  #open(key: string, event: Pick<Window, "logger" | "message" | "properties">): void {
    const timer = setTimeout(() => this.#close(key), this.interval);
    Deno.unrefTimer(timer);
    this.#windows.set(key, { ...event, suppressed: 0, timer });
  }

  /** Ends `key`'s interval: its summary line, if events were counted, opens the next one. */
  #close(key: string): void {
    const window = this.#windows.get(key)!;
    this.#windows.delete(key);
    if (window.suppressed === 0) return;
    window.logger.warn(`${window.message} (and {suppressed} more like it in {seconds} s)`, {
      ...window.properties,
      suppressed: window.suppressed,
      seconds: this.interval / 1000,
    });
    this.#open(key, window);
  }
}

/**
 * The gateway's one rate limit for per-event warnings: at most one line per
 * key every {@link EVENT_LOG_INTERVAL} ms, plus a summary with the count.
 *
 * @example
 * ```ts
 * import { getLogger } from "@logtape/logtape";
 * import { eventWarnings } from "./rate_limited_log.ts";
 * eventWarnings.warn(getLogger(["gateway"]), "udp/sensors/refused", "refused {peer}", {
 *   peer: "10.0.0.1:5683",
 * });
 * eventWarnings.clear();
 * ```
 */
export const eventWarnings: RateLimitedLog = new RateLimitedLog();
