/**
 * The smallest HTTP server: `Deno.serve` answering every request with
 * `Hello, world!`. The benchmarks use it as the bare baseline and as the
 * upstream behind the proxies.
 *
 * ```sh
 * deno run --allow-net bench/servers/hello.ts 8000
 * ```
 *
 * @module
 */

const port = Number(Deno.args[0]);
if (!Number.isInteger(port)) {
  console.error("usage: hello.ts PORT");
  Deno.exit(2);
}

Deno.serve(
  { hostname: "127.0.0.1", port, onListen: () => {} },
  () => new Response("Hello, world!\n"),
);
