/**
 * Upstream responses that do not frame cleanly, through the real gateway
 * process with raw upstream servers: a pooled connection that carried a stray
 * byte is never reused (no client gets another client's answer), and a
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
