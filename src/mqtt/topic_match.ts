/**
 * MQTT topic filter matching for ACLs and bridge mappings: whether a filter
 * matches a topic, and whether a subscription filter lies within an allowed
 * filter. As in MQTT, a filter starting with a wildcard does not match topics
 * starting with `$`.
 *
 * @module
 */

/**
 * Whether `filter` (with `+` and `#`) matches `topic`.
 *
 * @example
 * ```ts
 * import { filterMatches } from "./topic_match.ts";
 * filterMatches("sensors/+/temp", "sensors/a/temp"); // true
 * filterMatches("#", "$SYS/uptime"); // false
 * ```
 */
export function filterMatches(filter: string, topic: string): boolean {
  if (topic.startsWith("$") && (filter.startsWith("+") || filter.startsWith("#"))) return false;
  const f = filter.split("/");
  const t = topic.split("/");
  for (let i = 0; i < f.length; i++) {
    if (f[i] === "#") return true;
    if (i >= t.length) return false;
    if (f[i] !== "+" && f[i] !== t[i]) return false;
  }
  return f.length === t.length;
}

/**
 * Whether every topic `inner` matches is also matched by `outer`: a client
 * allowed `outer` may subscribe to `inner`.
 *
 * @example
 * ```ts
 * import { filterCovers } from "./topic_match.ts";
 * filterCovers("sensors/#", "sensors/+/temp"); // true
 * filterCovers("sensors/+/temp", "sensors/#"); // false
 * ```
 */
export function filterCovers(outer: string, inner: string): boolean {
  if (inner.startsWith("$") && (outer.startsWith("+") || outer.startsWith("#"))) return false;
  const o = outer.split("/");
  const n = inner.split("/");
  for (let i = 0; i < o.length; i++) {
    if (o[i] === "#") return true;
    if (i >= n.length) return false;
    if (n[i] === "#") return false;
    if (o[i] !== "+" && (n[i] === "+" || o[i] !== n[i])) return false;
  }
  return o.length === n.length;
}
