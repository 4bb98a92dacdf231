/**
 * One HTTP listener over a real loopback socket: binding keys, serving,
 * swapping the handler in place, a clash on a port, and a graceful stop.
 */

import { assert, assertEquals, assertStringIncludes } from "../helpers/assert.ts";
import { HttpListener } from "../../src/listeners/http.ts";
import { ListenError } from "../../src/listeners/listen_error.ts";

const LOOPBACK = "127.0.0.1";

function deferred<T = void>() {
  let resolve!: (value: T) => void;
  const promise = new Promise<T>((r) => resolve = r);
  return { promise, resolve };
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
  }, () => new Response("never"));
  let error: unknown;
  try {
    await listener.start();
  } catch (e) {
    error = e;
  }
  assert(error instanceof ListenError, `ListenError, got ${error}`);
  assertStringIncludes(error.message, 'listener "secure": cannot listen on 127.0.0.1:0: ');
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
