/**
 * One HTTP listener over a real loopback socket: binding keys, serving,
 * swapping the handler in place, a clash on a port, and a graceful stop;
 * with a guard, the client's address as the handler sees it, admission and
 * h2c; and the request framer the guard follows requests with.
 */

import { assert, assertEquals, assertStringIncludes } from "../helpers/assert.ts";
import { HttpListener } from "../../src/listeners/http.ts";
import { until } from "../helpers/wait.ts";
import {
  HeadTooLargeError,
  Http1RequestFramer,
  MAX_HEAD_BYTES,
} from "../../src/listeners/http_request_framing.ts";
import { ListenError } from "../../src/listeners/listen_error.ts";
import type { AdmitRequest, ConnectionManager } from "../../src/connections/manager.ts";
import type { Connection, ConnectionInfo } from "../../src/connections/connection.ts";

const LOOPBACK = "127.0.0.1";

function deferred<T = void>() {
  let resolve!: (value: T) => void;
  const promise = new Promise<T>((r) => resolve = r);
  return { promise, resolve };
}

/** A connection manager stand-in that admits everything and remembers what it was asked. */
function admitAll() {
  const requests: AdmitRequest[] = [];
  const state = {
    requests,
    open: 0,
    admit(request: AdmitRequest): Connection {
      requests.push(request);
      state.open++;
      return {
        id: `c${requests.length}`,
        source: { listener: request.listener, protocol: request.protocol },
        received: () => 0,
        sent() {},
        bindDevice() {},
        closed: () => void state.open--,
        info: () => ({}) as ConnectionInfo,
      };
    },
  };
  return state;
}

/** Guard settings with generous timeouts, admitting through `connections`. */
function guardFor(connections: Pick<ConnectionManager, "admit">) {
  return {
    listener: "web",
    connections,
    headerTimeout: 10_000,
    bodyTimeout: 10_000,
    idleTimeout: 10_000,
    handshakeTimeout: 10_000,
    maxConnections: 100,
    maxPerIp: 100,
  };
}

async function get(port: number, path = "/"): Promise<{ status: number; text: string }> {
  const res = await fetch(`http://${LOOPBACK}:${port}${path}`);
  return { status: res.status, text: await res.text() };
}

Deno.test("a listener on port 0 binds a real port and serves its handler", async () => {
  const listener = new HttpListener(
    'listener "web"',
    { host: LOOPBACK, port: 0, drainTimeout: 5000 },
    (request) => new Response(`hello ${new URL(request.url).pathname}`),
  );
  assertEquals(listener.port, 0, "before start, the configured port");
  await listener.start();
  try {
    assert(listener.port > 0, `bound port ${listener.port}`);
    assertEquals(await get(listener.port, "/x"), { status: 200, text: "hello /x" });
  } finally {
    await listener.stop();
  }
});

Deno.test("setHandler swaps behaviour on the same socket; running requests keep theirs", async () => {
  const entered = deferred();
  const release = deferred();
  let oldCalls = 0;
  const listener = new HttpListener(
    'listener "web"',
    { host: LOOPBACK, port: 0, drainTimeout: 5000 },
    async () => {
      // Only the first request is held, so a swap that did not happen fails instead of hanging.
      if (oldCalls++ === 0) {
        entered.resolve();
        await release.promise;
      }
      return new Response("old");
    },
  );
  await listener.start();
  try {
    const port = listener.port;
    const slow = get(port);
    await entered.promise;
    listener.setHandler(() => new Response("new"));
    assertEquals(listener.port, port, "no rebinding");
    assertEquals(await get(port), { status: 200, text: "new" });
    release.resolve();
    assertEquals(await slow, { status: 200, text: "old" });
    assertEquals(await get(port), { status: 200, text: "new" });
  } finally {
    release.resolve();
    await listener.stop();
  }
});

Deno.test("a second listener on a port in use throws ListenError naming label, port and host", async () => {
  const first = new HttpListener(
    'listener "one"',
    { host: LOOPBACK, port: 0, drainTimeout: 1000 },
    () => new Response("one"),
  );
  await first.start();
  const port = first.port;
  const second = new HttpListener(
    'listener "two"',
    { host: LOOPBACK, port, drainTimeout: 1000 },
    () => new Response("two"),
  );
  try {
    let error: unknown;
    try {
      await second.start();
    } catch (e) {
      error = e;
    }
    assert(error instanceof ListenError, `ListenError, got ${error}`);
    assertEquals(error.name, "ListenError");
    assertEquals(
      error.message,
      `listener "two": port ${port} on 127.0.0.1 is already in use`,
    );
    assert(error.cause instanceof Deno.errors.AddrInUse, "cause is AddrInUse");
    assertEquals(await get(port), { status: 200, text: "one" }, "the first still serves");
  } finally {
    await second.stop();
    await first.stop();
  }
});

Deno.test("an unusable TLS certificate is a ListenError naming the address", async () => {
  const listener = new HttpListener('listener "secure"', {
    host: LOOPBACK,
    port: 0,
    drainTimeout: 1000,
    tls: { cert: "not a certificate", key: "not a key" },
    guard: guardFor(admitAll()),
  }, () => new Response("never"));
  let error: unknown;
  try {
    await listener.start();
  } catch (e) {
    error = e;
  } finally {
    await listener.stop();
  }
  assert(error instanceof ListenError, `ListenError, got ${error}`);
  assertStringIncludes(
    error.message,
    'listener "secure": cannot listen on 127.0.0.1:0: the TLS certificate cannot be read',
  );
});

Deno.test("HTTPS is served through a guard only", () => {
  let error: unknown;
  try {
    new HttpListener('listener "secure"', {
      host: LOOPBACK,
      port: 0,
      drainTimeout: 1000,
      tls: { cert: "c", key: "k" },
    }, () => new Response("never"));
  } catch (e) {
    error = e;
  }
  assertStringIncludes(String(error), "HTTPS is served through a guard");
});

Deno.test("guarded: the handler sees the client's own address; each connection is admitted and released", async () => {
  const admitted = admitAll();
  const listener = new HttpListener(
    'listener "guarded"',
    { host: LOOPBACK, port: 0, drainTimeout: 1000, guard: guardFor(admitted) },
    (_request, info) => new Response(JSON.stringify(info.remoteAddr)),
  );
  await listener.start();
  const conn = await Deno.connect({ hostname: LOOPBACK, port: listener.port });
  try {
    await conn.write(
      new TextEncoder().encode("GET / HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n"),
    );
    const text = new TextDecoder().decode(await new Response(conn.readable).arrayBuffer());
    const seen = JSON.parse(text.slice(text.indexOf("\r\n\r\n") + 4));
    assertEquals(seen, { transport: "tcp", hostname: LOOPBACK, port: conn.localAddr.port });
    assertEquals(admitted.requests.map((r) => [r.protocol, r.remotePort]), [
      ["http", conn.localAddr.port],
    ]);
    await until("the connection released", () => admitted.open === 0);
  } finally {
    await listener.stop();
  }
});

Deno.test("guarded: a port in use is a ListenError naming label, port and host", async () => {
  const first = new HttpListener(
    'listener "one"',
    { host: LOOPBACK, port: 0, drainTimeout: 1000 },
    () => new Response("one"),
  );
  await first.start();
  const second = new HttpListener(
    'listener "two"',
    { host: LOOPBACK, port: first.port, drainTimeout: 1000, guard: guardFor(admitAll()) },
    () => new Response("two"),
  );
  try {
    let error: unknown;
    try {
      await second.start();
    } catch (e) {
      error = e;
    }
    assert(error instanceof ListenError, `ListenError, got ${error}`);
    assertEquals(
      error.message,
      `listener "two": port ${first.port} on 127.0.0.1 is already in use`,
    );
  } finally {
    await second.stop();
    await first.stop();
  }
});

Deno.test("stop waits for an in-flight request to finish, then refuses connections", async () => {
  const entered = deferred();
  const release = deferred();
  const listener = new HttpListener(
    'listener "web"',
    { host: LOOPBACK, port: 0, drainTimeout: 30_000 },
    async () => {
      entered.resolve();
      await release.promise;
      return new Response("finished");
    },
  );
  await listener.start();
  const port = listener.port;
  const slow = get(port);
  await entered.promise;
  let stopped = false;
  const stopping = listener.stop().then(() => stopped = true);
  // Let the shutdown begin; the request is still held, so stop cannot be done.
  await new Promise((resolve) => setTimeout(resolve, 20));
  assertEquals(stopped, false, "stop resolved while a request was running");
  release.resolve();
  assertEquals(await slow, { status: 200, text: "finished" }, "the request finished normally");
  await stopping;
  assert(stopped);
  const refused = await fetch(`http://${LOOPBACK}:${port}/`).then(
    async (res) => {
      await res.body?.cancel();
      return false;
    },
    () => true,
  );
  assert(refused, "no longer accepting connections");
});

Deno.test("stop is idempotent, and safe before start", async () => {
  const never = new HttpListener(
    'listener "idle"',
    { host: LOOPBACK, port: 0, drainTimeout: 1000 },
    () => new Response("never"),
  );
  await never.stop();

  const listener = new HttpListener(
    'listener "web"',
    { host: LOOPBACK, port: 0, drainTimeout: 1000 },
    () => new Response("ok"),
  );
  await listener.start();
  assertEquals((await get(listener.port)).text, "ok");
  const first = listener.stop();
  const second = listener.stop();
  assert(first === second, "the same promise while stopping");
  await first;
  await listener.stop();
});

Deno.test("guarded: h2c with prior knowledge is relayed", async () => {
  const listener = new HttpListener(
    'listener "guarded"',
    { host: LOOPBACK, port: 0, drainTimeout: 1000, guard: guardFor(admitAll()) },
    (request) => new Response(`h2 ${new URL(request.url).pathname}`),
  );
  await listener.start();
  using client = Deno.createHttpClient({ http1: false, http2: true });
  try {
    const res = await fetch(`http://${LOOPBACK}:${listener.port}/x`, { client });
    assertEquals(await res.text(), "h2 /x");
  } finally {
    await listener.stop();
  }
});

Deno.test("the request framer finds where heads and bodies end, however the bytes are cut", () => {
  const requests = "POST /a HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n\r\nhello" +
    "POST /b HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n" +
    "5;ext=1\r\nhello\r\n0\r\nX-Trailer: t\r\n\r\n" +
    "\r\nGET /c HTTP/1.1\r\nHost: a\r\n\r\n";
  const bytes = new TextEncoder().encode(requests);
  for (const size of [1, 2, 3, 7, bytes.length]) {
    const framer = new Http1RequestFramer();
    const phases: string[] = [];
    for (let at = 0; at < bytes.length; at += size) {
      framer.feed(bytes.subarray(at, at + size));
      if (phases.at(-1) !== framer.phase) phases.push(framer.phase);
    }
    assertEquals(framer.phase, "between", `cut every ${size} bytes`);
    assertEquals(framer.heads, 3, `cut every ${size} bytes`);
    if (size === 1) {
      assertEquals(phases, [
        "head",
        "body",
        "between",
        "head",
        "body",
        "between",
        "head",
        "between",
      ]);
    }
  }
});

Deno.test("the request framer stops at HTTP/2 and framing it does not follow, and bounds a head", () => {
  const feed = (text: string) => {
    const framer = new Http1RequestFramer();
    framer.feed(new TextEncoder().encode(text));
    return framer.phase;
  };
  assertEquals(feed("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"), "opaque");
  assertEquals(feed("POST / HTTP/1.1\r\nTransfer-Encoding: gzip\r\n\r\n"), "opaque");
  assertEquals(feed("POST / HTTP/1.1\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n"), "opaque");
  assertEquals(
    feed("POST / HTTP/1.1\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n"),
    "body",
    "the transfer coding wins (RFC 9112 §6.3)",
  );
  assertEquals(feed("GET / HTTP/1.1\nHost: a\n\n"), "between", "bare LF line ends");
  let error: unknown;
  try {
    feed(`GET / HTTP/1.1\r\nX: ${"a".repeat(MAX_HEAD_BYTES)}`);
  } catch (e) {
    error = e;
  }
  assert(error instanceof HeadTooLargeError, `HeadTooLargeError, got ${error}`);
});
