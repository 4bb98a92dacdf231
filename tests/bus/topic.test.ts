import { assert, assertEquals, assertMatch } from "../helpers/assert.ts";
import { filterError, MAX_TOPIC_BYTES, topicError, TopicTrie } from "../../src/bus/topic.ts";

/** [filter, topic, whether the filter matches the topic] */
const MATCHES: [string, string, boolean][] = [
  ["#", "a", true],
  ["#", "a/b/c", true],
  ["#", "/", true],
  ["#", "$SYS", false],
  ["#", "$SYS/uptime", false],
  ["+", "a", true],
  ["+", "a/b", false],
  ["+", "/", false],
  ["+", "$SYS", false],
  ["+/+", "a/b", true],
  ["+/+", "/", true],
  ["+/+", "a", false],
  ["+/+", "a/b/c", false],
  ["+/+", "$SYS/uptime", false],
  ["+/#", "$SYS/uptime", false],
  ["+/a", "/a", true],
  ["a/#", "a", true],
  ["a/#", "a/", true],
  ["a/#", "a/b", true],
  ["a/#", "a/b/c", true],
  ["a/#", "ab", false],
  ["a/#", "b/a", false],
  ["a/b/#", "a", false],
  ["a/+", "a/b", true],
  ["a/+", "a/", true],
  ["a/+", "a", false],
  ["a/+", "a/b/c", false],
  ["a/+/c", "a/b/c", true],
  ["a/+/c", "a//c", true],
  ["a/+/c", "a/b/d", false],
  ["+/b/#", "a/b", true],
  ["+/b/#", "a/b/c/d", true],
  ["+/b/#", "$a/b", false],
  ["$SYS/#", "$SYS", true],
  ["$SYS/#", "$SYS/uptime", true],
  ["$SYS/+", "$SYS/uptime", true],
  ["$SYS/+", "$SYS", false],
  ["/a", "/a", true],
  ["/a", "a", false],
  ["/#", "/", true],
  ["/#", "/a/b", true],
  ["/#", "a", false],
  ["a//b", "a//b", true],
  ["a//b", "a/b", false],
  ["a", "a", true],
  ["a", "a/", false],
  ["a", "A", false],
];

Deno.test("each filter matches exactly the topics MQTT says it does", () => {
  for (const [filter, topic, expected] of MATCHES) {
    const trie = new TopicTrie<string>();
    trie.add(filter, filter);
    assertEquals(trie.match(topic), expected ? [filter] : [], `${filter} on ${topic}`);
  }
});

Deno.test("filters sharing one trie do not disturb each other's matches", () => {
  const trie = new TopicTrie<string>();
  for (const [filter] of MATCHES) trie.add(filter, filter);
  for (const [filter, topic, expected] of MATCHES) {
    assertEquals(trie.match(topic).includes(filter), expected, `${filter} on ${topic}`);
  }
});

Deno.test("topics are validated with the reason", () => {
  for (const topic of ["a", "a/b", "/", "//", "a//b", "$SYS/uptime", "é".repeat(32767)]) {
    assertEquals(topicError(topic), undefined, topic);
  }
  assertEquals(topicError(""), "topic is empty");
  assertMatch(topicError("a/+/b")!, /^topic "a\/\+\/b" contains a wildcard \(\+ or #\)/);
  assertMatch(topicError("a/#")!, /contains a wildcard/);
  assertEquals(topicError("a\0b"), 'topic "a\\u0000b" contains NUL');
  assertEquals(
    topicError("a".repeat(MAX_TOPIC_BYTES + 1)),
    "topic is 65536 bytes long in UTF-8, more than 65535",
  );
  assertEquals(
    topicError("é".repeat(32768)),
    "topic is 65536 bytes long in UTF-8, more than 65535",
  );
});

Deno.test("filters are validated with the reason", () => {
  for (const filter of ["a", "+", "#", "/", "+/+", "a/+/#", "a//+", "$SYS/#", "/#"]) {
    assertEquals(filterError(filter), undefined, filter);
  }
  assertEquals(filterError(""), "filter is empty");
  assertEquals(filterError("a\0"), 'filter "a\\u0000" contains NUL');
  assertEquals(filterError("a+"), 'filter "a+": "+" must be a whole level, found "a+"');
  assertEquals(filterError("a/+b/c"), 'filter "a/+b/c": "+" must be a whole level, found "+b"');
  assertEquals(filterError("a/#/b"), 'filter "a/#/b": "#" must be the whole last level');
  assertEquals(filterError("#/a"), 'filter "#/a": "#" must be the whole last level');
  assertEquals(filterError("a/b#"), 'filter "a/b#": "#" must be the whole last level');
  assertEquals(
    filterError("+/".repeat(32768)),
    "filter is 65536 bytes long in UTF-8, more than 65535",
  );
});

Deno.test("adding an invalid filter throws a TypeError with the reason", () => {
  const trie = new TopicTrie<number>();
  try {
    trie.add("a/#/b", 1);
    throw new Error("add did not throw");
  } catch (error) {
    assert(error instanceof TypeError, String(error));
    assertEquals(error.message, 'filter "a/#/b": "#" must be the whole last level');
  }
  assertEquals(trie.size, 0);
});

Deno.test("a (filter, value) pair is stored once and removed once", () => {
  const trie = new TopicTrie<string>();
  assertEquals(trie.add("a/+", "x"), true);
  assertEquals(trie.add("a/+", "x"), false);
  assertEquals(trie.add("a/+", "y"), true);
  assertEquals(trie.add("a/#", "x"), true);
  assertEquals(trie.size, 3);
  assertEquals(trie.match("a/b").toSorted(), ["x", "x", "y"]);

  assertEquals(trie.remove("a/+", "x"), true);
  assertEquals(trie.remove("a/+", "x"), false);
  assertEquals(trie.remove("a/+", "z"), false);
  assertEquals(trie.remove("b/+", "x"), false);
  assertEquals(trie.size, 2);
  assertEquals(trie.match("a/b").toSorted(), ["x", "y"]);
});

Deno.test("removing a filter leaves the filters sharing its levels", () => {
  const trie = new TopicTrie<string>();
  for (const filter of ["a", "a/b", "a/b/c", "a/+/c", "a/#", "+/b/c"]) trie.add(filter, filter);
  assertEquals(trie.remove("a/b/c", "a/b/c"), true);
  assertEquals(trie.match("a/b/c").toSorted(), ["+/b/c", "a/#", "a/+/c"]);
  assertEquals(trie.remove("a/+/c", "a/+/c"), true);
  assertEquals(trie.remove("a/#", "a/#"), true);
  assertEquals(trie.match("a/b/c"), ["+/b/c"]);
  assertEquals(trie.match("a/b"), ["a/b"]);
  assertEquals(trie.match("a"), ["a"]);
  for (const filter of ["a", "a/b", "+/b/c"]) trie.remove(filter, filter);
  assertEquals(trie.size, 0);
  assertEquals(trie.match("a/b/c"), []);
  trie.add("a/b/c", "again");
  assertEquals(trie.match("a/b/c"), ["again"]);
});

Deno.test("match appends to the array it is given", () => {
  const trie = new TopicTrie<number>();
  trie.add("a/+", 1);
  trie.add("#", 2);
  const into = [0];
  assertEquals(trie.match("a/b", into), into);
  assertEquals(into.toSorted(), [0, 1, 2]);
});
