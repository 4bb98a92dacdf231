/**
 * Broker ACLs: which topics a client may publish to and subscribe to, from
 * rules that apply by user name and/or client id. Filters may contain `%c`
 * (the client id) and `%u` (the user name); a filter whose substituted value
 * would contain `/`, `+` or `#` (or is missing) allows nothing. Without rules
 * everything is allowed; with rules, only what a matching rule allows.
 * Denials are logged with the client id, the user and the topic.
 *
 * @module
 */

import { getLogger } from "@logtape/logtape";
import { eventWarnings } from "../observability/rate_limited_log.ts";
import type { MqttAclRule } from "./config.ts";
import { filterCovers, filterMatches } from "./topic_match.ts";

const logger = getLogger(["gateway", "mqtt", "acl"]);
const UNSAFE_LEVEL = /[/+#]/;

/** Who is asking: the client id and, when it logged in, the user name. */
export interface AclSubject {
  clientId: string;
  username?: string;
}

/**
 * The compiled ACL of the broker.
 *
 * @example
 * ```ts
 * import { Acl } from "./acl.ts";
 * const acl = new Acl([{ user: "dev", publish: ["devices/%c/#"], subscribe: ["cmd/%u/+"] }]);
 * acl.canPublish({ clientId: "d1", username: "dev" }, "devices/d1/temp"); // true
 * acl.canPublish({ clientId: "d1", username: "dev" }, "devices/d2/temp"); // false (logged)
 * acl.canSubscribe({ clientId: "d1", username: "dev" }, "cmd/dev/+"); // true
 * acl.canReceive({ clientId: "d1", username: "dev" }, "cmd/dev/reboot"); // true
 * ```
 */
export class Acl {
  constructor(readonly rules: readonly MqttAclRule[] | undefined) {}

  /** Whether `subject` may publish on `topic`; a denial is logged. */
  canPublish(subject: AclSubject, topic: string): boolean {
    const allowed = this.#allows(subject, "publish", (filter) => filterMatches(filter, topic));
    if (!allowed) {
      eventWarnings.warn(
        logger,
        "mqtt/acl-publish",
        "ACL denied publish on {topic} by client {clientId} (user {username})",
        {
          topic,
          clientId: subject.clientId,
          username: subject.username ?? "-",
        },
      );
    }
    return allowed;
  }

  /** Whether `subject` may subscribe to `filter`; a denial is logged. */
  canSubscribe(subject: AclSubject, filter: string): boolean {
    const allowed = this.#allows(subject, "subscribe", (rule) => filterCovers(rule, filter));
    if (!allowed) {
      eventWarnings.warn(
        logger,
        "mqtt/acl-subscribe",
        "ACL denied subscribe to {topic} by client {clientId} (user {username})",
        {
          topic: filter,
          clientId: subject.clientId,
          username: subject.username ?? "-",
        },
      );
    }
    return allowed;
  }

  /**
   * Whether a message on `topic` may be delivered to `subject`: some of its
   * `subscribe` filters matches the topic. Checked on every delivery, so a
   * tightened ACL or another user taking over a session stops what it no longer allows.
   */
  canReceive(subject: AclSubject, topic: string): boolean {
    return this.#allows(subject, "subscribe", (filter) => filterMatches(filter, topic));
  }

  #allows(
    subject: AclSubject,
    action: "publish" | "subscribe",
    test: (filter: string) => boolean,
  ): boolean {
    if (!this.rules) return true;
    for (const rule of this.rules) {
      if (rule.user !== undefined && rule.user !== subject.username) continue;
      if (rule.clientId !== undefined && rule.clientId !== subject.clientId) continue;
      for (const filter of rule[action]) {
        const substituted = substitute(filter, subject);
        if (substituted !== undefined && test(substituted)) return true;
      }
    }
    return false;
  }
}

/** `filter` with `%c` and `%u` replaced, or undefined when a value cannot be one topic level. */
function substitute(filter: string, subject: AclSubject): string | undefined {
  let result = filter;
  for (const [token, value] of [["%c", subject.clientId], ["%u", subject.username]] as const) {
    if (!result.includes(token)) continue;
    if (value === undefined || value === "" || UNSAFE_LEVEL.test(value)) return undefined;
    result = result.replaceAll(token, value);
  }
  return result;
}
