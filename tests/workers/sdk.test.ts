/**
 * The Python, PHP and Node SDKs (the Node one on Node and on Deno), each in a
 * real process started by the real supervisor, called through the bus the way
 * HTTP routes and plugins call them.
 */

import type { BusMessage } from "../../src/bus/message.ts";
import { FunctionCallError } from "../../src/functions/call.ts";
import {
  assert,
  assertEquals,
  assertMatch,
  assertStringIncludes,
  rejectionOf,
} from "../helpers/assert.ts";
import { EXAMPLES, nodeBundle, startWorkers, waitFor } from "./harness.ts";

const SDKS = ["python", "php", "node", "deno"] as const;

/** How each SDK names the error the example's `fail` raises, and where its traceback points. */
const FAILURES: Record<(typeof SDKS)[number], { type: string; where: RegExp }> = {
  python: { type: "ValueError", where: /worker\.py", line \d+, in fail/ },
  php: { type: "InvalidArgumentException", where: /worker\.php:\d+/ },
  node: { type: "RangeError", where: /worker\.mjs:\d+/ },
  deno: { type: "RangeError", where: /worker\.ts:\d+/ },
};

const failure = (promise: Promise<unknown>) => rejectionOf(promise, FunctionCallError);

Deno.test("every SDK registers, answers, fails with a traceback, honours deadlines and uses the bus", async (t) => {
  await using workers = await startWorkers([
    { name: "python", command: EXAMPLES.python, env: { PHP_WORKER: "php" } },
    { name: "php", command: EXAMPLES.php },
    { name: "node", command: ["node", await nodeBundle()] },
    { name: "deno", command: EXAMPLES.deno },
  ]);

  for (const sdk of SDKS) {
    await t.step(`${sdk}: functions answer with their results`, async () => {
      assertEquals(await workers.call(`worker:${sdk}.add`, { a: 2, b: 40 }), 42);
      const args = { text: "ünïcødé 𝄞", list: [1, 2.5, null, true], nested: { a: { b: "c" } } };
      assertEquals(await workers.call(`${sdk}.echo`, args), args);
    });

    await t.step(
      `${sdk}: a raised error reaches the caller with its type and traceback`,
      async () => {
        const error = await failure(workers.call(`${sdk}.fail`, { id: 7 }));
        assertEquals(error.type, FAILURES[sdk].type);
        assertStringIncludes(error.message, "cannot handle");
        assertMatch(error.traceback ?? "", FAILURES[sdk].where);
        assertEquals(error.status, 500);
      },
    );

    await t.step(
      `${sdk}: a call past its deadline fails with timeout and the worker goes on`,
      async () => {
        const error = await failure(workers.call(`${sdk}.sleep`, { seconds: 0.6 }, 150));
        assertEquals([error.type, error.status], ["timeout", 504]);
        // The gateway forgets the call (it sends a cancel); the worker still answers.
        await waitFor(
          "the call to leave the instance",
          () => workers.status(sdk).instances[0].inFlight === 0,
        );
        assertEquals(await workers.call(`${sdk}.add`, { a: 1, b: 1 }), 2);
      },
    );
  }

  await t.step("python calls a PHP function through the gateway", async () => {
    const result = await workers.call("python.title", { name: "ada lovelace" }) as {
      php: { title: string; pid: number };
    };
    assertEquals(result.php.title, "Ada Lovelace");
    assertEquals(result.php.pid, workers.status("php").instances[0].pid);
  });

  await t.step("PHP, Node and Deno call a Python function through the gateway", async () => {
    for (const sdk of ["php", "node", "deno"]) {
      const relayed = { function: "worker:python.add", args: { a: 2, b: 3 } };
      assertEquals(await workers.call(`${sdk}.relay`, relayed), 5, sdk);
    }
  });

  await t.step("SIGTERM makes each SDK finish and exit 0 (then it is restarted)", async () => {
    for (const sdk of SDKS) {
      const [instance] = workers.status(sdk).instances;
      Deno.kill(instance.pid, "SIGTERM");
      const back = await waitFor(`${sdk} to be restarted`, () => {
        const [now] = workers.status(sdk).instances;
        return now.restarts === 1 && now.state === "running" && now;
      });
      assertEquals([back.lastExit?.code, back.lastExit?.signal], [0, null], sdk);
      assertEquals(await workers.call(`${sdk}.add`, { a: 1, b: 2 }), 3);
    }
  });

  await t.step(
    "each SDK republishes what it is subscribed to, text and binary intact",
    async () => {
      const received: BusMessage[] = [];
      const subscription = workers.bus.subscribe("demo/out/#", (message) => {
        received.push(message);
      }, { owner: "test" });
      const source = { listener: "test", protocol: "gateway" } as const;
      const text = new TextEncoder().encode("héllo wörld");
      const binary = new Uint8Array([0, 255, 1, 128, 10, 13]);
      workers.bus.publish({ topic: "demo/in/text", payload: text, source, meta: {} });
      workers.bus.publish({ topic: "demo/in/binary", payload: binary, source, meta: {} });
      await waitFor("8 republished messages", () => received.length >= 8);
      subscription.unsubscribe();
      for (
        const [topic, payload] of [["demo/out/text", text], ["demo/out/binary", binary]] as const
      ) {
        const copies = received.filter((message) => message.topic === topic);
        assertEquals(copies.map((message) => message.meta.via).sort(), [
          "deno",
          "node",
          "php",
          "python",
        ]);
        for (const copy of copies) assertEquals([...copy.payload], [...payload], copy.meta.via);
        assert(copies.every((copy) => copy.source.protocol === "worker"));
      }
    },
  );
});
