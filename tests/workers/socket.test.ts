/**
 * The workers socket under descriptor exhaustion, for real: `socket_server.ts`
 * runs the supervisor under `prlimit --nofile=128:128` and the test opens
 * more connections to its socket than that. Its accept loop is the listeners'
 * `StreamServer`: accepting fails for a while, the worker already connected
 * is served, and a restarted worker connects once descriptors are free.
 */

import { assert, assertEquals, assertStringIncludes } from "../helpers/assert.ts";
import { waitFor } from "./harness.ts";

const DESCRIPTOR_LIMIT = 128;
const SERVER = new URL("./socket_server.ts", import.meta.url).pathname;
const encoder = new TextEncoder();

/** socket_server.ts in its own process, asked one line at a time. */
class Server {
  /** Everything the server logged so far. */
  stderr = "";
  readonly #child: Deno.ChildProcess;
  readonly #stdin: WritableStreamDefaultWriter<Uint8Array>;
  readonly #stdout: ReadableStreamDefaultReader<string>;
  readonly #logging: Promise<void>;
  #pending = "";

  constructor() {
    this.#child = new Deno.Command("prlimit", {
      args: [
        `--nofile=${DESCRIPTOR_LIMIT}:${DESCRIPTOR_LIMIT}`,
        Deno.execPath(),
        "run",
        "-A",
        SERVER,
      ],
      stdin: "piped",
      stdout: "piped",
      stderr: "piped",
      env: { NO_COLOR: "1" },
    }).spawn();
    this.#stdin = this.#child.stdin.getWriter();
    this.#stdout = this.#child.stdout.pipeThrough(new TextDecoderStream()).getReader();
    const stderr = this.#child.stderr.pipeThrough(new TextDecoderStream());
    this.#logging = (async () => {
      for await (const text of stderr) {
        this.stderr += text;
      }
    })();
  }

  /** The next line of stdout, parsed. */
  async line(): Promise<Record<string, unknown>> {
    let end;
    while ((end = this.#pending.indexOf("\n")) < 0) {
      const { value, done } = await this.#stdout.read();
      if (done) throw new Error(`the server exited; stderr:\n${this.stderr}`);
      this.#pending += value;
    }
    const line = this.#pending.slice(0, end);
    this.#pending = this.#pending.slice(end + 1);
    return JSON.parse(line);
  }

  async ask(command: "call" | "status"): Promise<Record<string, unknown>> {
    await this.#stdin.write(encoder.encode(command + "\n"));
    return await this.line();
  }

  /** Ends its stdin (it stops its workers and exits) and waits for it. */
  async stop(): Promise<Deno.CommandStatus> {
    await this.#stdin.close();
    await this.#stdout.cancel();
    const status = await this.#child.status;
    await this.#logging;
    return status;
  }
}

Deno.test({
  name: "the workers socket survives EMFILE: the connected worker is served, a new one connects",
  async fn() {
    const server = new Server();
    const { socket } = await server.line() as { socket: string };
    assertEquals(await server.ask("call"), { value: 3 });
    const before = await server.ask("status") as { pid: number };

    const flood: Deno.UnixConn[] = [];
    for (let i = 0; i < DESCRIPTOR_LIMIT + 40; i++) {
      flood.push(await Deno.connect({ transport: "unix", path: socket }));
    }
    await waitFor(
      "the accept loop to run out of descriptors",
      () => server.stderr.includes("workers socket: cannot accept connections"),
    );
    assertStringIncludes(server.stderr, "Too many open files (os error 24)");
    assertEquals(await server.ask("call"), { value: 3 }, "served while accepting fails");

    for (const conn of flood) conn.close();
    Deno.kill(before.pid, "SIGKILL");
    const deadline = Date.now() + 30_000;
    let after = before as { pid: number; restarts?: number; state?: string };
    while (after.restarts !== 1 || after.state !== "running") {
      if (Date.now() > deadline) throw new Error(`no restarted worker: ${JSON.stringify(after)}`);
      await new Promise((resolve) => setTimeout(resolve, 100));
      after = await server.ask("status") as typeof after;
    }
    assert(after.pid !== before.pid, "a new process");
    assertEquals(await server.ask("call"), { value: 3 });
    assertStringIncludes(server.stderr, "workers socket: accepting connections again");

    const status = await server.stop();
    assertEquals(status.code, 0, `the server exited cleanly; stderr:\n${server.stderr}`);
  },
});
