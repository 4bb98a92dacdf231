/**
 * Who may use which topics: the reserved namespaces of the bus and the
 * narrowing a `bus` grant adds. Pure functions, so that a plugin's sandbox
 * can refuse at once (with the same words) what the host refuses anyway.
 *
 * Reserved, whatever the grant:
 * - `fn/...`: function calls. Only the gateway serves `fn/<owner>/*`, on
 *   behalf of that owner (a plugin's `functions`, a worker's registered
 *   functions, `model`); nobody else may subscribe there, and nobody may
 *   publish on another owner's functions (a call is `ctx.call`, a request).
 * - Reply topics `conn/<id>/send` and `device/<id>/send`: what is published
 *   there goes to that connection, the caller: anyone may publish (answer),
 *   only the connection subscribes, or the MQTT broker for its own clients
 *   (whose access to them is the broker's). A request's own reply is a
 *   function the bus hands its subscribers, never a topic: nothing to
 *   subscribe to.
 * - `$...`: the system's, neither subscribed to nor published on.
 *
 * A filter that can match only reserved topics is refused; a wider one (`#`,
 * `+/auth/check`) is accepted and never receives reserved topics, as MQTT's
 * `#` never receives `$SYS`.
 *
 * @module
 */

/** MQTT filters a scope is narrowed to; a list that is absent leaves that direction open. */
export interface BusGrant {
  /** Topics it may publish on (and send requests to). */
  publish?: string[];
  /** Filters it may subscribe to: each subscription must lie within one of them. */
  subscribe?: string[];
}

/** Who uses the bus through a scope. */
export interface BusIdentity {
  /** Its subscriptions' owner and its name in refusals: `plugin:spy`, `worker:py`, `mqtt`. */
  owner: string;
  /** The function owner it is, when it is one: `fn/<name>/...` is then its own to publish on. */
  name?: string;
  /** It delivers reply topics to connections of its own (the MQTT broker): they are open to it. */
  carriesReplies?: boolean;
  grant?: BusGrant;
}

/** Topics whose messages go to one connection. */
const REPLY_FILTERS = ["conn/+/send", "device/+/send"];
const RESERVED_FILTERS = ["fn/#", ...REPLY_FILTERS];
const FUNCTION_FILTERS = ["fn/#"];

/**
 * Whether every topic `inner` (a filter or a topic) matches is matched by
 * the filter `outer`.
 *
 * @example
 * ```ts
 * import { filterCovers } from "./access.ts";
 * filterCovers("sensors/#", "sensors/+/temp"); // true
 * filterCovers("sensors/+", "sensors/#"); // false
 * ```
 */
export function filterCovers(outer: string, inner: string): boolean {
  const o = outer.split("/");
  const i = inner.split("/");
  for (let level = 0;; level++) {
    if (level === o.length) return level === i.length;
    if (o[level] === "#") return true;
    if (level === i.length || i[level] === "#") return false;
    if (o[level] !== "+" && (i[level] === "+" || o[level] !== i[level])) return false;
  }
}

/**
 * Whether some topic matches both filters.
 *
 * @example
 * ```ts
 * import { filtersOverlap } from "./access.ts";
 * filtersOverlap("#", "fn/#"); // true
 * filtersOverlap("sensors/+", "fn/#"); // false
 * ```
 */
export function filtersOverlap(a: string, b: string): boolean {
  const x = a.split("/");
  const y = b.split("/");
  for (let level = 0;; level++) {
    if (x[level] === "#" || y[level] === "#") return true;
    if (level === x.length || level === y.length) return x.length === y.length;
    if (x[level] !== "+" && y[level] !== "+" && x[level] !== y[level]) return false;
  }
}

function isFunctionTopic(topic: string): boolean {
  return topic === "fn" || topic.startsWith("fn/");
}

function isReservedTopic(topic: string): boolean {
  if (isFunctionTopic(topic)) return true;
  if (!topic.startsWith("conn/") && !topic.startsWith("device/")) return false;
  const levels = topic.split("/");
  return levels.length === 3 && levels[2] === "send";
}

/**
 * The reserved topics a subscription of `identity` on `filter` could match
 * and must never receive (`fn/...`, and reply topics unless it carries them),
 * as a test of a topic; undefined when the filter reaches none (`$` topics no
 * wildcard filter receives anyway).
 *
 * @example
 * ```ts
 * import { hiddenTopics } from "./access.ts";
 * const hidden = hiddenTopics({ owner: "plugin:log" }, "#")!;
 * hidden("fn/auth/check"); // true
 * hidden("conn/c7/send"); // true
 * hidden("sensors/1"); // false
 * hiddenTopics({ owner: "plugin:log" }, "sensors/#"); // undefined
 * ```
 */
export function hiddenTopics(
  identity: BusIdentity,
  filter: string,
): ((topic: string) => boolean) | undefined {
  const [reserved, hides] = identity.carriesReplies
    ? [FUNCTION_FILTERS, isFunctionTopic]
    : [RESERVED_FILTERS, isReservedTopic];
  return reserved.some((topics) => filtersOverlap(filter, topics)) ? hides : undefined;
}

/**
 * Why `identity` may not subscribe to `filter`, or undefined when it may.
 *
 * @example
 * ```ts
 * import { subscribeRefusal } from "./access.ts";
 * subscribeRefusal({ owner: "plugin:spy", name: "spy" }, "fn/#"); // 'plugin:spy may not subscribe to "fn/#": ...'
 * subscribeRefusal({ owner: "plugin:spy", name: "spy" }, "#"); // undefined
 * ```
 */
export function subscribeRefusal(identity: BusIdentity, filter: string): string | undefined {
  const refused = `${identity.owner} may not subscribe to ${JSON.stringify(filter)}`;
  if (filter.startsWith("$")) return `${refused}: $-topics are the system's`;
  if (filterCovers("fn/#", filter)) {
    return `${refused}: fn/ carries function calls, which only the gateway serves, for each ` +
      `owner (a plugin serves through its "functions", a worker through the functions it registers)`;
  }
  if (!identity.carriesReplies && REPLY_FILTERS.some((reply) => filterCovers(reply, filter))) {
    return `${refused}: a reply topic is private to the connection it answers (publishing there is allowed)`;
  }
  const allowed = identity.grant?.subscribe;
  if (allowed && !allowed.some((grant) => filterCovers(grant, filter))) {
    return `${refused}: its bus grant allows subscribing within ${list(allowed)}`;
  }
  return undefined;
}

/**
 * Why `identity` may not publish on `topic` (or send a request there), or
 * undefined when it may. A request on `fn/...` is a function call, not a
 * publish: pass `request` to allow it on any owner's functions.
 *
 * @example
 * ```ts
 * import { publishRefusal } from "./access.ts";
 * publishRefusal({ owner: "plugin:spy", name: "spy" }, "fn/auth/check"); // 'plugin:spy may not publish on ...'
 * publishRefusal({ owner: "plugin:spy", name: "spy" }, "fn/auth/check", true); // undefined
 * ```
 */
export function publishRefusal(
  identity: BusIdentity,
  topic: string,
  request = false,
): string | undefined {
  const refused = `${identity.owner} may not publish on ${JSON.stringify(topic)}`;
  if (topic.startsWith("$")) return `${refused}: $-topics are the system's`;
  if (topic === "fn" || topic.startsWith("fn/")) {
    const owner = topic.split("/")[1];
    if (request || (identity.name !== undefined && owner === identity.name)) return undefined;
    return `${refused}: it is function ${JSON.stringify(owner ?? "")}'s namespace; call a ` +
      `function with ctx.call (or a request)`;
  }
  const allowed = identity.grant?.publish;
  if (allowed && !allowed.some((grant) => filterCovers(grant, topic))) {
    return `${refused}: its bus grant allows publishing within ${list(allowed)}`;
  }
  return undefined;
}

function list(filters: string[]): string {
  return filters.length === 0 ? "nothing" : filters.map((f) => JSON.stringify(f)).join(", ");
}
