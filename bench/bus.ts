/**
 * Bus micro-benchmark, in one process and one run:
 *
 * - publish → subscriber throughput with 1, 100 and 10,000 subscriptions on
 *   distinct filters, a third each exact (`dev/<n>/temp`), `+`
 *   (`+/<n>/temp`) and `#` (`dev/<n>/#`), so that each published message
 *   matches three of them (one with a single subscription). Messages are
 *   published in batches smaller than a queue, and each batch is fully
 *   delivered before the next, so nothing is dropped;
 * - `TopicTrie.match` over 10,000 such filters against the baseline, a linear
 *   scan testing every filter (pre-split into levels) against the topic, and
 *   the ratio of the two;
 * - an HTTP → plugin function call's data path: `callFunction` /
 *   `serveFunction` carrying values (one `JSON.stringify`, of the response,
 *   and the two structured clones to and from the plugin's Worker) against the
 *   baseline of JSON at every bus hop (three stringifies, two parses and the
 *   same two clones), with the same request arguments and result.
 *
 * Each case runs a short warm-up and then `BENCH_SECONDS` (default 2) seconds.
 *
 * ```sh
 * deno run -A bench/bus.ts     # or: deno task bench bus
 * BENCH_SECONDS=1 deno run -A bench/bus.ts
 * ```
 *
 * @module
 */

import { Bus } from "../src/bus/bus.ts";
import type { BusMessage } from "../src/bus/message.ts";
import { TopicTrie } from "../src/bus/topic.ts";
import { callFunction, serveFunction } from "../src/functions/call.ts";

const SECONDS = Number(Deno.env.get("BENCH_SECONDS") ?? 2);
const WARMUP_MS = 300;
/** Messages published between waits for delivery; below the default queue size of 1024. */
const BATCH = 512;
const SUBSCRIPTION_COUNTS = [1, 100, 10_000];
const MATCH_FILTERS = 10_000;

/** `count` distinct filters: for group n, `dev/n/temp`, `+/n/temp` and `dev/n/#` in turn. */
function filters(count: number): string[] {
  const kinds = [
    (n: number) => `dev/${n}/temp`,
    (n: number) => `+/${n}/temp`,
    (n: number) => `dev/${n}/#`,
  ];
  return Array.from({ length: count }, (_, i) => kinds[i % 3](Math.floor(i / 3)));
}

/** One topic per filter group, each matched by every filter of its group. */
function topics(filterCount: number): string[] {
  return Array.from({ length: Math.ceil(filterCount / 3) }, (_, n) => `dev/${n}/temp`);
}

/** Publishes round-robin on `topics(count)` with `count` subscriptions; rates per second. */
async function measureBus(count: number) {
  const bus = new Bus();
  let delivered = 0;
  const handler = () => {
    delivered++;
  };
  filters(count).forEach((filter, i) => bus.subscribe(filter, handler, { owner: `o${i % 100}` }));
  const messages: BusMessage[] = topics(count).map((topic) => ({
    topic,
    payload: new Uint8Array(16),
    source: { listener: "bench", protocol: "gateway" },
    meta: {},
  }));

  let published = 0;
  let queued = 0;
  const runFor = async (ms: number) => {
    const deadline = performance.now() + ms;
    while (performance.now() < deadline) {
      for (let i = 0; i < BATCH; i++) {
        queued += bus.publish(messages[published++ % messages.length]);
      }
      // Each subscription drains in a microtask: one await usually lets every handler run.
      while (delivered < queued) await null;
    }
  };
  await runFor(WARMUP_MS);
  published = queued = delivered = 0;
  const start = performance.now();
  await runFor(SECONDS * 1000);
  const seconds = (performance.now() - start) / 1000;
  return {
    published: published / seconds,
    delivered: delivered / seconds,
    perMessage: delivered / published,
  };
}

/** Lookups per second of `lookup` over `topics`, and the matches it found per lookup. */
function measureMatch(topics: string[], lookup: (topic: string) => number) {
  let lookups = 0;
  let found = 0;
  const runFor = (ms: number) => {
    const deadline = performance.now() + ms;
    while (performance.now() < deadline) {
      for (let i = 0; i < 1024; i++) found += lookup(topics[lookups++ % topics.length]);
    }
  };
  runFor(WARMUP_MS);
  lookups = found = 0;
  const start = performance.now();
  runFor(SECONDS * 1000);
  return { perSecond: lookups / ((performance.now() - start) / 1000), perLookup: found / lookups };
}

/** Whether a filter, split into levels, matches a topic split into levels (MQTT rules). */
function levelsMatch(filter: string[], topic: string[]): boolean {
  if (topic[0].startsWith("$") && (filter[0] === "+" || filter[0] === "#")) return false;
  for (let i = 0; i < filter.length; i++) {
    if (filter[i] === "#") return true;
    if (i === topic.length || (filter[i] !== "+" && filter[i] !== topic[i])) return false;
  }
  return filter.length === topic.length;
}

const format = (value: number) => Math.round(value).toLocaleString("en-US");

console.log(`bus publish → subscriber, ${SECONDS} s per case, batches of ${BATCH}`);
console.log("| subscriptions | matches/message | published/s | delivered/s |");
console.log("| ---: | ---: | ---: | ---: |");
for (const count of SUBSCRIPTION_COUNTS) {
  const result = await measureBus(count);
  console.log(
    `| ${format(count)} | ${result.perMessage.toFixed(2)} | ${format(result.published)} | ${
      format(result.delivered)
    } |`,
  );
}

const matchFilters = filters(MATCH_FILTERS);
const matchTopics = topics(MATCH_FILTERS);
const trie = new TopicTrie<number>();
matchFilters.forEach((filter, i) => trie.add(filter, i));
const matched: number[] = [];
const trieResult = measureMatch(matchTopics, (topic) => {
  matched.length = 0;
  return trie.match(topic, matched).length;
});
const splitFilters = matchFilters.map((filter) => filter.split("/"));
const scanResult = measureMatch(matchTopics, (topic) => {
  const levels = topic.split("/");
  let matches = 0;
  for (const filter of splitFilters) if (levelsMatch(filter, levels)) matches++;
  return matches;
});

console.log(`\ntopic matching over ${format(MATCH_FILTERS)} filters, ${SECONDS} s per case`);
console.log("| matcher | matches/lookup | lookups/s | × scan |");
console.log("| --- | ---: | ---: | ---: |");
for (
  const [name, result] of [["TopicTrie.match", trieResult], ["linear scan", scanResult]] as const
) {
  console.log(
    `| ${name} | ${result.perLookup.toFixed(2)} | ${format(result.perSecond)} | ${
      (result.perSecond / scanResult.perSecond).toFixed(1)
    } |`,
  );
}

/** The arguments of a typical JSON POST, as the function target builds them. */
const CALL_ARGS = {
  method: "POST",
  path: "/orders",
  url: "http://gateway.local/orders",
  params: {},
  query: { dry: "1" },
  headers: Object.fromEntries(
    Array.from({ length: 10 }, (_, i) => [`x-header-${i}`, `value-${i}-`.repeat(4)]),
  ),
  body: JSON.stringify({ items: Array.from({ length: 20 }, (_, i) => ({ sku: `s${i}`, qty: i })) }),
  clientIp: "192.0.2.1",
  requestId: "bench-request",
};
const CALL_RESULT = { status: 201, headers: { location: "/orders/7" }, body: { id: 7, total: 42 } };
const SOURCE = { listener: "bench", protocol: "http" } as const;
const encoder = new TextEncoder();
const decoder = new TextDecoder();

/** Calls per second of `call`, `BATCH` in flight at a time. */
async function measureCalls(call: () => Promise<unknown>): Promise<number> {
  let calls = 0;
  const runFor = async (ms: number) => {
    const deadline = performance.now() + ms;
    while (performance.now() < deadline) {
      await Promise.all(Array.from({ length: 64 }, call));
      calls += 64;
    }
  };
  await runFor(WARMUP_MS);
  calls = 0;
  const start = performance.now();
  await runFor(SECONDS * 1000);
  return calls / ((performance.now() - start) / 1000);
}

const valueBus = new Bus();
// The plugin host's part: the arguments and the result cross the Worker boundary as clones.
serveFunction(valueBus, "plugin", "create", (args) => {
  structuredClone(args);
  return structuredClone(CALL_RESULT);
});
const values = await measureCalls(async () => {
  const result = await callFunction(valueBus, "plugin.create", CALL_ARGS, {
    source: SOURCE,
    timeout: 5000,
  });
  return JSON.stringify(result);
});

// The baseline: JSON bytes at each bus hop, as calls were before they carried values.
const jsonBus = new Bus();
jsonBus.subscribe("fn/plugin/create", (message) => {
  const args = JSON.parse(decoder.decode(message.payload));
  structuredClone(args);
  message.reply!(encoder.encode(JSON.stringify(structuredClone(CALL_RESULT))));
}, { owner: "plugin", queueSize: 65536 });
const json = await measureCalls(async () => {
  const reply = await jsonBus.request(
    "fn/plugin/create",
    encoder.encode(JSON.stringify(CALL_ARGS)),
    {
      source: SOURCE,
      timeout: 5000,
    },
  );
  return JSON.stringify(JSON.parse(decoder.decode(reply.payload)));
});

console.log(`\nHTTP → plugin function call data path, ${SECONDS} s per case, 64 in flight`);
console.log("| path | calls/s | × JSON at every hop |");
console.log("| --- | ---: | ---: |");
for (const [name, rate] of [["values in process", values], ["JSON at every hop", json]] as const) {
  console.log(`| ${name} | ${format(rate)} | ${(rate / json).toFixed(2)} |`);
}
