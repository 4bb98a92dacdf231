/**
 * Request smuggling and protocol downgrade cases that hold today, kept as
 * regression tests (the hardening issue's "Tests and checks"): raw HTTP/1.1
 * over `Deno.connect` (fetch would not send these) through the real gateway
 * process, with an upstream that records every byte it receives. A request
 * the gateway cannot frame unambiguously is refused and its connection
 * closed, and nothing of it reaches the upstream.
 */

import { assert, assertEquals } from "../helpers/assert.ts";
import { startGateway } from "../helpers/gateway.ts";

const encoder = new TextEncoder();
const decoder = new TextDecoder();

/**
 * A raw upstream: records the bytes of each connection and answers every
 * request head it sees with `answer` (a 200 "ok" unless given).
 */
function recordingUpstream(answer = "HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok") {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const received: string[] = [];
  const open = new Set<Deno.Conn>();
  const serve = async (conn: Deno.Conn) => {
    open.add(conn);
    const index = received.push("") - 1;
    let answered = 0;
    const buffer = new Uint8Array(65536);
    try {
      for (let count = await conn.read(buffer); count !== null; count = await conn.read(buffer)) {
        received[index] += decoder.decode(buffer.subarray(0, count));
        const heads = received[index].split("\r\n\r\n").length - 1;
        for (; answered < heads; answered++) await conn.write(encoder.encode(answer));
      }
    } catch { /* closed */ }
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
    /** Everything received, all connections joined. */
    get bytes(): string {
      return received.join("");
    },
    async [Symbol.asyncDispose]() {
      listener.close();
      for (const conn of open) conn.close();
      await accepting.catch(() => {});
    },
  };
}

/** What a raw client saw: the bytes up to the end of the first response, and whether the server closed. */
interface Exchange {
  status: number;
  text: string;
  closed: boolean;
}

/**
 * Sends `request` and reads until the server closes the connection or one
 * complete response (head and Content-Length body) has arrived and the
 * connection stays open; a 10 s safety limit fails the test instead of hanging.
 */
async function send(port: number, request: string): Promise<Exchange> {
  const conn = await Deno.connect({ hostname: "127.0.0.1", port });
  const stuck = setTimeout(() => conn.close(), 10_000);
  let text = "";
  let closed = false;
  const buffer = new Uint8Array(65536);
  try {
    await conn.write(encoder.encode(request));
    for (;;) {
      const end = text.indexOf("\r\n\r\n");
      const length = Number(/content-length: *(\d+)/i.exec(text.slice(0, end))?.[1] ?? 0);
      const complete = end !== -1 && text.length >= end + 4 + length;
      if (complete && !/connection: *close/i.test(text.slice(0, end))) break;
      const count = await conn.read(buffer);
      if (count === null) {
        closed = true;
        break;
      }
      text += decoder.decode(buffer.subarray(0, count));
    }
  } finally {
    clearTimeout(stuck);
    try {
      conn.close();
    } catch { /* closed by the safety limit */ }
  }
  return { status: text.startsWith("HTTP/1.1 ") ? Number(text.slice(9, 12)) : 0, text, closed };
}

function proxyConfig(upstream: string) {
  return {
    listeners: { web: { type: "http", host: "127.0.0.1", port: 0 } },
    upstreams: { api: { targets: [upstream] } },
    routes: [{ match: { path: "/*" }, target: { upstream: "api" } }],
  };
}

const HEAD = "POST /smuggle HTTP/1.1\r\nHost: gateway.test\r\n";
/** A request the upstream would see if one were smuggled through. */
const SMUGGLED = "GET /admin HTTP/1.1\r\nHost: gateway.test\r\n\r\n";

/** Requests that must be answered 400 and closed, with nothing forwarded. */
const REFUSED: Record<string, string> = {
  "Content-Length then Transfer-Encoding":
    `${HEAD}Content-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n${SMUGGLED}`,
  "Transfer-Encoding then Content-Length":
    `${HEAD}Transfer-Encoding: chunked\r\nContent-Length: 60\r\n\r\n0\r\n\r\n${SMUGGLED}`,
  "two Content-Length lines with different values":
    `${HEAD}Content-Length: 5\r\nContent-Length: 44\r\n\r\nhello${SMUGGLED}`,
  "one Content-Length with a list of different values":
    `${HEAD}Content-Length: 5, 44\r\n\r\nhello${SMUGGLED}`,
  "an obs-fold line (space)": "GET /a HTTP/1.1\r\nHost: gateway.test\r\nX-A: a\r\n b\r\n\r\n",
  "an obs-fold line (tab)": "GET /a HTTP/1.1\r\nHost: gateway.test\r\nX-A: a\r\n\tb\r\n\r\n",
  "a NUL in a header value": "GET /a HTTP/1.1\r\nHost: gateway.test\r\nX-A: a\0b\r\n\r\n",
  "a bare CR in a header value": "GET /a HTTP/1.1\r\nHost: gateway.test\r\nX-A: a\rb\r\n\r\n",
  "a bare LF in a header value": `GET /a HTTP/1.1\r\nHost: gateway.test\r\nX-A: a\n${SMUGGLED}`,
  "an unknown transfer coding": `${HEAD}Transfer-Encoding: xchunked\r\n\r\n0\r\n\r\n${SMUGGLED}`,
  "Transfer-Encoding: identity":
    `${HEAD}Transfer-Encoding: identity\r\nContent-Length: 5\r\n\r\nhello`,
};

Deno.test("ambiguous framing and invalid header lines: 400, closed, nothing forwarded", async () => {
  await using upstream = recordingUpstream();
  await using gw = await startGateway(proxyConfig(upstream.url));
  const port = await gw.port("web");
  for (const [name, request] of Object.entries(REFUSED)) {
    const { status, closed } = await send(port, request);
    assertEquals({ status, closed }, { status: 400, closed: true }, name);
  }
  assertEquals(upstream.bytes, "");
  // The same gateway still proxies a well-formed request.
  const good = await send(port, `${HEAD}Content-Length: 5\r\n\r\nhello`);
  assertEquals(good.status, 200);
});

/** Chunk-size lines a strict parser refuses. */
const BAD_CHUNK_SIZES: Record<string, string> = {
  "a negative size": "-5\r\nhello\r\n0\r\n\r\n",
  "a size overflowing 64 bits": "10000000000000005\r\nhello\r\n0\r\n\r\n",
  "garbage after the digits": "5zz\r\nhello\r\n0\r\n\r\n",
  "a 0x prefix": "0x5\r\nhello\r\n0\r\n\r\n",
  "an empty size line": "\r\nhello\r\n0\r\n\r\n",
  "a bad size after a good chunk": "5\r\nhello\r\n-1\r\nx\r\n0\r\n\r\n",
  "chunk data longer than its size": "2\r\nhello\r\n0\r\n\r\n",
};

Deno.test("bad chunk sizes: no success answer, connection closed, no complete body upstream", async () => {
  await using upstream = recordingUpstream();
  await using gw = await startGateway(proxyConfig(upstream.url));
  const port = await gw.port("web");
  for (const [name, body] of Object.entries(BAD_CHUNK_SIZES)) {
    const { status, closed } = await send(
      port,
      `${HEAD}Transfer-Encoding: chunked\r\n\r\n${body}${SMUGGLED}`,
    );
    // Deno.serve closes the connection without an answer, or answers 400.
    assert(status === 0 || status === 400, `${name}: status ${status}`);
    assert(closed, `${name}: connection left open`);
  }
  // A body cut off by a framing error never ends with the last chunk, and no
  // smuggled request reaches the upstream.
  assert(!upstream.bytes.includes("0\r\n\r\n"), upstream.bytes);
  assert(!upstream.bytes.includes("/admin"), upstream.bytes);
});

Deno.test("Upgrade: h2c over HTTP/1.1 is answered as HTTP/1.1 and never tunneled", async () => {
  await using upstream = recordingUpstream();
  await using gw = await startGateway(proxyConfig(upstream.url));
  const port = await gw.port("web");
  const { status, text } = await send(
    port,
    "GET /a HTTP/1.1\r\nHost: gateway.test\r\nConnection: Upgrade, HTTP2-Settings\r\n" +
      "Upgrade: h2c\r\nHTTP2-Settings: AAMAAABkAARAAAAAAAIAAAAA\r\n\r\n",
  );
  assertEquals(status, 200, text);
  const forwarded = upstream.bytes.toLowerCase();
  assert(forwarded.startsWith("get /a http/1.1\r\n"), forwarded);
  for (const name of ["upgrade:", "http2-settings:", "connection:"]) {
    assert(!forwarded.includes(name), `${name} forwarded: ${forwarded}`);
  }
});

Deno.test("an upstream answering 101 Switching Protocols is a 502, not a tunnel", async () => {
  await using upstream = recordingUpstream(
    "HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: h2c\r\n\r\n" +
      "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n",
  );
  await using gw = await startGateway(proxyConfig(upstream.url));
  const port = await gw.port("web");
  const { status, text } = await send(
    port,
    "GET /a HTTP/1.1\r\nHost: gateway.test\r\nConnection: Upgrade\r\nUpgrade: h2c\r\n\r\n",
  );
  assertEquals(status, 502, text);
  assert(!text.includes("PRI * HTTP/2.0"), text);
});
