/**
 * Bus topics and MQTT topic filters: validation, and {@link TopicTrie}, the
 * index that finds every filter matching a topic in time proportional to the
 * topic's depth, not to the number of filters.
 *
 * A topic is `/`-separated levels; empty levels are allowed (`a//b`, `/a`).
 * In a filter, `+` stands for exactly one level and `#`, which must be the
 * whole last level, for its parent level and any number of levels below
 * (`a/#` matches `a`, `a/b` and `a/b/c`). A topic whose first level starts
 * with `$` (`$SYS/...`) is not matched by a filter that starts with `+` or `#`.
 *
 * @module
 */

/** The MQTT limit on the UTF-8 length of topics and filters. */
export const MAX_TOPIC_BYTES = 65535;

const DOLLAR = 36; // "$"
const encoder = new TextEncoder();

/** The reason `text` is neither a topic nor a filter, whatever its wildcards, or undefined. */
function textError(kind: "topic" | "filter", text: string): string | undefined {
  if (text.length === 0) return `${kind} is empty`;
  if (text.includes("\0")) return `${kind} ${JSON.stringify(text)} contains NUL`;
  // A UTF-16 code unit takes at most 3 UTF-8 bytes: only long strings need encoding.
  if (text.length > MAX_TOPIC_BYTES / 3) {
    const bytes = encoder.encode(text).byteLength;
    if (bytes > MAX_TOPIC_BYTES) {
      return `${kind} is ${bytes} bytes long in UTF-8, more than ${MAX_TOPIC_BYTES}`;
    }
  }
  return undefined;
}

/**
 * The reason `topic` is not a valid topic to publish on, or undefined when it
 * is one: empty, containing a wildcard (`+`, `#`) or NUL, or longer than
 * 65535 bytes in UTF-8.
 *
 * @example
 * ```ts
 * import { topicError } from "./topic.ts";
 * topicError("sensors/42/temp"); // undefined
 * topicError("sensors/+/temp"); // 'topic "sensors/+/temp" contains a wildcard (+ or #)...'
 * ```
 */
export function topicError(topic: string): string | undefined {
  if (topic.includes("+") || topic.includes("#")) {
    return `topic ${
      JSON.stringify(topic)
    } contains a wildcard (+ or #); wildcards belong in subscription filters`;
  }
  return textError("topic", topic);
}

/**
 * The reason `filter` is not a valid subscription filter, or undefined when it
 * is one: empty, containing NUL, longer than 65535 bytes in UTF-8, with a `+`
 * that is not a whole level, or a `#` that is not the whole last level.
 *
 * @example
 * ```ts
 * import { filterError } from "./topic.ts";
 * filterError("sensors/+/temp"); // undefined
 * filterError("sensors/#/temp"); // 'filter "sensors/#/temp": "#" must be the whole last level'
 * ```
 */
export function filterError(filter: string): string | undefined {
  const error = textError("filter", filter);
  if (error) return error;
  const levels = filter.split("/");
  for (let i = 0; i < levels.length; i++) {
    const level = levels[i];
    if (level !== "+" && level.includes("+")) {
      return `filter ${JSON.stringify(filter)}: "+" must be a whole level, found ${
        JSON.stringify(level)
      }`;
    }
    if (level.includes("#") && (level !== "#" || i !== levels.length - 1)) {
      return `filter ${JSON.stringify(filter)}: "#" must be the whole last level`;
    }
  }
  return undefined;
}

/** One level of a {@link TopicTrie}: the filters that end here or continue below. */
class TrieNode<T> {
  /** Values of the filters that end at this level. */
  readonly values: T[] = [];
  /** Values of the filters that are this level's path and `#` (`a/#` at `a`, `#` at the root). */
  readonly rest: T[] = [];
  /** The next level when it is `+`. */
  plus: TrieNode<T> | undefined;
  /** The next level by its exact text; created with the first such filter. */
  exact: Map<string, TrieNode<T>> | undefined;
}

/**
 * Values stored under MQTT topic filters, found by topic. Each level of a
 * filter is one node, so matching costs one map lookup per topic level (plus
 * the `+` branches), however many filters there are.
 *
 * A (filter, value) pair is stored once: adding it again changes nothing. The
 * same value under two filters that both match a topic is returned twice.
 *
 * @example
 * ```ts
 * import { TopicTrie } from "./topic.ts";
 * const trie = new TopicTrie<string>();
 * trie.add("sensors/+/temp", "any sensor's temperature");
 * trie.add("sensors/#", "everything from sensors");
 * trie.match("sensors/42/temp"); // ["everything from sensors", "any sensor's temperature"]
 * trie.match("$SYS/uptime"); // []
 * ```
 */
export class TopicTrie<T> {
  readonly #root = new TrieNode<T>();
  #size = 0;

  /** The number of (filter, value) pairs stored. */
  get size(): number {
    return this.#size;
  }

  /**
   * Stores `value` under `filter`; returns false when that pair was already stored.
   * Throws a `TypeError` naming the problem when `filter` is not valid.
   */
  add(filter: string, value: T): boolean {
    const error = filterError(filter);
    if (error) throw new TypeError(error);
    const levels = filter.split("/");
    const endsWithRest = levels[levels.length - 1] === "#";
    const depth = endsWithRest ? levels.length - 1 : levels.length;
    let node = this.#root;
    for (let i = 0; i < depth; i++) {
      const level = levels[i];
      if (level === "+") {
        node = node.plus ??= new TrieNode();
        continue;
      }
      node.exact ??= new Map();
      let next = node.exact.get(level);
      if (!next) {
        next = new TrieNode();
        node.exact.set(level, next);
      }
      node = next;
    }
    const values = endsWithRest ? node.rest : node.values;
    if (values.includes(value)) return false;
    values.push(value);
    this.#size++;
    return true;
  }

  /** Removes `value` from under `filter`; returns false when that pair was not stored. */
  remove(filter: string, value: T): boolean {
    const levels = filter.split("/");
    const endsWithRest = levels[levels.length - 1] === "#";
    const depth = endsWithRest ? levels.length - 1 : levels.length;
    const path = [this.#root];
    for (let i = 0; i < depth; i++) {
      const node = path[i];
      const next = levels[i] === "+" ? node.plus : node.exact?.get(levels[i]);
      if (!next) return false;
      path.push(next);
    }
    const values = endsWithRest ? path[depth].rest : path[depth].values;
    const index = values.indexOf(value);
    if (index < 0) return false;
    values.splice(index, 1);
    this.#size--;
    // Prune the levels left empty, deepest first, so that churn does not grow the trie.
    for (let i = depth; i > 0; i--) {
      const node = path[i];
      if (node.values.length || node.rest.length || node.plus || node.exact) break;
      const parent = path[i - 1];
      if (levels[i - 1] === "+") {
        parent.plus = undefined;
      } else {
        parent.exact!.delete(levels[i - 1]);
        if (parent.exact!.size === 0) parent.exact = undefined;
      }
    }
    return true;
  }

  /**
   * Appends to `into` (a new array by default) the value of every filter
   * matching `topic`, and returns it. `topic` is assumed valid (see
   * {@link topicError}); passing a reused array keeps publishing allocation-light.
   */
  match(topic: string, into: T[] = []): T[] {
    const levels = topic.split("/");
    if (topic.charCodeAt(0) === DOLLAR) {
      // Filters starting with a wildcard never see `$` topics: skip the root's wildcards.
      const next = this.#root.exact?.get(levels[0]);
      if (next) collect(next, levels, 1, into);
    } else {
      collect(this.#root, levels, 0, into);
    }
    return into;
  }
}

/** Appends the values of `node` and its descendants that match `levels` from `index` on. */
function collect<T>(node: TrieNode<T>, levels: string[], index: number, into: T[]): void {
  const rest = node.rest;
  for (let i = 0; i < rest.length; i++) into.push(rest[i]);
  if (index === levels.length) {
    const values = node.values;
    for (let i = 0; i < values.length; i++) into.push(values[i]);
    return;
  }
  const next = node.exact?.get(levels[index]);
  if (next) collect(next, levels, index + 1, into);
  if (node.plus) collect(node.plus, levels, index + 1, into);
}
