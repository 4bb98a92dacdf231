/**
 * Values JSON cannot carry, in every SDK (Python, PHP, Node and Deno), each in
 * a real process started by the real supervisor: a result fails that call
 * only, with `bad_result`; call arguments and published payloads are refused
 * in the worker; no invalid frame reaches the gateway, so the instance and
 * the calls in flight on it go on.
 */

import { join } from "node:path";
import { FunctionCallError } from "../../src/functions/call.ts";
import { assertEquals, assertMatch, assertStringIncludes, rejectionOf } from "../helpers/assert.ts";
import { nodeBundle, startWorkers } from "./harness.ts";

const FIXTURES = join(import.meta.dirname!, "fixtures");
const SDKS = ["python", "php", "node", "deno"] as const;

/** Each SDK's results JSON cannot carry, and what its error message says about each. */
const UNENCODABLE: Record<(typeof SDKS)[number], Record<string, RegExp>> = {
  python: {
    nan: /Out of range float values are not JSON compliant/,
    infinity: /Out of range float values are not JSON compliant/,
    bytes: /Object of type bytes is not JSON serializable/,
    cycle: /Circular reference detected/,
  },
  php: {
    nan: /Inf and NaN cannot be JSON encoded/,
    infinity: /Inf and NaN cannot be JSON encoded/,
    bytes: /Malformed UTF-8 characters/,
    cycle: /Recursion detected/,
  },
  node: {
    nan: /NaN has no JSON form at key "score"/,
    infinity: /Infinity has no JSON form at key "1"/,
    bytes: /a Uint8Array \(bytes: send base64 text\) has no JSON form at key "value"/,
    cycle: /Converting circular structure to JSON/,
    bigint: /a BigInt \(1n\) has no JSON form at key "big"/,
  },
  deno: {
    nan: /NaN has no JSON form at key "score"/,
    infinity: /Infinity has no JSON form at key "1"/,
    bytes: /a Uint8Array \(bytes: send base64 text\) has no JSON form at key "value"/,
    cycle: /Converting circular structure to JSON/,
    bigint: /a BigInt \(1n\) has no JSON form at key "big"/,
  },
};

const failure = (promise: Promise<unknown>) => rejectionOf(promise, FunctionCallError);

Deno.test("a result JSON cannot carry fails that call only, in every SDK", async (t) => {
  await using workers = await startWorkers([
    { name: "python", command: ["python3", join(FIXTURES, "unencodable.py")] },
    { name: "php", command: ["php", join(FIXTURES, "unencodable.php")] },
    { name: "node", command: ["node", await nodeBundle(join(FIXTURES, "unencodable.ts"))] },
    {
      name: "deno",
      command: [Deno.execPath(), "run", "-A", join(FIXTURES, "unencodable.ts")],
    },
  ]);

  for (const sdk of SDKS) {
    const [{ pid }] = workers.status(sdk).instances;

    await t.step(
      `${sdk}: each such result fails with bad_result, the next call succeeds`,
      async () => {
        for (const [fn, reason] of Object.entries(UNENCODABLE[sdk])) {
          // A call in flight on the same instance is answered all the same.
          const beside = workers.call(`${sdk}.sleep`, { seconds: 0.2 });
          const error = await failure(workers.call(`${sdk}.${fn}`));
          assertEquals(error.type, "bad_result", `${sdk}.${fn}`);
          assertStringIncludes(error.message, `${sdk}.${fn} returned a value JSON cannot carry: `);
          assertMatch(error.message, reason);
          assertEquals(await beside, "slept", `${sdk}.${fn}`);
          assertEquals(await workers.call(`${sdk}.echo`, { after: fn }), { after: fn });
        }
      },
    );

    await t.step(
      `${sdk}: arguments and payloads JSON cannot carry are refused in the worker`,
      async () => {
        const refusedCall = await workers.call(`${sdk}.bad_call`) as {
          type: string;
          message: string;
        };
        assertEquals(refusedCall.type, "bad_arguments");
        assertStringIncludes(
          refusedCall.message,
          "the arguments of anyone.anything cannot be sent as JSON",
        );
        const refusedPublish = await workers.call(`${sdk}.bad_publish`) as { message: string };
        assertMatch(
          refusedPublish.message,
          /the payload published on .demo\/out\/nan. cannot be sent as JSON/,
        );
      },
    );

    await t.step(`${sdk}: the instance was never restarted`, () => {
      const [instance] = workers.status(sdk).instances;
      assertEquals([instance.pid, instance.restarts, instance.state], [pid, 0, "running"]);
    });
  }
});
