/**
 * Descriptor exhaustion, for real: `emfile_server.ts` runs under
 * `prlimit --nofile=128:128` and the test opens more connections than that.
 * See docs/fd-exhaustion.md.
 */

import { assert, assertEquals, assertMatch, assertStringIncludes } from "../helpers/assert.ts";

const DESCRIPTOR_LIMIT = 128;
const SERVER = new URL("./emfile_server.ts", import.meta.url).pathname;
const encoder = new TextEncoder();
const decoder = new TextDecoder();

/** Rejects with `what` when `promise` takes longer than `ms`. */
async function within<T>(promise: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`timed out after ${ms} ms: ${what}`)), ms);
  });
  try {
    return await Promise.race([promise, timeout]);
  } finally {
    clearTimeout(timer);
  }
}

/** A TCP client of the line protocol of emfile_server.ts. */
class LineClient {
  #pending = "";
  constructor(readonly conn: Deno.TcpConn) {}

  static async connect(port: number): Promise<LineClient> {
    return new LineClient(await Deno.connect({ hostname: "127.0.0.1", port }));
  }

  /** The next line, or null at end of stream. */
  async line(): Promise<string | null> {
    const chunk = new Uint8Array(4096);
    for (let reads = 0; reads < 100; reads++) {
      const end = this.#pending.indexOf("\n");
      if (end >= 0) {
        const line = this.#pending.slice(0, end);
        this.#pending = this.#pending.slice(end + 1);
        return line;
      }
      const n = await this.conn.read(chunk);
      if (n === null) return null;
      this.#pending += decoder.decode(chunk.subarray(0, n));
    }
    throw new Error("no line in 100 reads");
  }

  async ask(text: string): Promise<string | null> {
    await this.conn.write(encoder.encode(text + "\n"));
    return await within(this.line(), 5000, `answer to ${text}`);
  }

  close(): void {
    try {
      this.conn.close();
    } catch {
      // Already closed by the server.
    }
  }
}

interface Server {
  child: Deno.ChildProcess;
  stderr: Promise<string>;
  tcpPort: number;
  httpPort: number;
  limit: number;
  budget: number;
}

async function startServer(): Promise<Server> {
  const child = new Deno.Command("prlimit", {
    args: [
      `--nofile=${DESCRIPTOR_LIMIT}:${DESCRIPTOR_LIMIT}`,
      Deno.execPath(),
      "run",
      "--allow-net=127.0.0.1",
      "--allow-run=sh",
      SERVER,
    ],
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
    env: { NO_COLOR: "1" },
  }).spawn();
  const stderr = new Response(child.stderr).text();
  const reader = child.stdout.pipeThrough(new TextDecoderStream()).getReader();
  let text = "";
  for (let reads = 0; reads < 100 && !text.includes("\n"); reads++) {
    const { value, done } = await within(reader.read(), 20_000, "the server's ports");
    if (done) break;
    text += value;
  }
  await reader.cancel();
  if (!text.includes("\n")) throw new Error(`the server did not start: ${await stderr}`);
  return { child, stderr, ...JSON.parse(text) };
}

/** Stops the server and returns its stderr; asserts it was still running, not exited. */
async function stopServer(server: Server): Promise<string> {
  server.child.kill("SIGTERM");
  const status = await server.child.status;
  const stderr = await server.stderr;
  assertEquals(status.signal, "SIGTERM", `the server was alive until killed; stderr:\n${stderr}`);
  return stderr;
}

/** Waits (at most 5 s) until the server counts `open` admitted connections. */
async function waitForOpen(client: LineClient, open: number): Promise<void> {
  for (let tries = 0; tries < 50; tries++) {
    if (JSON.parse((await client.ask("stats"))!).open === open) return;
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
  throw new Error(`the server never got down to ${open} open connections`);
}

Deno.test({
  name: "TCP over the descriptor budget: refused cleanly, existing served, new ones after",
  async fn() {
    const server = await startServer();
    assertEquals([server.limit, server.budget], [DESCRIPTOR_LIMIT, 64]);
    const existing = await LineClient.connect(server.tcpPort);
    assertMatch((await within(existing.line(), 5000, "greeting"))!, /^hello c/);

    const clients: LineClient[] = [];
    const greetings: string[] = [];
    for (let i = 0; i < DESCRIPTOR_LIMIT + 20; i++) {
      const client = await LineClient.connect(server.tcpPort);
      clients.push(client);
      greetings.push((await within(client.line(), 5000, `greeting of client ${i}`)) ?? "EOF");
    }
    const admitted = greetings.filter((line) => line.startsWith("hello ")).length;
    const refused = greetings.filter((line) => line.startsWith("refused ")).length;
    assertEquals(admitted + refused, clients.length, "every connection is answered at once");
    assert(refused > 0, "some connections were refused");
    assertEquals(admitted, server.budget - 1, "the budget less the connection opened first");
    assertStringIncludes(greetings.at(-1)!, "its descriptor budget (open files limit 128");
    assertEquals(await existing.ask("still there?"), "echo still there?");

    for (const client of clients) client.close();
    await waitForOpen(existing, 1);
    const fresh = await LineClient.connect(server.tcpPort);
    assertMatch((await within(fresh.line(), 5000, "greeting after recovery"))!, /^hello c/);
    assertEquals(await fresh.ask("back"), "echo back");
    fresh.close();
    existing.close();
    await stopServer(server);
  },
});

Deno.test({
  name: "Deno.serve hitting EMFILE does not end the process; TCP keeps serving and recovers",
  async fn() {
    const server = await startServer();
    const existing = await LineClient.connect(server.tcpPort);
    assertMatch((await within(existing.line(), 5000, "greeting"))!, /^hello c/);
    const keepAlive = await Deno.connect({ hostname: "127.0.0.1", port: server.httpPort });
    const askHttp = async () => {
      await keepAlive.write(encoder.encode("GET / HTTP/1.1\r\nhost: test\r\n\r\n"));
      const chunk = new Uint8Array(1024);
      const n = await within(keepAlive.read(chunk), 5000, "HTTP answer on a kept-alive connection");
      return decoder.decode(chunk.subarray(0, n ?? 0));
    };
    assertMatch(await askHttp(), /^HTTP\/1\.1 200/);

    // HTTP connections are not admitted by the manager: they use up the table.
    const flood: Deno.TcpConn[] = [];
    for (let i = 0; i < DESCRIPTOR_LIMIT + 20; i++) {
      try {
        flood.push(await Deno.connect({ hostname: "127.0.0.1", port: server.httpPort }));
      } catch {
        break; // the serve loop ended and its socket closed: connection refused
      }
    }
    await new Promise((resolve) => setTimeout(resolve, 500));
    assertEquals(await existing.ask("during"), "echo during");
    assertMatch(await askHttp(), /^HTTP\/1\.1 200/, "kept-alive HTTP connections are still served");

    for (const conn of flood) conn.close();
    await new Promise((resolve) => setTimeout(resolve, 500));
    const fresh = await LineClient.connect(server.tcpPort);
    assertMatch((await within(fresh.line(), 5000, "greeting after recovery"))!, /^hello c/);
    assertEquals(await fresh.ask("after"), "echo after");
    fresh.close();
    existing.close();
    keepAlive.close();
    const stderr = await stopServer(server);
    assertStringIncludes(stderr, "out of file descriptors, the process keeps running");
    assertStringIncludes(stderr, "Too many open files (os error 24)");
  },
});
