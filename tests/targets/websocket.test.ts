import { serveTarget } from "../helpers/test_server.ts";
import { assertEquals } from "../helpers/assert.ts";
import { freePort } from "../helpers/gateway.ts";
import { Bus } from "../../src/bus/bus.ts";
import type { BusMessage } from "../../src/bus/message.ts";
import { UpstreamConfig } from "../../src/upstreams/config.ts";
import { WebSocketTargetConfig } from "../../src/targets/config.ts";
import { ConnectionManager } from "../../src/connections/manager.ts";
import { MetricsRegistry } from "../../src/observability/metrics.ts";
import { createWebSocketTarget } from "../../src/targets/websocket.ts";
import { createHttp1Client } from "../../src/upstreams/http1_client.ts";
import { Upstream } from "../../src/upstreams/upstream.ts";
import { TargetStatePool } from "../../src/upstreams/target_state.ts";

const encoder = new TextEncoder();
const decoder = new TextDecoder();
const ROUTE = "test-route";
const GATEWAY_SOURCE = { listener: "gateway", protocol: "gateway" } as const;

/** A WebSocket target on `/ws/:name` of a loopback server, with a real bus and connection manager. */
interface TestGateway extends AsyncDisposable {
  port: number;
  /** `ws://127.0.0.1:<port>/ws/` */
  wsUrl: string;
  bus: Bus;
  connections: ConnectionManager;
  /** Sockets closed as slow consumers so far. */
  slowConsumers: () => number;
}

function serveWebSocketTarget(config: Record<string, unknown>, upstream?: Upstream): TestGateway {
  const metrics = new MetricsRegistry();
  const bus = new Bus(metrics);
  const connections = new ConnectionManager(bus, metrics);
  let slowConsumers = 0;
  const target = createWebSocketTarget(WebSocketTargetConfig.parse(config), {
    bus,
    connections,
    upstream,
    onSlowConsumer: () => slowConsumers++,
  });
  const server = serveTarget(target, { path: "/ws/:name", route: ROUTE });
  return {
    port: server.port,
    wsUrl: `ws://127.0.0.1:${server.port}/ws/`,
    bus,
    connections,
    slowConsumers: () => slowConsumers,
    async [Symbol.asyncDispose]() {
      await server[Symbol.asyncDispose]();
      connections.stop();
    },
  };
}

/** Polls `condition` every 10 ms, at most 1,000 times. */
async function waitFor(condition: () => boolean, what: string): Promise<void> {
  for (let i = 0; i < 1000; i++) {
    if (condition()) return;
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
  throw new Error(`gave up waiting for ${what}`);
}

/** A browser-style client (it answers pings) with its messages queued for the test. */
class TestClient implements AsyncDisposable {
  readonly socket: WebSocket;
  readonly #messages: (string | ArrayBuffer)[] = [];
  #waiting?: () => void;
  readonly opened: Promise<void>;
  readonly closed: Promise<CloseEvent>;

  constructor(url: string, protocols?: string[]) {
    this.socket = new WebSocket(url, protocols);
    this.socket.binaryType = "arraybuffer";
    this.socket.onmessage = (event) => {
      this.#messages.push(event.data);
      this.#waiting?.();
    };
    this.opened = new Promise((resolve, reject) => {
      this.socket.onopen = () => resolve();
      this.socket.onerror = () => reject(new Error(`could not open ${url}`));
    });
    this.closed = new Promise((resolve) => this.socket.onclose = resolve);
  }

  static async open(url: string, protocols?: string[]): Promise<TestClient> {
    const client = new TestClient(url, protocols);
    await client.opened;
    return client;
  }

  /** The next message: a string for a text frame, an ArrayBuffer for a binary one. */
  async next(): Promise<string | ArrayBuffer> {
    for (let i = 0; i < 1000 && this.#messages.length === 0; i++) {
      await Promise.race([
        new Promise<void>((resolve) => this.#waiting = resolve),
        this.closed.then(() => {
          throw new Error("closed while waiting for a message");
        }),
      ]);
    }
    return this.#messages.shift()!;
  }

  async [Symbol.asyncDispose](): Promise<void> {
    this.socket.close();
    await this.closed;
  }
}

/** A client that speaks WebSocket by hand over TCP: it never answers pings and reads only when told. */
class RawClient {
  /** The status code of the response to the upgrade request. */
  status = 0;
  #buffered = new Uint8Array(0);

  private constructor(readonly conn: Deno.TcpConn) {}

  /** Connects, sends the upgrade request and reads the response head. */
  static async connect(
    port: number,
    path: string,
    headers: Record<string, string> = {},
  ): Promise<RawClient> {
    const conn = await Deno.connect({ hostname: "127.0.0.1", port });
    const extra = Object.entries(headers).map(([name, value]) => `${name}: ${value}\r\n`).join("");
    await conn.write(encoder.encode(
      `GET ${path} HTTP/1.1\r\nHost: 127.0.0.1:${port}\r\nUpgrade: websocket\r\n` +
        `Connection: Upgrade\r\nSec-WebSocket-Key: ${btoa("raw-client-key!!")}\r\n` +
        `Sec-WebSocket-Version: 13\r\n${extra}\r\n`,
    ));
    const client = new RawClient(conn);
    const end = await client.#fill((bytes) => {
      const at = decoder.decode(bytes).indexOf("\r\n\r\n");
      return at < 0 ? undefined : at + 4;
    });
    client.status = Number(decoder.decode(client.#buffered.subarray(0, end)).split(" ")[1]);
    client.#buffered = client.#buffered.subarray(end);
    return client;
  }

  /** Reads until `complete` returns how many bytes make a unit (at most 100,000 reads). */
  async #fill(complete: (bytes: Uint8Array) => number | undefined): Promise<number> {
    const chunk = new Uint8Array(65_536);
    for (let reads = 0; reads < 100_000; reads++) {
      const end = complete(this.#buffered);
      if (end !== undefined) return end;
      const n = await this.conn.read(chunk);
      if (n === null) throw new Error("connection closed by the server");
      const joined = new Uint8Array(this.#buffered.length + n);
      joined.set(this.#buffered);
      joined.set(chunk.subarray(0, n), this.#buffered.length);
      this.#buffered = joined;
    }
    throw new Error("too many reads");
  }

  /** Reads server frames until a close frame; returns the opcodes seen and the close code. */
  async readUntilClose(): Promise<{ opcodes: number[]; code: number }> {
    const opcodes: number[] = [];
    for (let frames = 0; frames < 100_000; frames++) {
      let payloadStart = 0;
      const end = await this.#fill((bytes) => {
        if (bytes.length < 2) return undefined;
        const length7 = bytes[1] & 0x7f;
        const header = length7 === 126 ? 4 : length7 === 127 ? 10 : 2;
        if (bytes.length < header) return undefined;
        const view = new DataView(bytes.buffer, bytes.byteOffset);
        const length = length7 === 126
          ? view.getUint16(2)
          : length7 === 127
          ? Number(view.getBigUint64(2))
          : length7;
        payloadStart = header;
        return bytes.length >= header + length ? header + length : undefined;
      });
      const opcode = this.#buffered[0] & 0x0f;
      opcodes.push(opcode);
      const payload = this.#buffered.subarray(payloadStart, end);
      this.#buffered = this.#buffered.subarray(end);
      if (opcode === 8) return { opcodes, code: (payload[0] << 8) | payload[1] };
    }
    throw new Error("no close frame");
  }
}

/** An upstream WebSocket server that echoes, closes with 4001 on "close-4001", and records what it saw. */
function serveEchoUpstream() {
  const seen = { urls: [] as string[], closeCodes: [] as number[] };
  const server = Deno.serve({ hostname: "127.0.0.1", port: 0, onListen() {} }, (request) => {
    seen.urls.push(new URL(request.url).pathname + new URL(request.url).search);
    const offered = request.headers.get("sec-websocket-protocol")?.split(",")[0].trim();
    const { socket, response } = Deno.upgradeWebSocket(request, { protocol: offered });
    socket.onmessage = (event) => {
      if (event.data === "close-4001") socket.close(4001, "bye");
      else socket.send(event.data);
    };
    socket.onclose = (event) => seen.closeCodes.push(event.code);
    return response;
  });
  return { url: `http://127.0.0.1:${server.addr.port}`, seen, server };
}

Deno.test("426 for a request that does not ask to upgrade", async () => {
  await using gateway = serveWebSocketTarget({});
  const res = await fetch(`http://127.0.0.1:${gateway.port}/ws/x`);
  assertEquals(res.status, 426);
  assertEquals(res.headers.get("upgrade"), "websocket");
  assertEquals((await res.json()).error.code, "upgrade_required");
});

Deno.test("a connection over the route's limits is refused with 503 before upgrading", async () => {
  await using gateway = serveWebSocketTarget({
    limits: { maxConnections: 1, maxPerIp: 1, idleTimeout: 0 },
  });
  await using admitted = await TestClient.open(`${gateway.wsUrl}x`);
  const refused = await RawClient.connect(gateway.port, "/ws/x");
  refused.conn.close();
  assertEquals(refused.status, 503);
  assertEquals(admitted.socket.readyState, WebSocket.OPEN);
});

Deno.test("bus mode: messages reach a subscriber with text and binary kept; replies and pushes come back", async () => {
  await using gateway = serveWebSocketTarget({ topic: "ws/{route}/{name}/{connectionId}" });
  const published: BusMessage[] = [];
  gateway.bus.subscribe(`ws/${ROUTE}/+/+`, (message) => {
    published.push(message);
    const text = decoder.decode(message.payload);
    if (text === "as binary") message.reply?.(message.payload, { type: "binary" });
    else if (message.meta.type === "text") message.reply?.(encoder.encode(text.toUpperCase()));
    else message.reply?.(message.payload.toReversed());
  }, { owner: "test" });
  await using client = await TestClient.open(`${gateway.wsUrl}kitchen`);
  const [info] = gateway.connections.list({ listener: ROUTE });

  client.socket.send("hello");
  assertEquals(await client.next(), "HELLO");
  client.socket.send(new Uint8Array([1, 2, 3]));
  assertEquals(new Uint8Array(await client.next() as ArrayBuffer), new Uint8Array([3, 2, 1]));
  client.socket.send("as binary");
  assertEquals(decoder.decode(await client.next() as ArrayBuffer), "as binary");

  assertEquals(published.map((message) => message.topic), [
    `ws/${ROUTE}/kitchen/${info.id}`,
    `ws/${ROUTE}/kitchen/${info.id}`,
    `ws/${ROUTE}/kitchen/${info.id}`,
  ]);
  assertEquals(published.map((message) => message.meta.type), ["text", "binary", "text"]);
  assertEquals(published[0].source, { listener: ROUTE, protocol: "ws", connectionId: info.id });

  gateway.bus.publish({
    topic: `conn/${info.id}/send`,
    payload: encoder.encode("pushed"),
    source: GATEWAY_SOURCE,
    meta: {},
  });
  assertEquals(decoder.decode(await client.next() as ArrayBuffer), "pushed");
  const counted = gateway.connections.get(info.id)!;
  assertEquals([counted.framesIn, counted.framesOut], [3, 4]);

  client.socket.close();
  await client.closed;
  await waitFor(() => gateway.connections.openCount === 0, "the connection to be released");
});

Deno.test("device-id handshake: the first message binds the device; device pushes arrive", async () => {
  await using gateway = serveWebSocketTarget({
    topic: "devices/{deviceId}/up",
    handshake: "device-id",
  });
  const topics: string[] = [];
  gateway.bus.subscribe("devices/#", (message) => {
    topics.push(message.topic);
  }, { owner: "test" });
  await using client = await TestClient.open(`${gateway.wsUrl}any`);
  client.socket.send("sensor-7");
  client.socket.send("t=21");
  await waitFor(() => topics.length === 1, "the telemetry message");
  assertEquals(topics, ["devices/sensor-7/up"]);
  assertEquals(gateway.connections.list({ deviceId: "sensor-7" }).length, 1);

  gateway.bus.publish({
    topic: "device/sensor-7/send",
    payload: encoder.encode("set t=19"),
    source: GATEWAY_SOURCE,
    meta: {},
  });
  assertEquals(decoder.decode(await client.next() as ArrayBuffer), "set t=19");

  await using bad = await TestClient.open(`${gateway.wsUrl}any`);
  bad.socket.send("no/slashes");
  assertEquals((await bad.closed).code, 1008);
});

Deno.test("subprotocol: the first acceptable in config order; none offered is none; none acceptable is 400", async () => {
  await using gateway = serveWebSocketTarget({ protocols: ["v2", "v1"] });
  await using both = await TestClient.open(`${gateway.wsUrl}x`, ["v1", "v2"]);
  assertEquals(both.socket.protocol, "v2");
  await using none = await TestClient.open(`${gateway.wsUrl}x`);
  assertEquals(none.socket.protocol, "");

  const refused = await RawClient.connect(gateway.port, "/ws/x", {
    "Sec-WebSocket-Protocol": "v3, v4",
  });
  refused.conn.close();
  assertEquals(refused.status, 400);
});

Deno.test("a message over maxMessageSize closes the socket with 1009", async () => {
  await using gateway = serveWebSocketTarget({ maxMessageSize: 16 });
  const sizes: number[] = [];
  gateway.bus.subscribe("ws/#", (message) => {
    sizes.push(message.payload.length);
  }, { owner: "test" });
  await using client = await TestClient.open(`${gateway.wsUrl}x`);
  client.socket.send(new Uint8Array(16));
  client.socket.send(new Uint8Array(17));
  const closed = await client.closed;
  assertEquals(closed.code, 1009);
  await waitFor(() => sizes.length === 1, "the message within the limit");
  assertEquals(sizes, [16]);
});

Deno.test("messages over the route's messageRate close the socket with 1008; the burst is delivered", async () => {
  await using gateway = serveWebSocketTarget({
    limits: { messageRate: { perSecond: 1, burst: 5 } },
  });
  let delivered = 0;
  gateway.bus.subscribe("ws/#", () => {
    delivered++;
  }, { owner: "test" });
  await using client = await TestClient.open(`${gateway.wsUrl}x`);
  // One more than the burst; more after it would reach a socket already closing.
  for (let i = 0; i < 6; i++) client.socket.send("m");
  const closed = await client.closed;
  assertEquals([closed.code, closed.reason], [1008, "message rate exceeded"]);
  assertEquals(delivered, 5);
});

Deno.test("heartbeat: a client that never answers pings is closed; one that answers stays", async () => {
  await using gateway = serveWebSocketTarget({ heartbeat: 100 });
  await using answering = await TestClient.open(`${gateway.wsUrl}x`);
  const silent = await RawClient.connect(gateway.port, "/ws/x");
  assertEquals(silent.status, 101);
  const { opcodes, code } = await silent.readUntilClose();
  silent.conn.close();
  assertEquals(opcodes, [9, 8], "a ping, then the close");
  assertEquals(code, 1001);
  await waitFor(() => gateway.connections.openCount === 1, "the silent connection to be released");
  assertEquals(answering.socket.readyState, WebSocket.OPEN);
});

Deno.test("a slow consumer is closed with 1008 while another client keeps receiving", async () => {
  await using gateway = serveWebSocketTarget({ sendQueueLimit: 65_536 });
  const slow = await RawClient.connect(gateway.port, "/ws/x");
  const [slowInfo] = gateway.connections.list();
  await using fast = await TestClient.open(`${gateway.wsUrl}x`);
  const fastInfo = gateway.connections.list().find((info) => info.id !== slowInfo.id)!;

  const chunk = new Uint8Array(65_536);
  const push = (id: string) =>
    gateway.bus.publish({
      topic: `conn/${id}/send`,
      payload: chunk,
      source: GATEWAY_SOURCE,
      meta: {},
    });
  let pushes = 0;
  for (; pushes < 2000 && gateway.slowConsumers() === 0; pushes++) {
    push(slowInfo.id);
    push(fastInfo.id);
    assertEquals((await fast.next() as ArrayBuffer).byteLength, chunk.length);
  }
  assertEquals(gateway.slowConsumers(), 1);
  push(fastInfo.id);
  assertEquals((await fast.next() as ArrayBuffer).byteLength, chunk.length);
  assertEquals(fast.socket.readyState, WebSocket.OPEN);

  // Now it reads: everything queued before the close, then the close frame.
  const { opcodes, code } = await slow.readUntilClose();
  slow.conn.close();
  assertEquals(code, 1008);
  const sent = [...Array(pushes - 1).fill(2), 8];
  assertEquals(
    opcodes,
    sent,
    "binary pushes up to the one that found the queue full, then the close",
  );
  await waitFor(() => gateway.connections.openCount === 1, "the slow connection to be released");
});

Deno.test("proxy mode: echoes through an upstream with path, subprotocol, frame kinds and close codes kept", async () => {
  const echo = serveEchoUpstream();
  const deadUrl = `http://127.0.0.1:${freePort()}`;
  const client = createHttp1Client();
  const upstream = new Upstream(
    "echo",
    UpstreamConfig.parse({ targets: [deadUrl, echo.url], retries: 1 }),
    client,
    new TargetStatePool(),
  );
  await using gateway = serveWebSocketTarget({ mode: "proxy", upstream: "echo" }, upstream);

  // Round-robin picks the dead target first; the connect fails over to the echo server.
  const first = await TestClient.open(`${gateway.wsUrl}room?x=1`, ["chat"]);
  assertEquals(first.socket.protocol, "chat");
  assertEquals(echo.seen.urls, ["/ws/room?x=1"]);
  first.socket.send("hi");
  assertEquals(await first.next(), "hi");
  first.socket.send(new Uint8Array([7, 8]));
  assertEquals(new Uint8Array(await first.next() as ArrayBuffer), new Uint8Array([7, 8]));
  first.socket.send("close-4001");
  const upstreamClosed = await first.closed;
  assertEquals([upstreamClosed.code, upstreamClosed.reason], [4001, "bye"]);

  const second = await TestClient.open(`${gateway.wsUrl}room`);
  second.socket.close(4002, "done");
  await second.closed;
  await waitFor(() => echo.seen.closeCodes.length === 2, "the upstream to see both closes");
  assertEquals(echo.seen.closeCodes, [4001, 4002]);
  await waitFor(
    () => upstream.snapshot().targets.every((target) => target.inFlight === 0),
    "the upstream targets to be released",
  );
  await waitFor(() => gateway.connections.openCount === 0, "the connections to be released");

  await echo.server.shutdown();
  await upstream.stop();
  client.close();
});

Deno.test("proxy mode: an unreachable upstream is a 502 before any upgrade", async () => {
  const client = createHttp1Client();
  const upstream = new Upstream(
    "dead",
    UpstreamConfig.parse({ targets: [`http://127.0.0.1:${freePort()}`] }),
    client,
    new TargetStatePool(),
  );
  await using gateway = serveWebSocketTarget({ mode: "proxy", upstream: "dead" }, upstream);
  const raw = await RawClient.connect(gateway.port, "/ws/x");
  raw.conn.close();
  assertEquals(raw.status, 502);
  assertEquals(gateway.connections.openCount, 0);
  await upstream.stop();
  client.close();
});
