/**
 * Upstream responses that do not frame cleanly, through the real gateway
 * process with raw upstream servers: a pooled connection that carried a stray
 * byte is never reused (no client gets another client's answer), also when
 * the stray is already in the gateway's socket buffer, unreported, at the
 * moment the next request takes the connection; and a
 * response with both Content-Length and Transfer-Encoding is forwarded by its
 * chunked framing, without the stale length.
 */

import { assertEquals } from "../helpers/assert.ts";
import { startGateway } from "../helpers/gateway.ts";

const encoder = new TextEncoder();
const decoder = new TextDecoder();

/**
 * A raw HTTP/1.1 upstream: for each request head on a connection, writes what
 * `answer(path)` returns (each string a separate write, 10 ms apart).
 */
function rawUpstream(answer: (path: string) => string[]) {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const conns = new Set<Deno.Conn>();
  const serve = async (conn: Deno.Conn) => {
    conns.add(conn);
    let pending = "";
    const buffer = new Uint8Array(65536);
    try {
      for (;;) {
        const count = await conn.read(buffer);
        if (count === null) break;
        pending += decoder.decode(buffer.subarray(0, count));
        for (let end = pending.indexOf("\r\n\r\n"); end !== -1; end = pending.indexOf("\r\n\r\n")) {
          const path = pending.slice(0, end).split(" ")[1];
          pending = pending.slice(end + 4);
          for (const [i, part] of answer(path).entries()) {
            if (i > 0) await new Promise((r) => setTimeout(r, 10));
            await conn.write(encoder.encode(part));
          }
        }
      }
    } catch { /* closed by the gateway */ }
    conns.delete(conn);
    try {
      conn.close();
    } catch { /* already closed */ }
  };
  const accepting = (async () => {
    for await (const conn of listener) serve(conn);
  })();
  return {
    url: `http://127.0.0.1:${(listener.addr as Deno.NetAddr).port}`,
    async [Symbol.asyncDispose]() {
      listener.close();
      for (const conn of conns) conn.close();
      await accepting.catch(() => {});
    },
  };
}

function response(body: string): string {
  return `HTTP/1.1 200 OK\r\ncontent-length: ${body.length}\r\n\r\n${body}`;
}

function proxyConfig(upstream: string) {
  return {
    listeners: { web: { type: "http", host: "127.0.0.1", port: 0 } },
    upstreams: { api: { targets: [upstream] } },
    routes: [{ match: { path: "/*" }, target: { upstream: "api" } }],
  };
}

/** `clients` clients in a loop, each request naming itself; the answers that were not its own. */
async function misdelivered(base: string, clients: number, pauseMs: number): Promise<string[]> {
  const wrong: string[] = [];
  await Promise.all(Array.from({ length: clients }, async (_, client) => {
    for (let i = 0; i < 20; i++) {
      const path = `/client-${client}-${i}`;
      const body = await (await fetch(`${base}${path}`)).text();
      if (body !== path) wrong.push(`${path} got ${body}`);
      if (pauseMs > 0) await new Promise((r) => setTimeout(r, pauseMs));
    }
  }));
  return wrong;
}

for (
  const [name, answer] of [
    ["in the same write as the response", (path: string) => [response(path) + response("stray")]],
    [
      "as bytes past the Content-Length",
      (path: string) => [`HTTP/1.1 200 OK\r\ncontent-length: ${path.length}\r\n\r\n${path}xx`],
    ],
  ] as const
) {
  Deno.test(`a stray upstream response ${name} reaches no other client, under load`, async () => {
    await using upstream = rawUpstream(answer);
    await using gw = await startGateway(proxyConfig(upstream.url));
    assertEquals(await misdelivered(`http://127.0.0.1:${await gw.port("web")}`, 5, 0), []);
  });
}

Deno.test("a stray upstream response on an idle pooled connection reaches no client", async () => {
  await using upstream = rawUpstream((path) => [response(path), response("stray")]);
  await using gw = await startGateway(proxyConfig(upstream.url));
  // One client pausing past the stray's 10 ms: it arrives while the connection is idle.
  assertEquals(await misdelivered(`http://127.0.0.1:${await gw.port("web")}`, 1, 40), []);
});

Deno.test("Content-Length next to Transfer-Encoding is dropped, not forwarded", async () => {
  const body = "0123456789abcdef";
  await using upstream = rawUpstream(() => [
    "HTTP/1.1 200 OK\r\ncontent-length: 4\r\ntransfer-encoding: chunked\r\n\r\n" +
    `${body.length.toString(16)}\r\n${body}\r\n0\r\n\r\n`,
  ]);
  await using gw = await startGateway(proxyConfig(upstream.url));
  const base = `http://127.0.0.1:${await gw.port("web")}`;
  const conn = await Deno.connect({ hostname: "127.0.0.1", port: Number(base.split(":")[2]) });
  await conn.write(encoder.encode("GET / HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n"));
  let raw = "";
  const buffer = new Uint8Array(65536);
  for (let count = await conn.read(buffer); count !== null; count = await conn.read(buffer)) {
    raw += decoder.decode(buffer.subarray(0, count));
  }
  conn.close();
  const [head] = raw.split("\r\n\r\n");
  assertEquals(/content-length/i.test(head), false, head);
  const res = await fetch(base);
  assertEquals(await res.text(), body);
});

/**
 * An upstream that answers every request, and on demand writes a stray
 * response on each of its connections that is waiting for a request.
 */
function strayOnDemandUpstream() {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const waiting = new Set<Deno.TcpConn>();
  const open = new Set<Deno.TcpConn>();
  const serve = async (conn: Deno.TcpConn) => {
    open.add(conn);
    conn.setNoDelay(true);
    let pending = "";
    const buffer = new Uint8Array(65536);
    try {
      for (;;) {
        waiting.add(conn);
        const count = await conn.read(buffer);
        waiting.delete(conn);
        if (count === null) break;
        pending += decoder.decode(buffer.subarray(0, count));
        for (let end = pending.indexOf("\r\n\r\n"); end !== -1; end = pending.indexOf("\r\n\r\n")) {
          const path = pending.slice(0, end).split(" ")[1];
          pending = pending.slice(end + 4);
          await conn.write(encoder.encode(response(path)));
        }
      }
    } catch { /* closed by the gateway */ }
    waiting.delete(conn);
    open.delete(conn);
    try {
      conn.close();
    } catch { /* already closed */ }
  };
  const accepting = (async () => {
    for await (const conn of listener) serve(conn);
  })();
  return {
    url: `http://127.0.0.1:${(listener.addr as Deno.NetAddr).port}`,
    /** Writes `response(body)` on every connection waiting for a request; how many. */
    async sendStrays(body: string): Promise<number> {
      const targets = [...waiting];
      for (const conn of targets) await conn.write(encoder.encode(response(body)));
      return targets.length;
    },
    async [Symbol.asyncDispose]() {
      listener.close();
      for (const conn of open) conn.close();
      await accepting.catch(() => {});
    },
  };
}

/** Reads one response with a Content-Length body from a raw connection: "status body". */
async function readAnswer(conn: Deno.Conn): Promise<string> {
  let raw = "";
  const buffer = new Uint8Array(65536);
  for (;;) {
    const end = raw.indexOf("\r\n\r\n");
    if (end !== -1) {
      const length = Number(/content-length: *(\d+)/i.exec(raw.slice(0, end))?.[1] ?? 0);
      if (raw.length >= end + 4 + length) return `${raw.slice(9, 12)} ${raw.slice(end + 4)}`;
    }
    const count = await conn.read(buffer);
    if (count === null) return `closed after ${JSON.stringify(raw)}`;
    raw += decoder.decode(buffer.subarray(0, count));
  }
}

Deno.test("a stray response already in the socket when the next request comes reaches no client", async () => {
  await using upstream = strayOnDemandUpstream();
  await using gw = await startGateway(proxyConfig(upstream.url));
  const port = await gw.port("web");
  const clients = await Promise.all(
    Array.from({ length: 20 }, () => Deno.connect({ hostname: "127.0.0.1", port })),
  );
  const ask = (conn: Deno.Conn, path: string) =>
    conn.write(encoder.encode(`GET ${path} HTTP/1.1\r\nhost: x\r\n\r\n`));
  const wrong: string[] = [];
  let strays = 0;
  try {
    for (let round = 0; round < 10; round++) {
      // Fills the gateway's pool: the upstream connections now wait for a request.
      await Promise.all(clients.map(async (conn, i) => {
        await ask(conn, `/warm-${round}-${i}`);
        await readAnswer(conn);
      }));
      // The gateway runs no code while stopped: the strays and then the next
      // requests are in its socket buffers before it can see either, which is
      // how an overloaded gateway meets them.
      Deno.kill(gw.child.pid, "SIGSTOP");
      try {
        strays += await upstream.sendStrays("another client's answer");
        await Promise.all(clients.map((conn, i) => ask(conn, `/victim-${round}-${i}`)));
      } finally {
        Deno.kill(gw.child.pid, "SIGCONT");
      }
      const answers = await Promise.all(clients.map(readAnswer));
      answers.forEach((answer, i) => {
        if (answer !== `200 /victim-${round}-${i}`) wrong.push(answer);
      });
    }
  } finally {
    for (const conn of clients) conn.close();
  }
  assertEquals({ strays: strays > 0, wrong }, { strays: true, wrong: [] });
});
