/**
 * The broker's storage bounds that refuse something: persistent sessions of
 * anonymous clients (unless `mqtt.sessions.anonymous`), persistent sessions
 * beyond `maxSessions`, subscriptions beyond `maxSubscriptions` per client,
 * and (checked by the session store) retained messages over their byte
 * bounds and queued bytes over a session's bound. Each refusal is counted by
 * reason and logged through the gateway's rate limit for per-event warnings
 * (`src/observability/rate_limited_log.ts`): one line per reason and
 * interval, then a summary with the count.
 *
 * aedes stores every subscription of a SUBSCRIBE packet for a persistent
 * client as soon as one of them is authorized, so the session store keeps
 * only those this module granted ({@link StorageLimits.isGranted}): a refused
 * subscription (ACL or bound) is never stored.
 *
 * @module
 */

import { getLogger } from "@logtape/logtape";
import { eventWarnings, type RateLimitedLog } from "../observability/rate_limited_log.ts";

const logger = getLogger(["gateway", "mqtt", "storage"]);

/** Why the broker refused to keep something. */
export type StorageRefusal =
  | "anonymous_session"
  | "sessions"
  | "subscriptions"
  | "retained_message_bytes"
  | "retained_bytes"
  | "queued_bytes";

/**
 * Counts refusals by reason and logs them through the gateway's rate limit
 * for per-event warnings (one line per reason and interval, then a summary
 * with the count).
 *
 * @example
 * ```ts
 * import { RateLimitedLog } from "../observability/rate_limited_log.ts";
 * import { StorageRefusals } from "./storage_limits.ts";
 * const counted: string[] = [];
 * const log = new RateLimitedLog();
 * const refusals = new StorageRefusals((reason) => counted.push(reason), log);
 * refusals.refuse("subscriptions", "subscription to {topic} refused", { topic: "a/#" });
 * counted; // ["subscriptions"]
 * log.clear();
 * ```
 */
export class StorageRefusals {
  constructor(
    readonly count: (reason: StorageRefusal) => void = () => {},
    readonly log: RateLimitedLog = eventWarnings,
  ) {}

  /** Counts a refusal of `reason` and logs `message` (a logtape template), rate-limited per reason. */
  refuse(reason: StorageRefusal, message: string, properties: Record<string, unknown>): void {
    this.count(reason);
    this.log.warn(logger, `mqtt/storage/${reason}`, `${message} ({reason})`, {
      ...properties,
      reason,
    });
  }
}

/** The bounds {@link StorageLimits} checks (a reload replaces them). */
export interface SubscriptionBounds {
  /** Subscriptions one client may hold. */
  maxSubscriptions: number;
  /** Whether clients without a user name may have persistent sessions. */
  anonymous: boolean;
}

/** A client as the limits see it. */
export interface LimitedClient {
  id: string;
  /** Clean session: its subscriptions end with its connection. */
  clean: boolean;
}

/** The session store's side: whether a persistent session may exist for a client id. */
export interface SessionAdmission {
  /** True when `clientId` has a stored session or one more fits (the place is then taken). */
  admitsSession(clientId: string): boolean;
}

/**
 * Admission of persistent sessions and subscriptions.
 *
 * @example
 * ```ts
 * import { StorageLimits, StorageRefusals } from "./storage_limits.ts";
 * const limits = new StorageLimits({ maxSubscriptions: 1, anonymous: false }, new StorageRefusals());
 * const client = { id: "c1", clean: true };
 * const sessions = { admitsSession: () => true };
 * limits.admitsConnect(client, undefined); // true: clean session
 * limits.admitsConnect({ id: "c2", clean: false }, undefined); // false: anonymous session
 * limits.admitSubscription(client, { topic: "a" }, sessions); // true
 * limits.admitSubscription(client, { topic: "b" }, sessions); // false: one subscription each
 * limits.refusals.log.clear();
 * ```
 */
export class StorageLimits {
  /** Per client: the topics it was granted, until it unsubscribes. */
  readonly #topics = new WeakMap<LimitedClient, Set<string>>();
  /** The subscription objects granted, so that the session store keeps only those. */
  readonly #granted = new WeakSet<object>();

  constructor(public bounds: SubscriptionBounds, readonly refusals: StorageRefusals) {}

  /**
   * Whether a CONNECT that logged in as `username` (undefined: anonymous) may
   * go on; false for an anonymous client asking for a persistent session
   * unless anonymous sessions are allowed (counted and logged).
   */
  admitsConnect(client: LimitedClient, username: string | undefined): boolean {
    if (client.clean || username !== undefined || this.bounds.anonymous) return true;
    this.refusals.refuse(
      "anonymous_session",
      "client {clientId} refused: a client without a user name may not have a persistent session (mqtt.sessions.anonymous)",
      { clientId: client.id },
    );
    return false;
  }

  /**
   * Whether `client` may take `subscription` (already allowed by the ACL):
   * within `maxSubscriptions` (a topic it holds already does not count again),
   * and, for a persistent client, with a place in the session store.
   * A refusal is counted and logged.
   */
  admitSubscription(
    client: LimitedClient,
    subscription: { topic: string },
    sessions: SessionAdmission,
  ): boolean {
    let topics = this.#topics.get(client);
    if (!topics) {
      topics = new Set();
      this.#topics.set(client, topics);
    }
    const { topic } = subscription;
    if (!topics.has(topic) && topics.size >= this.bounds.maxSubscriptions) {
      this.refusals.refuse(
        "subscriptions",
        "subscription of client {clientId} to {topic} refused: it holds {count} (mqtt.maxSubscriptions)",
        { clientId: client.id, topic, count: topics.size },
      );
      return false;
    }
    if (!client.clean && !sessions.admitsSession(client.id)) {
      this.refusals.refuse(
        "sessions",
        "subscription of client {clientId} to {topic} refused: the persistent sessions are full (mqtt.sessions.maxSessions)",
        { clientId: client.id, topic },
      );
      return false;
    }
    topics.add(topic);
    this.#granted.add(subscription);
    return true;
  }

  /** Forgets the topics `client` unsubscribed from. */
  unsubscribed(client: LimitedClient, topics: readonly string[]): void {
    const held = this.#topics.get(client);
    for (const topic of topics) held?.delete(topic);
  }

  /** Whether `subscription` (the object aedes passes on) was granted by {@link admitSubscription}. */
  isGranted(subscription: object): boolean {
    return this.#granted.has(subscription);
  }
}
