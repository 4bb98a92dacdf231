import assert from "node:assert/strict";
import {
  UpstreamError,
  type UpstreamErrorKind,
  type UpstreamRequest,
} from "../../src/upstreams/client.ts";
import { createHttp1Client, type Http1ClientOptions } from "../../src/upstreams/http1_client.ts";

const encoder = new TextEncoder();
const decoder = new TextDecoder();

/** A TCP server on 127.0.0.1 whose connections are handled by the test; counts accepted connections. */
interface RawServer {
  port: number;
  accepted(): number;
  close(): Promise<void>;
}

function startRawServer(
  handle: (conn: Deno.TcpConn, index: number) => Promise<void>,
): RawServer {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const open = new Set<Deno.Conn>();
  const tasks: Promise<void>[] = [];
  let accepted = 0;
  const acceptLoop = (async () => {
    try {
      for await (const conn of listener) {
        conn.setNoDelay(true);
        open.add(conn);
        const task = handle(conn, accepted++).catch(() => {}).finally(() => {
          open.delete(conn);
          closeQuietly(conn);
        });
        tasks.push(task);
      }
    } catch {
      // The listener was closed.
    }
  })();
  return {
    port: listener.addr.port,
    accepted: () => accepted,
    async close() {
      listener.close();
      await acceptLoop;
      for (const conn of open) closeQuietly(conn);
      await Promise.all(tasks);
    },
  };
}

function closeQuietly(conn: Deno.Conn): void {
  try {
    conn.close();
  } catch {
    // Already closed.
  }
}

/** Reads HTTP requests (head and Content-Length body) from one raw connection. */
class RequestReader {
  #pending = new Uint8Array(0);

  constructor(readonly conn: Deno.Conn) {}

  /** The next request's head as text, or null when the client closed the connection. */
  async next(): Promise<string | null> {
    for (let reads = 0; reads < 10_000; reads++) {
      const text = decoder.decode(this.#pending);
      const end = text.indexOf("\r\n\r\n");
      if (end !== -1) {
        const head = text.slice(0, end);
        this.#pending = this.#pending.subarray(end + 4);
        const length = /content-length: (\d+)/i.exec(head);
        if (length) await this.#skip(Number(length[1]));
        return head;
      }
      if (!(await this.#read())) return null;
    }
    throw new Error("request head too long");
  }

  async #skip(length: number): Promise<void> {
    for (let reads = 0; this.#pending.length < length && reads < 10_000; reads++) {
      if (!(await this.#read())) return;
    }
    this.#pending = this.#pending.subarray(length);
  }

  async #read(): Promise<boolean> {
    const chunk = new Uint8Array(16 * 1024);
    const count = await this.conn.read(chunk).catch(() => null);
    if (count === null) return false;
    const joined = new Uint8Array(this.#pending.length + count);
    joined.set(this.#pending);
    joined.set(chunk.subarray(0, count), this.#pending.length);
    this.#pending = joined;
    return true;
  }
}

/** Answers every request on a connection with `response` until the client closes it. */
function answerEach(response: string): (conn: Deno.TcpConn) => Promise<void> {
  return async (conn) => {
    const reader = new RequestReader(conn);
    for (let served = 0; served < 1000 && (await reader.next()) !== null; served++) {
      await conn.write(encoder.encode(response));
    }
  };
}

/** Waits until the client closes the connection (or the server shuts down). */
async function untilClosed(conn: Deno.Conn): Promise<void> {
  const sink = new Uint8Array(1024);
  for (let reads = 0; reads < 100_000; reads++) {
    if ((await conn.read(sink).catch(() => null)) === null) return;
  }
}

function delay(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

function requestTo(
  port: number,
  path: string,
  init: Partial<UpstreamRequest> = {},
): UpstreamRequest {
  return {
    url: new URL(`http://127.0.0.1:${port}${path}`),
    method: "GET",
    headers: new Headers(),
    body: null,
    connectTimeout: 2000,
    responseTimeout: 5000,
    ...init,
  };
}

async function assertUpstreamError(
  action: Promise<unknown>,
  kind: UpstreamErrorKind,
  requestSent: boolean,
): Promise<void> {
  const error = await action.then(() => null, (error) => error);
  assert.ok(error instanceof UpstreamError, `expected UpstreamError, got ${error}`);
  assert.equal(error.kind, kind, error.message);
  assert.equal(error.requestSent, requestSent, error.message);
}

/** Runs `test` with a client and a raw server, closing both afterwards. */
async function withRawServer(
  handle: (conn: Deno.TcpConn, index: number) => Promise<void>,
  test: (server: RawServer, client: ReturnType<typeof createHttp1Client>) => Promise<void>,
  options: Http1ClientOptions = {},
): Promise<void> {
  const server = startRawServer(handle);
  const client = createHttp1Client(options);
  try {
    await test(server, client);
  } finally {
    client.close();
    await server.close();
  }
}

/** Runs `test` with a client and a Deno.serve server, closing both afterwards. */
async function withDenoServer(
  handler: (request: Request) => Response | Promise<Response>,
  test: (port: number, client: ReturnType<typeof createHttp1Client>) => Promise<void>,
): Promise<void> {
  const server = Deno.serve({ hostname: "127.0.0.1", port: 0, onListen() {} }, handler);
  const client = createHttp1Client();
  try {
    await test(server.addr.port, client);
  } finally {
    client.close();
    await server.shutdown();
  }
}

/** A generated body of `chunks` × 64 KiB with a known byte sum, never held in memory at once. */
function generatedBody(chunks: number): { stream: ReadableStream<Uint8Array>; sum: number } {
  const chunk = new Uint8Array(64 * 1024).map((_, i) => (i * 7 + 3) & 255);
  const chunkSum = chunk.reduce((sum, byte) => sum + byte, 0);
  let sent = 0;
  const stream = new ReadableStream<Uint8Array>({
    pull(controller) {
      if (sent++ < chunks) controller.enqueue(chunk.slice());
      else controller.close();
    },
  });
  return { stream, sum: chunkSum * chunks };
}

async function byteCountAndSum(body: ReadableStream<Uint8Array>): Promise<[number, number]> {
  let count = 0;
  let sum = 0;
  for await (const chunk of body) {
    count += chunk.length;
    for (const byte of chunk) sum += byte;
  }
  return [count, sum];
}

Deno.test("GET from Deno.serve: status, status text, headers and body", async () => {
  await withDenoServer(
    (request) =>
      new Response(`you asked for ${new URL(request.url).pathname}`, {
        status: 201,
        headers: { "x-upstream": "yes", "set-cookie": "a=1" },
      }),
    async (port, client) => {
      const response = await client.request(requestTo(port, "/things?x=1"));
      assert.equal(response.status, 201);
      assert.equal(response.statusText, "Created");
      assert.equal(response.headers.get("x-upstream"), "yes");
      assert.deepEqual(response.headers.getSetCookie(), ["a=1"]);
      assert.equal(await response.text(), "you asked for /things");
    },
  );
});

Deno.test("sends method, path, query, host and headers as given", async () => {
  await withDenoServer(
    (request) =>
      Response.json({
        method: request.method,
        url: request.url,
        host: request.headers.get("host"),
        custom: request.headers.get("x-custom"),
      }),
    async (port, client) => {
      const headers = new Headers({ "x-custom": "value", host: "example.test" });
      const response = await client.request(
        requestTo(port, "/a/b?c=d", { method: "DELETE", headers }),
      );
      const seen = await response.json();
      assert.equal(seen.method, "DELETE");
      assert.equal(new URL(seen.url).pathname + new URL(seen.url).search, "/a/b?c=d");
      assert.equal(seen.host, "example.test");
      assert.equal(seen.custom, "value");
    },
  );
});

Deno.test("POST with a small body of known length", async () => {
  await withDenoServer(
    async (request) => new Response(`${request.method} ${await request.text()}`),
    async (port, client) => {
      const response = await client.request(requestTo(port, "/", {
        method: "POST",
        headers: new Headers({ "content-length": "5" }),
        body: new Response("hello").body,
      }));
      assert.equal(await response.text(), "POST hello");
    },
  );
});

Deno.test("keeps connections alive and reuses them", async () => {
  const response = "HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok";
  await withRawServer(answerEach(response), async (server, client) => {
    for (let i = 0; i < 5; i++) {
      assert.equal(await (await client.request(requestTo(server.port, "/"))).text(), "ok");
    }
    assert.equal(server.accepted(), 1);
  });
});

Deno.test("20 MB streamed both ways (chunked upload, echoed back)", async () => {
  await withDenoServer(
    (request) => new Response(request.body),
    async (port, client) => {
      const { stream, sum } = generatedBody(320);
      const response = await client.request(requestTo(port, "/", { method: "POST", body: stream }));
      assert.deepEqual(await byteCountAndSum(response.body!), [320 * 64 * 1024, sum]);
    },
  );
});

Deno.test("20 MB upload with content-length and 20 MB streamed download", async () => {
  await withDenoServer(
    async (request) => {
      if (request.method === "PUT") {
        const [count, sum] = await byteCountAndSum(request.body!);
        return new Response(`${count} ${sum}`);
      }
      return new Response(generatedBody(320).stream);
    },
    async (port, client) => {
      const upload = generatedBody(320);
      const put = await client.request(requestTo(port, "/", {
        method: "PUT",
        headers: new Headers({ "content-length": String(320 * 64 * 1024) }),
        body: upload.stream,
      }));
      assert.equal(await put.text(), `${320 * 64 * 1024} ${upload.sum}`);
      const download = await client.request(requestTo(port, "/"));
      const expected = generatedBody(0).sum + generatedBody(320).sum;
      assert.deepEqual(await byteCountAndSum(download.body!), [320 * 64 * 1024, expected]);
    },
  );
});

const CHUNKED_RESPONSE = "HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\nx-a: b\r\n\r\n" +
  "5;ext=1\r\nhello\r\n6\r\n world\r\n0\r\nx-trailer: ignored\r\n\r\n";
const LENGTH_RESPONSE = "HTTP/1.1 200 OK\r\ncontent-length: 11\r\n\r\nhello world";

for (
  const [name, response] of [["chunked", CHUNKED_RESPONSE], ["content-length", LENGTH_RESPONSE]]
) {
  Deno.test(`${name} response split into two packets at every boundary`, async () => {
    const bytes = encoder.encode(response);
    await withRawServer(
      async (conn) => {
        const reader = new RequestReader(conn);
        for (let split = 1; split < bytes.length && (await reader.next()) !== null; split++) {
          await conn.write(bytes.subarray(0, split));
          await delay(2);
          await conn.write(bytes.subarray(split));
        }
      },
      async (server, client) => {
        for (let split = 1; split < bytes.length; split++) {
          const result = await client.request(requestTo(server.port, "/"));
          assert.equal(await result.text(), "hello world", `split at ${split}`);
        }
        assert.equal(server.accepted(), 1);
      },
    );
  });
}

Deno.test("chunked response delivered one byte per packet", async () => {
  const bytes = encoder.encode(CHUNKED_RESPONSE);
  await withRawServer(
    async (conn) => {
      await new RequestReader(conn).next();
      for (let i = 0; i < bytes.length; i++) {
        await conn.write(bytes.subarray(i, i + 1));
        await delay(1);
      }
      await untilClosed(conn);
    },
    async (server, client) => {
      const response = await client.request(requestTo(server.port, "/"));
      assert.equal(response.headers.get("x-a"), "b");
      assert.equal(await response.text(), "hello world");
    },
  );
});

Deno.test("connection: close is honoured and the connection not reused", async () => {
  const response = "HTTP/1.1 200 OK\r\nconnection: close\r\ncontent-length: 2\r\n\r\nok";
  await withRawServer(answerEach(response), async (server, client) => {
    assert.equal(await (await client.request(requestTo(server.port, "/"))).text(), "ok");
    assert.equal(await (await client.request(requestTo(server.port, "/"))).text(), "ok");
    assert.equal(server.accepted(), 2);
  });
});

Deno.test("body without length is read until the server closes", async () => {
  await withRawServer(
    async (conn) => {
      await new RequestReader(conn).next();
      await conn.write(encoder.encode("HTTP/1.1 200 OK\r\n\r\nfirst "));
      await delay(5);
      await conn.write(encoder.encode("second"));
    },
    async (server, client) => {
      const response = await client.request(requestTo(server.port, "/"));
      assert.equal(await response.text(), "first second");
    },
  );
});

Deno.test("HTTP/1.0 response without keep-alive closes the connection", async () => {
  const response = "HTTP/1.0 200 OK\r\ncontent-length: 2\r\n\r\nok";
  await withRawServer(answerEach(response), async (server, client) => {
    await (await client.request(requestTo(server.port, "/"))).text();
    await (await client.request(requestTo(server.port, "/"))).text();
    assert.equal(server.accepted(), 2);
  });
});

Deno.test("HEAD, 204 and 304 have no body and keep the connection", async () => {
  const responses = [
    "HTTP/1.1 200 OK\r\ncontent-length: 100\r\n\r\n",
    "HTTP/1.1 204 No Content\r\n\r\n",
    "HTTP/1.1 304 Not Modified\r\ncontent-length: 50\r\n\r\n",
    "HTTP/1.1 200 OK\r\ncontent-length: 4\r\n\r\ndone",
  ];
  await withRawServer(
    async (conn) => {
      const reader = new RequestReader(conn);
      for (const response of responses) {
        if ((await reader.next()) === null) return;
        await conn.write(encoder.encode(response));
      }
      await untilClosed(conn);
    },
    async (server, client) => {
      const head = await client.request(requestTo(server.port, "/", { method: "HEAD" }));
      assert.equal(head.headers.get("content-length"), "100");
      assert.equal(head.body, null);
      const noContent = await client.request(requestTo(server.port, "/"));
      assert.equal(noContent.status, 204);
      assert.equal(noContent.body, null);
      const notModified = await client.request(requestTo(server.port, "/"));
      assert.equal(notModified.status, 304);
      assert.equal(await (await client.request(requestTo(server.port, "/"))).text(), "done");
      assert.equal(server.accepted(), 1);
    },
  );
});

Deno.test("100 Continue and other 1xx responses are skipped", async () => {
  const response = "HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 103 Early Hints\r\nlink: </a>\r\n\r\n" +
    LENGTH_RESPONSE;
  await withRawServer(answerEach(response), async (server, client) => {
    const result = await client.request(requestTo(server.port, "/"));
    assert.equal(result.status, 200);
    assert.equal(await result.text(), "hello world");
  });
});

const MALFORMED_RESPONSES: [string, string][] = [
  ["malformed status line", "HTTP/1.1 OK\r\n\r\n"],
  ["not HTTP at all", "SSH-2.0-OpenSSH\r\n\r\n"],
  ["header line without colon", "HTTP/1.1 200 OK\r\nbroken header\r\n\r\n"],
  ["invalid content-length", "HTTP/1.1 200 OK\r\ncontent-length: 1x\r\n\r\n"],
  [
    "conflicting content-length",
    "HTTP/1.1 200 OK\r\ncontent-length: 1\r\ncontent-length: 2\r\n\r\n",
  ],
  ["invalid chunk size", "HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\nzz\r\n"],
];

for (const [name, response] of MALFORMED_RESPONSES) {
  Deno.test(`${name} is a protocol error`, async () => {
    await withRawServer(answerEach(response), async (server, client) => {
      const action = client.request(requestTo(server.port, "/")).then((result) => result.text());
      await assertUpstreamError(action, "protocol", true);
    });
  });
}

Deno.test("headers larger than maxHeaderSize are a protocol error", async () => {
  const response = `HTTP/1.1 200 OK\r\nx-big: ${"a".repeat(70_000)}\r\ncontent-length: 0\r\n\r\n`;
  await withRawServer(answerEach(response), async (server, client) => {
    await assertUpstreamError(client.request(requestTo(server.port, "/")), "protocol", true);
  });
});

Deno.test("headers just under maxHeaderSize are accepted", async () => {
  const response = `HTTP/1.1 200 OK\r\nx-big: ${"a".repeat(60_000)}\r\ncontent-length: 0\r\n\r\n`;
  await withRawServer(answerEach(response), async (server, client) => {
    const result = await client.request(requestTo(server.port, "/"));
    assert.equal(result.headers.get("x-big")?.length, 60_000);
  });
});

Deno.test("server closing mid-body makes the body stream fail with a protocol error", async () => {
  await withRawServer(
    async (conn) => {
      await new RequestReader(conn).next();
      await conn.write(encoder.encode("HTTP/1.1 200 OK\r\ncontent-length: 100\r\n\r\npartial"));
    },
    async (server, client) => {
      const response = await client.request(requestTo(server.port, "/"));
      await assertUpstreamError(response.text(), "protocol", true);
    },
  );
});

Deno.test("a pooled connection closed by the server while idle is not used", async () => {
  const response = "HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok";
  await withRawServer(
    async (conn) => {
      const reader = new RequestReader(conn);
      await reader.next();
      await conn.write(encoder.encode(response));
    },
    async (server, client) => {
      assert.equal(await (await client.request(requestTo(server.port, "/"))).text(), "ok");
      await delay(50);
      assert.equal(await (await client.request(requestTo(server.port, "/"))).text(), "ok");
      assert.equal(server.accepted(), 2);
    },
  );
});

Deno.test("a pooled connection holding bytes the runtime has not reported yet is not used", async () => {
  const answer = (body: string) =>
    `HTTP/1.1 200 OK\r\ncontent-length: ${body.length}\r\n\r\n${body}`;
  const conns: Deno.TcpConn[] = [];
  await withRawServer(
    async (conn) => {
      conns.push(conn);
      const reader = new RequestReader(conn);
      for (let served = 0; served < 10 && (await reader.next()) !== null; served++) {
        await conn.write(encoder.encode(answer("mine")));
      }
    },
    async (server, client) => {
      assert.equal(await (await client.request(requestTo(server.port, "/"))).text(), "mine");
      // Written now and taken at once: no event-loop turn in between reports the bytes.
      await conns[0].write(encoder.encode(answer("stray")));
      assert.equal(await (await client.request(requestTo(server.port, "/"))).text(), "mine");
      assert.equal(server.accepted(), 2);
    },
  );
});

/** First connection: answers one request, then closes on the next without answering. */
function closesSecondRequest(): (conn: Deno.TcpConn, index: number) => Promise<void> {
  const response = "HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok";
  return async (conn, index) => {
    const reader = new RequestReader(conn);
    if (index > 0) return await answerEach(response)(conn);
    await reader.next();
    await conn.write(encoder.encode(response));
    await reader.next();
  };
}

Deno.test("keep-alive race: an idempotent request is retried once on a fresh connection", async () => {
  await withRawServer(closesSecondRequest(), async (server, client) => {
    assert.equal(await (await client.request(requestTo(server.port, "/"))).text(), "ok");
    assert.equal(await (await client.request(requestTo(server.port, "/"))).text(), "ok");
    assert.equal(server.accepted(), 2);
  });
});

Deno.test("keep-alive race: a POST is not retried and reports requestSent", async () => {
  await withRawServer(closesSecondRequest(), async (server, client) => {
    assert.equal(await (await client.request(requestTo(server.port, "/"))).text(), "ok");
    const post = client.request(requestTo(server.port, "/", {
      method: "POST",
      headers: new Headers({ "content-length": "2" }),
      body: new Response("hi").body,
    }));
    await assertUpstreamError(post, "protocol", true);
    assert.equal(server.accepted(), 1);
  });
});

Deno.test("slow server: response timeout", async () => {
  await withRawServer(
    async (conn) => {
      await new RequestReader(conn).next();
      await untilClosed(conn);
    },
    async (server, client) => {
      const request = requestTo(server.port, "/", { responseTimeout: 100 });
      await assertUpstreamError(client.request(request), "response-timeout", true);
    },
  );
});

Deno.test("an upstream that stops reading a streamed body: response timeout, not a hang", async () => {
  await withRawServer(
    async (conn) => {
      // Takes the connection and never reads, so the socket buffers fill up; the test's end
      // closes it.
      await delay(1500);
      conn.close();
    },
    async (server, client) => {
      const chunk = new Uint8Array(64 * 1024);
      let sent = 0;
      const body = new ReadableStream<Uint8Array>({
        pull(controller) {
          if (sent++ < 1024) controller.enqueue(chunk);
          else controller.close();
        },
      });
      const request = requestTo(server.port, "/upload", {
        method: "POST",
        body,
        responseTimeout: 200,
      });
      await assertUpstreamError(client.request(request), "response-timeout", true);
      assert.ok(sent < 1024, "the upload was given up, not completed");
    },
  );
});

Deno.test("connection refused is a connect error with nothing sent", async () => {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const port = listener.addr.port;
  listener.close();
  const client = createHttp1Client();
  try {
    await assertUpstreamError(client.request(requestTo(port, "/")), "connect", false);
  } finally {
    client.close();
  }
});

Deno.test("abort before the response arrives", async () => {
  await withRawServer(
    async (conn) => {
      await new RequestReader(conn).next();
      await untilClosed(conn);
    },
    async (server, client) => {
      const abort = new AbortController();
      const timer = setTimeout(() => abort.abort(), 50);
      const request = requestTo(server.port, "/", { signal: abort.signal });
      await assertUpstreamError(client.request(request), "aborted", true);
      clearTimeout(timer);
    },
  );
});

Deno.test("already aborted signal: nothing is sent", async () => {
  await withRawServer(answerEach(LENGTH_RESPONSE), async (server, client) => {
    const request = requestTo(server.port, "/", { signal: AbortSignal.abort() });
    await assertUpstreamError(client.request(request), "aborted", false);
    assert.equal(server.accepted(), 0);
  });
});

/** Sends a head and part of a 1000-byte body, then waits; later connections get a full answer. */
function stallsMidBody(): (conn: Deno.TcpConn, index: number) => Promise<void> {
  return async (conn, index) => {
    if (index > 0) return await answerEach(LENGTH_RESPONSE)(conn);
    await new RequestReader(conn).next();
    await conn.write(encoder.encode("HTTP/1.1 200 OK\r\ncontent-length: 1000\r\n\r\nfirst"));
    await untilClosed(conn);
  };
}

Deno.test("abort while the body streams errors the body", async () => {
  await withRawServer(stallsMidBody(), async (server, client) => {
    const abort = new AbortController();
    const response = await client.request(requestTo(server.port, "/", { signal: abort.signal }));
    const reader = response.body!.getReader();
    assert.equal(decoder.decode((await reader.read()).value), "first");
    abort.abort();
    await assertUpstreamError(reader.read(), "aborted", true);
  });
});

Deno.test("consumer cancelling the body discards the connection", async () => {
  await withRawServer(stallsMidBody(), async (server, client) => {
    const response = await client.request(requestTo(server.port, "/"));
    const reader = response.body!.getReader();
    await reader.read();
    await reader.cancel();
    assert.equal(await (await client.request(requestTo(server.port, "/"))).text(), "hello world");
    assert.equal(server.accepted(), 2);
  });
});

Deno.test("idle connections are closed after idleTimeout", async () => {
  await withRawServer(answerEach(LENGTH_RESPONSE), async (server, client) => {
    await (await client.request(requestTo(server.port, "/"))).text();
    await delay(250);
    await (await client.request(requestTo(server.port, "/"))).text();
    assert.equal(server.accepted(), 2);
  }, { idleTimeout: 100 });
});

Deno.test("concurrent requests each get their own connection and all succeed", async () => {
  await withDenoServer(
    (request) => new Response(new URL(request.url).searchParams.get("n")),
    async (port, client) => {
      const bodies = await Promise.all(
        Array.from(
          { length: 20 },
          (_, n) => client.request(requestTo(port, `/?n=${n}`)).then((response) => response.text()),
        ),
      );
      assert.deepEqual(bodies, Array.from({ length: 20 }, (_, n) => String(n)));
    },
  );
});

/** Runs openssl (a test package, installed by `deno task test`) with `args`; false if it failed. */
async function openssl(args: string[]): Promise<boolean> {
  const command = new Deno.Command("openssl", { args, stdout: "null", stderr: "null" });
  return (await command.output()).success;
}

/** A certificate for 127.0.0.1 signed by a new CA (made with openssl). */
async function testCertificate(): Promise<{ ca: string; cert: string; key: string }> {
  const dir = await Deno.makeTempDir();
  const newKey = ["-newkey", "rsa:2048", "-nodes", "-days", "1"];
  try {
    const made = await openssl([
      "req",
      "-x509",
      ...newKey,
      "-subj",
      "/CN=test CA",
      "-keyout",
      `${dir}/ca.key`,
      "-out",
      `${dir}/ca.pem`,
    ]) && await openssl([
      "req",
      "-x509",
      ...newKey,
      "-subj",
      "/CN=127.0.0.1",
      "-CA",
      `${dir}/ca.pem`,
      "-CAkey",
      `${dir}/ca.key`,
      "-addext",
      "subjectAltName=IP:127.0.0.1",
      "-addext",
      "basicConstraints=critical,CA:FALSE",
      "-keyout",
      `${dir}/key.pem`,
      "-out",
      `${dir}/cert.pem`,
    ]);
    if (!made) throw new Error("openssl could not make the test certificates");
    const read = (name: string) => Deno.readTextFile(`${dir}/${name}`);
    return { ca: await read("ca.pem"), cert: await read("cert.pem"), key: await read("key.pem") };
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

Deno.test("https target with a certificate from a trusted CA, connection reused", async () => {
  const certificate = await testCertificate();
  const server = Deno.serve({
    hostname: "127.0.0.1",
    port: 0,
    cert: certificate.cert,
    key: certificate.key,
    onListen() {},
  }, (_request, info) => new Response(`${info.remoteAddr.port}`));
  const client = createHttp1Client({ caCerts: [certificate.ca] });
  try {
    const url = new URL(`https://127.0.0.1:${server.addr.port}/`);
    const ports = new Set<string>();
    for (let i = 0; i < 3; i++) {
      ports.add(await (await client.request({ ...requestTo(0, "/"), url })).text());
    }
    assert.equal(ports.size, 1, "one client port: the TLS connection was reused");
    const untrusted = createHttp1Client();
    await assertUpstreamError(untrusted.request({ ...requestTo(0, "/"), url }), "connect", false);
    untrusted.close();
  } finally {
    client.close();
    await server.shutdown();
  }
});
