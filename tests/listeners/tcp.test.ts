import { configure, type LogRecord, reset } from "@logtape/logtape";
import { assert, assertEquals, assertStringIncludes } from "../helpers/assert.ts";
import { Bus } from "../../src/bus/bus.ts";
import type { BusMessage } from "../../src/bus/message.ts";
import { TcpListenerConfig } from "../../src/listeners/config.ts";
import { UpstreamConfig } from "../../src/upstreams/config.ts";
import { ConnectionManager } from "../../src/connections/manager.ts";
import { TcpListener } from "../../src/listeners/tcp.ts";
import { StreamServer } from "../../src/listeners/stream_connection.ts";
import { MetricsRegistry } from "../../src/observability/metrics.ts";
import type { UpstreamClient } from "../../src/upstreams/client.ts";
import { Upstream } from "../../src/upstreams/upstream.ts";
import { TargetStatePool } from "../../src/upstreams/target_state.ts";

const encoder = new TextEncoder();
const decoder = new TextDecoder();

/** Rejects with `what` when `promise` takes longer than `ms` (a guard against hanging, not a timing assertion). */
async function within<T>(promise: Promise<T>, what: string, ms = 5000): Promise<T> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`timed out: ${what}`)), ms);
  });
  try {
    return await Promise.race([promise, timeout]);
  } finally {
    clearTimeout(timer);
  }
}

/** Reads from `conn` until `text` holds `done`, or the stream ends; returns everything read. */
async function readUntil(conn: Deno.Conn, done: (text: string) => boolean): Promise<string> {
  const chunk = new Uint8Array(64 * 1024);
  let text = "";
  await within(
    (async () => {
      while (!done(text)) {
        const n = await conn.read(chunk).catch(() => null);
        if (n === null) return;
        text += decoder.decode(chunk.subarray(0, n));
      }
    })(),
    "reading from the listener",
  );
  return text;
}

/** Whether the server closed `conn` (read ends or fails), after draining what it sent. */
async function closedByServer(conn: Deno.Conn): Promise<boolean> {
  const chunk = new Uint8Array(64 * 1024);
  return await within(
    (async () => {
      for (;;) {
        const n = await conn.read(chunk).catch(() => null);
        if (n === null) return true;
      }
    })(),
    "waiting for the server to close",
  );
}

/** A real bus and connection manager, and a listener built on them. */
function setup(config: Record<string, unknown>, upstreams = new Map<string, Upstream>()) {
  const metrics = new MetricsRegistry();
  const bus = new Bus(metrics);
  const connections = new ConnectionManager(bus, metrics, { maxOpenFiles: 100_000 });
  const listener = new TcpListener(
    "plc",
    TcpListenerConfig.parse({ type: "tcp", port: 0, ...config }),
    { bus, connections, upstreams },
  );
  listener.start();
  const connect = () => Deno.connect({ hostname: "127.0.0.1", port: listener.port });
  const close = async (...conns: Deno.Conn[]) => {
    for (const conn of conns) {
      try {
        conn.close();
      } catch {
        // closed by the server
      }
    }
    await listener.stop();
    connections.stop();
  };
  return { bus, connections, listener, connect, close };
}

/** Records the gateway's log lines while `body` runs. */
async function withLogs(body: (lines: string[]) => Promise<void>): Promise<void> {
  const lines: string[] = [];
  await configure({
    reset: true,
    sinks: {
      memory: (record: LogRecord) => lines.push(record.message.map(String).join("")),
    },
    loggers: [
      { category: ["gateway"], lowestLevel: "debug", sinks: ["memory"] },
      { category: ["logtape", "meta"], lowestLevel: "warning", sinks: [] },
    ],
  });
  try {
    await body(lines);
  } finally {
    await reset();
  }
}

Deno.test("bus mode: frames reach subscribers, replies come back framed", async () => {
  const { bus, connect, close } = setup({ framing: { type: "line" } });
  const seen: BusMessage[] = [];
  bus.subscribe("tcp/plc/+", (message) => {
    seen.push(message);
    message.reply?.(encoder.encode(decoder.decode(message.payload).toUpperCase()));
  }, { owner: "test" });
  const client = await connect();
  try {
    await client.write(encoder.encode("hello\r\nwor"));
    await client.write(encoder.encode("ld\nagain\n"));
    assertEquals(
      await readUntil(client, (text) => text.split("\n").length > 3),
      "HELLO\nWORLD\nAGAIN\n",
    );
    assertEquals(seen.length, 3);
    const { topic, source } = seen[0];
    assertEquals(topic, `tcp/plc/${source.connectionId}`);
    assertEquals(source.listener, "plc");
    assertEquals(source.protocol, "tcp");
  } finally {
    await close(client);
  }
});

Deno.test("bus mode: pushes from the bus reach the connection by id", async () => {
  const { bus, connections, connect, close } = setup({ framing: { type: "length", bytes: 2 } });
  const client = await connect();
  try {
    await client.write(new Uint8Array([0, 2, 0x68, 0x69]));
    await within(
      (async () => {
        while (connections.openCount === 0 || connections.list()[0].framesIn === 0) {
          await new Promise((resolve) => setTimeout(resolve, 5));
        }
      })(),
      "the connection to be admitted",
    );
    const [{ id }] = connections.list({ listener: "plc" });
    bus.publish({
      topic: `conn/${id}/send`,
      payload: encoder.encode("pushed"),
      source: { listener: "test", protocol: "gateway" },
      meta: {},
    });
    const reply = new Uint8Array(8);
    assertEquals(await within(client.read(reply), "the push"), 8);
    assertEquals(reply, new Uint8Array([0, 6, ...encoder.encode("pushed")]));
  } finally {
    await close(client);
  }
});

Deno.test("an oversized frame closes that connection only, logging listener, peer and offset", async () => {
  await withLogs(async (logs) => {
    const { bus, connect, close } = setup({ framing: { type: "line", maxLength: 16 } });
    const seen: string[] = [];
    bus.subscribe("tcp/plc/+", (message) => {
      seen.push(decoder.decode(message.payload));
      message.reply?.(message.payload);
    }, { owner: "echo" });
    const good = await connect();
    const bad = await connect();
    try {
      await bad.write(encoder.encode(`ok\n${"x".repeat(40)}\n`));
      assert(await closedByServer(bad), "the bad connection is closed");
      await good.write(encoder.encode("still here\n"));
      assertEquals(await readUntil(good, (text) => text.endsWith("\n")), "still here\n");
      assertEquals(seen, ["ok", "still here"], "the frame before the oversized one was published");
      const line = logs.find((text) => text.includes("maximum of 16 bytes"));
      assert(line, `no log line about the frame in ${Deno.inspect(logs)}`);
      const { port } = bad.localAddr as Deno.NetAddr;
      assertStringIncludes(line, `listener "plc"`);
      assertStringIncludes(line, `127.0.0.1:${port}`);
      assertStringIncludes(line, "at byte 19");
    } finally {
      await close(good, bad);
    }
  });
});

Deno.test("a slow consumer is closed once its replies pile up past the limit", async () => {
  await withLogs(async (logs) => {
    const { bus, connect, close } = setup({ framing: { type: "raw" } });
    const big = new Uint8Array(64 * 1024).fill(0x61);
    bus.subscribe("tcp/plc/+", (message) => {
      if (decoder.decode(message.payload) !== "flood") return;
      for (let i = 0; i < 64; i++) message.reply?.(big);
    }, { owner: "flood" });
    const client = await connect();
    try {
      await client.write(encoder.encode("flood"));
      assert(await closedByServer(client), "the flooded connection is closed");
      assert(logs.some((line) => line.includes("slow consumer")), Deno.inspect(logs));
    } finally {
      await close(client);
    }
  });
});

Deno.test("handshake: the first frame binds the device id and is not published", async () => {
  const { bus, connections, connect, close } = setup({
    framing: { type: "delimiter", delimiter: "hex:00" },
    handshake: "device-id",
    topic: "devices/{deviceId}/{listener}",
  });
  const seen: BusMessage[] = [];
  bus.subscribe("devices/#", (message) => {
    seen.push(message);
    message.reply?.(encoder.encode("ack"));
  }, { owner: "test" });
  const client = await connect();
  try {
    await client.write(encoder.encode("meter-7\0reading=3\0"));
    assertEquals(await readUntil(client, (text) => text.includes("\0")), "ack\0");
    assertEquals(seen.map((message) => message.topic), ["devices/meter-7/plc"]);
    assertEquals(seen[0].source.deviceId, "meter-7");
    assertEquals(decoder.decode(seen[0].payload), "reading=3");
    assertEquals(connections.list({ deviceId: "meter-7" }).length, 1);
    bus.publish({
      topic: "device/meter-7/send",
      payload: encoder.encode("set=1"),
      source: { listener: "test", protocol: "gateway" },
      meta: {},
    });
    assertEquals(await readUntil(client, (text) => text.includes("\0")), "set=1\0");
  } finally {
    await close(client);
  }
});

Deno.test("handshake: an invalid device id closes the connection", async () => {
  const { bus, connect, close } = setup({ handshake: "device-id" });
  const seen: BusMessage[] = [];
  bus.subscribe("#", (message) => void seen.push(message), { owner: "test" });
  const client = await connect();
  try {
    await client.write(encoder.encode("bad/id\nreading\n"));
    assert(await closedByServer(client), "closed after a bad handshake");
    assertEquals(seen, []);
  } finally {
    await close(client);
  }
});

Deno.test("connections over the listener's limit are refused and closed", async () => {
  const { bus, connect, close } = setup({ limits: { maxConnections: 1 } });
  bus.subscribe("tcp/plc/+", (message) => message.reply?.(message.payload), { owner: "echo" });
  const first = await connect();
  await first.write(encoder.encode("one\n"));
  assertEquals(await readUntil(first, (text) => text.endsWith("\n")), "one\n");
  const second = await connect();
  try {
    assert(await closedByServer(second), "the second connection is refused");
  } finally {
    await close(first, second);
  }
});

Deno.test("stop closes open connections and is idempotent", async () => {
  const { listener, connect, close } = setup({});
  const client = await connect();
  await client.write(encoder.encode("x\n"));
  const closed = closedByServer(client);
  await listener.stop();
  assert(await closed, "the client sees the close");
  await close(client);
});

Deno.test("a port in use is an error naming the listener, port and host", () => {
  const taken = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const metrics = new MetricsRegistry();
  const bus = new Bus(metrics);
  const listener = new TcpListener(
    "plc",
    TcpListenerConfig.parse({ type: "tcp", port: taken.addr.port }),
    { bus, connections: new ConnectionManager(bus, metrics), upstreams: new Map() },
  );
  try {
    listener.start();
    throw new Error("start should have failed");
  } catch (error) {
    assertEquals(
      (error as Error).message,
      `listener "plc": port ${taken.addr.port} on 127.0.0.1 is already in use`,
    );
  } finally {
    taken.close();
  }
});

/** An echo server on loopback; resolves `port` and closes on dispose. */
function startEchoServer() {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const served: Promise<void>[] = [];
  const accepting = (async () => {
    for await (const conn of listener) {
      served.push((async () => {
        await conn.readable.pipeTo(conn.writable).catch(() => {});
      })());
    }
  })();
  return {
    port: listener.addr.port,
    async [Symbol.asyncDispose]() {
      listener.close();
      await accepting;
      await Promise.all(served);
    },
  };
}

/** A loopback port where nothing listens. */
function deadPort(): number {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  listener.close();
  return listener.addr.port;
}

const noHttpClient: UpstreamClient = {
  request: () => Promise.reject(new Error("not used")),
  close() {},
};

Deno.test("proxy mode pipes both ways to a target, failing over from a dead one", async () => {
  await using echo = startEchoServer();
  const upstream = new Upstream(
    "echo",
    UpstreamConfig.parse({
      targets: [`http://127.0.0.1:${deadPort()}`, `http://127.0.0.1:${echo.port}`],
      retries: 1,
    }),
    noHttpClient,
    new TargetStatePool(),
  );
  // The gateway fills in the upstreams of a new config after binding its listeners.
  const upstreams = new Map<string, Upstream>();
  const { connect, connections, close } = setup({ mode: "proxy", upstream: "echo" }, upstreams);
  const clients: Deno.Conn[] = [];
  try {
    const early = await connect();
    clients.push(early);
    assert(await closedByServer(early), "without its upstream a connection is closed");
    upstreams.set("echo", upstream);
    for (const word of ["first", "second", "third"]) {
      const client = await connect();
      clients.push(client);
      await client.write(encoder.encode(`${word}\n`));
      assertEquals(await readUntil(client, (text) => text.endsWith("\n")), `${word}\n`);
    }
    const [dead, alive] = upstream.snapshot().targets;
    assert(dead.failures >= 1, "the dead target's failure was reported");
    assertEquals(alive.failures, 0);
    assertEquals(connections.openCount, 3);
    // A client that ends its side gets the rest of the answer, then both sides close.
    const last = clients[2] as Deno.TcpConn;
    await last.write(encoder.encode("bye\n"));
    await last.closeWrite();
    assertEquals(await readUntil(last, () => false), "bye\n");
  } finally {
    await close(...clients);
  }
  assertEquals(upstream.snapshot().targets.map((target) => target.inFlight), [0, 0]);
});

Deno.test("the accept loop survives accept errors (such as EMFILE) and keeps serving", async () => {
  const real = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  let failuresLeft = 3;
  const flaky = {
    accept: () => {
      if (failuresLeft-- > 0) {
        return Promise.reject(new Error("Too many open files (os error 24)"));
      }
      return real.accept();
    },
    close: () => real.close(),
  } as unknown as Deno.Listener;
  const greeted = Promise.withResolvers<void>();
  const server = new StreamServer('listener "flaky"', flaky, async (conn) => {
    await conn.write(encoder.encode("hi\n"));
    greeted.resolve();
    conn.close();
  });
  const client = await Deno.connect({ hostname: "127.0.0.1", port: real.addr.port });
  try {
    assertEquals(await readUntil(client, (text) => text.endsWith("\n")), "hi\n");
    await within(greeted.promise, "the connection to be served");
  } finally {
    client.close();
    await server.stop();
  }
});
