/**
 * The process `socket.test.ts` runs under `prlimit --nofile=N:N`: the real
 * supervisor with one Python example worker, logging JSON lines to stderr,
 * with the descriptor guard installed as the gateway installs it.
 *
 * It prints `{"socket"}` (the workers socket's path) as one line on stdout,
 * then answers each line on stdin with one JSON line: `call` with
 * `{"value"}` or `{"error"}` of `python.add(1, 2)`, `status` with the
 * instance's `{"pid","restarts","state"}`. At the end of stdin it stops its
 * worker and exits 0.
 *
 * @module
 */

import { installDescriptorGuard } from "../../src/connections/fd_guard.ts";
import { configureLogging } from "../../src/observability/log.ts";
import { EXAMPLES, startWorkers } from "./harness.ts";

await configureLogging({ level: "info", format: "json" });
installDescriptorGuard();
const workers = await startWorkers([{ name: "python", command: EXAMPLES.python }]);
const { socket } = workers.supervisor.status() as { socket: string };
console.log(JSON.stringify({ socket }));

const lines = Deno.stdin.readable.pipeThrough(new TextDecoderStream());
let pending = "";
for await (const chunk of lines) {
  pending += chunk;
  for (let end; (end = pending.indexOf("\n")) >= 0; pending = pending.slice(end + 1)) {
    const command = pending.slice(0, end);
    if (command === "call") {
      const answer = await workers.call("python.add", { a: 1, b: 2 }, 5000).then(
        (value) => ({ value }),
        (error: Error) => ({ error: error.message }),
      );
      console.log(JSON.stringify(answer));
    } else if (command === "status") {
      const [{ pid, restarts, state }] = workers.status("python").instances;
      console.log(JSON.stringify({ pid, restarts, state }));
    }
  }
}
await workers[Symbol.asyncDispose]();
// The log sink's flush timer would keep the process alive.
Deno.exit(0);
