/**
 * Example Node/Deno worker. Functions: echo, add, fail (throws, to show the
 * stack a caller gets), relay (calls the function it is given through the
 * gateway), sleep (aborts when the caller gives up). Every message
 * published on `demo/in/<rest>` is republished on `demo/out/<rest>`.
 *
 * ```sh
 * deno run -A examples/workers/node/worker.ts    # Deno runs the TypeScript as is
 * ```
 *
 * @module
 */

import { Worker } from "../../../sdk/node/worker.ts";

const worker = new Worker(); // as many calls at once as the config's concurrency
worker
  .function("echo", (args) => args)
  .function("add", (args: { a: number; b: number }) => args.a + args.b)
  .function("fail", (args) => {
    throw new RangeError(`cannot handle ${JSON.stringify(args)}`);
  })
  .function(
    "relay",
    (args: { function: string; args?: unknown }) => worker.call(args.function, args.args ?? null),
  )
  .function("sleep", (args: { seconds?: number }, ctx) =>
    new Promise((resolve) => {
      const timer = setTimeout(
        () => resolve({ slept: args.seconds ?? 1 }),
        (args.seconds ?? 1) * 1000,
      );
      ctx.signal.addEventListener("abort", () => {
        clearTimeout(timer);
        resolve({ cancelled: true });
      });
    }))
  .subscribe("demo/in/#", (event) => {
    worker.publish(`demo/out/${event.topic.split("/").slice(2).join("/")}`, event.payload, {
      via: worker.name,
    });
  });
await worker.run();
