/**
 * Items 4 and 23 of the hardening issue, through the real gateway process
 * with raw sockets: on a guarded HTTP listener (`guard` settings, here on
 * loopback) a slowloris head, an idle keep-alive connection and a stalled
 * body are closed after their timeouts, and the connection past `maxPerIp`
 * is refused; on a listener restarted by a reload, connections still open at
 * `drainTimeout` are closed (with the guard and without).
 */

import { assert, assertEquals, assertStringIncludes } from "../helpers/assert.ts";
import { ADMIN_TOKEN, startGateway } from "../helpers/gateway.ts";
import { until } from "../helpers/wait.ts";

const encoder = new TextEncoder();
/** Generous: the timeouts under test are 1 s; this only bounds a broken run. */
const CLOSED_WITHIN = 15_000;

/** A loopback listener with the guard on (`guard` settings, 1 s timeouts unless `extra` says). */
function guardedListener(extra: Record<string, unknown> = {}) {
  return {
    type: "http",
    host: "127.0.0.1",
    port: 0,
    guard: { headerTimeout: 1000, idleTimeout: 1000, bodyTimeout: 1000, ...extra },
  };
}

/**
 * What the peer does with `conn` within {@link CLOSED_WITHIN}: `closed`
 * (end of stream or reset) with the bytes it sent before, or `open`.
 */
async function outcome(conn: Deno.Conn): Promise<{ state: "closed" | "open"; text: string }> {
  const decoder = new TextDecoder();
  let text = "";
  const buffer = new Uint8Array(4096);
  const deadline = Date.now() + CLOSED_WITHIN;
  for (;;) {
    let timer: ReturnType<typeof setTimeout> | undefined;
    const wait = new Promise<"open">((resolve) => {
      timer = setTimeout(() => resolve("open"), Math.max(0, deadline - Date.now()));
    });
    const read = conn.read(buffer).catch(() => null);
    const n = await Promise.race([read, wait]);
    clearTimeout(timer);
    if (n === "open") {
      read.then(() => {}, () => {});
      return { state: "open", text };
    }
    if (n === null) return { state: "closed", text };
    text += decoder.decode(buffer.subarray(0, n));
  }
}

Deno.test("slowloris: a request head sent one line every 0.5 s is closed after headerTimeout", async () => {
  await using gw = await startGateway({
    listeners: { web: guardedListener() },
    routes: [{ target: { respond: { body: "hello" } } }],
  });
  const port = await gw.port("web");
  const conn = await Deno.connect({ hostname: "127.0.0.1", port });
  try {
    await conn.write(encoder.encode("GET / HTTP/1.1\r\nHost: a\r\n"));
    let line = 0;
    const trickle = setInterval(() => {
      conn.write(encoder.encode(`X-Slow-${line++}: yes\r\n`)).catch(() => clearInterval(trickle));
    }, 500);
    const { state, text } = await outcome(conn);
    clearInterval(trickle);
    assertEquals(state, "closed", "the gateway closed the slow head");
    assertEquals(text, "", "no response to a head that never ended");
    assert(line >= 1, "at least one header line was trickled in before the close");
  } finally {
    conn.close();
  }
});

Deno.test("an idle keep-alive connection is closed after idleTimeout; an active one is served", async () => {
  await using gw = await startGateway({
    listeners: { web: guardedListener() },
    routes: [{ target: { respond: { body: "hello" } } }],
  });
  const port = await gw.port("web");
  const conn = await Deno.connect({ hostname: "127.0.0.1", port });
  try {
    for (let i = 0; i < 3; i++) {
      await conn.write(encoder.encode("GET / HTTP/1.1\r\nHost: a\r\n\r\n"));
      const buffer = new Uint8Array(4096);
      const n = await conn.read(buffer);
      assertStringIncludes(new TextDecoder().decode(buffer.subarray(0, n ?? 0)), "hello");
    }
    const { state } = await outcome(conn);
    assertEquals(state, "closed", "closed once idle");
  } finally {
    conn.close();
  }
});

Deno.test("a request body that stops arriving is closed after bodyTimeout", async () => {
  // An upstream that reads the whole body before answering: the request stays in flight.
  const upstream = Deno.serve(
    { hostname: "127.0.0.1", port: 0, onListen() {} },
    async (request) => new Response(`got ${(await request.text()).length}`),
  );
  try {
    await using gw = await startGateway({
      listeners: { web: guardedListener() },
      routes: [{ target: { upstream: "api" } }],
      upstreams: { api: { targets: [`http://127.0.0.1:${upstream.addr.port}`] } },
    });
    const port = await gw.port("web");
    const conn = await Deno.connect({ hostname: "127.0.0.1", port });
    try {
      await conn.write(
        encoder.encode("POST /up HTTP/1.1\r\nHost: a\r\nContent-Length: 100\r\n\r\n0123456789"),
      );
      const { state } = await outcome(conn);
      assertEquals(state, "closed", "the stalled body's connection was closed");
    } finally {
      conn.close();
    }
  } finally {
    await upstream.shutdown();
  }
});

Deno.test("the connection past maxPerIp is refused and counted; the others are served", async () => {
  await using gw = await startGateway({
    listeners: {
      web: guardedListener({ maxPerIp: 3, headerTimeout: 60_000, idleTimeout: 60_000 }),
    },
    routes: [{ target: { respond: { body: "hello" } } }],
  });
  const port = await gw.port("web");
  const held: Deno.Conn[] = [];
  try {
    for (let i = 0; i < 3; i++) held.push(await Deno.connect({ hostname: "127.0.0.1", port }));
    // Each of the three is admitted (answers a request) before the fourth comes.
    for (const conn of held) {
      await conn.write(encoder.encode("GET / HTTP/1.1\r\nHost: a\r\n\r\n"));
      const n = await conn.read(new Uint8Array(4096));
      assert(n !== null && n > 0, "an admitted connection is served");
    }
    const extra = await Deno.connect({ hostname: "127.0.0.1", port });
    held.push(extra);
    await extra.write(encoder.encode("GET / HTTP/1.1\r\nHost: a\r\n\r\n")).catch(() => {});
    const { state, text } = await outcome(extra);
    assertEquals(state, "closed");
    assertEquals(text, "", "the fourth connection got no response");
    const metrics = await (await gw.admin("/metrics")).text();
    assertStringIncludes(
      metrics,
      'gateway_connections_refused_total{listener="web",reason="ip_limit"} 1',
    );
    await held[0].write(encoder.encode("GET / HTTP/1.1\r\nHost: a\r\n\r\n"));
    const n = await held[0].read(new Uint8Array(4096));
    assert(n !== null && n > 0, "the first connection is still served");
  } finally {
    for (const conn of held) conn.close();
  }
});

for (const guard of [false, true]) {
  Deno.test(`guard ${guard}: connections of a restarted listener are closed at its drainTimeout`, async () => {
    // An upstream whose responses never end: only the drain deadline can close them.
    const upstream = Deno.serve(
      { hostname: "127.0.0.1", port: 0, onListen() {} },
      () =>
        new Response(
          new ReadableStream({ start: (c) => c.enqueue(encoder.encode("first chunk\n")) }),
        ),
    );
    try {
      const config = (drainTimeout: number) => ({
        listeners: {
          web: {
            ...guardedListener({ idleTimeout: 60_000 }),
            ...(guard ? {} : { guard: false }),
            drainTimeout,
          },
        },
        routes: [{ target: { upstream: "api" } }],
        upstreams: { api: { targets: [`http://127.0.0.1:${upstream.addr.port}`] } },
      });
      await using gw = await startGateway(config(1000));
      const port = await gw.port("web");
      const conn = await Deno.connect({ hostname: "127.0.0.1", port });
      try {
        await conn.write(encoder.encode("GET /stream HTTP/1.1\r\nHost: a\r\n\r\n"));
        const buffer = new Uint8Array(4096);
        let head = "";
        await until("the first chunk of the endless response", async () => {
          const n = await conn.read(buffer);
          head += new TextDecoder().decode(buffer.subarray(0, n ?? 0));
          return head.includes("first chunk");
        });
        // A changed setting restarts the listener on its address: the old one drains, then stops.
        await gw.writeConfig({
          ...config(1001),
          admin: { host: "127.0.0.1", port: 0, token: ADMIN_TOKEN },
          log: { level: "info", format: "json" },
        });
        await (await gw.admin("/reload", { method: "POST" })).body?.cancel();
        await gw.waitForLine(/config reloaded/);
        const { state } = await outcome(conn);
        assertEquals(state, "closed", "the old listener's connection was closed after the drain");
      } finally {
        conn.close();
      }
    } finally {
      await upstream.shutdown();
    }
  });
}
