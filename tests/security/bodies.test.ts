/**
 * Issue 12, item 2: request bodies cannot exhaust the gateway's memory. A
 * target that buffers a body (function, topic, model, OCR, a plugin that
 * reads it) refuses more than its `maxBodySize` (10MB by default) with 413
 * before reading it; bodies held at once are bounded process-wide
 * (`security.limits.maxBufferedBytes`), past which requests answer 503 with
 * `Retry-After`. Proxied routes stream with no default limit, and a
 * configured limit refuses a larger `Content-Length` before a byte is read.
 * Memory is the gateway process's own, read from /proc/<pid>/status.
 */

import { assert, assertEquals } from "../helpers/assert.ts";
import { type GatewayProcess, startGateway } from "../helpers/gateway.ts";
import { EXAMPLES } from "../workers/harness.ts";
import { until } from "../helpers/wait.ts";

const MiB = 1024 * 1024;
const CHUNK = new Uint8Array(MiB).fill(0x61);

/**
 * `VmRSS` or `VmHWM` (peak) of process `pid`, in bytes. Read by `cat`: Deno
 * lets only `--allow-all` read /proc itself.
 */
async function memory(pid: number, field: "VmRSS" | "VmHWM"): Promise<number> {
  const { stdout } = await new Deno.Command("cat", { args: [`/proc/${pid}/status`] }).output();
  const status = new TextDecoder().decode(stdout);
  const kb = new RegExp(`^${field}:\\s+(\\d+) kB`, "m").exec(status)?.[1];
  if (kb === undefined) throw new Error(`no ${field} in /proc/${pid}/status`);
  return Number(kb) * 1024;
}

/** What came back for a raw request: the status, the headers, the body as text. */
interface Answer {
  status: number;
  headers: Headers;
  body: string;
  /** Body bytes the client had sent when the answer's head arrived. */
  sentBeforeAnswer: number;
}

/** How {@link post} sends its body. */
interface BodyPlan {
  /** Bytes of body to send. */
  size: number;
  /** Declare `Content-Length` (the default) or send `Transfer-Encoding: chunked`. */
  chunked?: boolean;
  /** Declare this length instead of `size` (to send less than declared). */
  declared?: number;
  /** Extra request headers. */
  headers?: Record<string, string>;
}

/**
 * POSTs over a raw socket, writing the body 1 MiB at a time while reading the
 * answer; stops writing as soon as the answer's head is in (a server that
 * refuses without reading may close the connection under the writes).
 */
async function post(port: number, path: string, plan: BodyPlan): Promise<Answer> {
  const conn = await Deno.connect({ hostname: "127.0.0.1", port });
  const framing = plan.chunked
    ? "transfer-encoding: chunked"
    : `content-length: ${plan.declared ?? plan.size}`;
  const extra = Object.entries(plan.headers ?? {}).map(([name, value]) => `${name}: ${value}\r\n`);
  const encoder = new TextEncoder();
  let sent = 0;
  let answered = false;
  const answer = readAnswer(conn).then((result) => {
    answered = true;
    return { ...result, sentBeforeAnswer: sent };
  });
  try {
    await conn.write(encoder.encode(
      `POST ${path} HTTP/1.1\r\nhost: 127.0.0.1\r\ncontent-type: application/octet-stream\r\n` +
        `${extra.join("")}${framing}\r\nconnection: close\r\n\r\n`,
    ));
    while (sent < plan.size && !answered) {
      const piece = CHUNK.subarray(0, Math.min(MiB, plan.size - sent));
      if (plan.chunked) await writeAll(conn, encoder.encode(`${piece.length.toString(16)}\r\n`));
      await writeAll(conn, piece);
      if (plan.chunked) await writeAll(conn, encoder.encode("\r\n"));
      sent += piece.length;
    }
    if (plan.chunked && !answered) await writeAll(conn, encoder.encode("0\r\n\r\n"));
  } catch (error) {
    // The server answered and closed while the body was still coming: fine if it answered.
    if (
      !(error instanceof Deno.errors.BrokenPipe || error instanceof Deno.errors.ConnectionReset)
    ) {
      throw error;
    }
  }
  try {
    return await answer;
  } finally {
    conn.close();
  }
}

async function writeAll(conn: Deno.Conn, bytes: Uint8Array): Promise<void> {
  for (let at = 0; at < bytes.length;) at += await conn.write(bytes.subarray(at));
}

/** Reads one response: head, then its `Content-Length` body (or to EOF). */
async function readAnswer(conn: Deno.Conn): Promise<Omit<Answer, "sentBeforeAnswer">> {
  const buffer = new Uint8Array(64 * 1024);
  let received = new Uint8Array(0);
  let headEnd = -1;
  const more = async () => {
    const n = await conn.read(buffer).catch(() => null);
    if (n === null) return false;
    const next = new Uint8Array(received.length + n);
    next.set(received);
    next.set(buffer.subarray(0, n), received.length);
    received = next;
    return true;
  };
  while (headEnd < 0) {
    if (!await more()) throw new Error("the connection closed before an answer");
    headEnd = new TextDecoder().decode(received).indexOf("\r\n\r\n");
  }
  const [statusLine, ...lines] = new TextDecoder().decode(received.subarray(0, headEnd)).split(
    "\r\n",
  );
  const headers = new Headers();
  for (const line of lines) {
    const colon = line.indexOf(":");
    headers.append(line.slice(0, colon).trim(), line.slice(colon + 1).trim());
  }
  const length = Number(headers.get("content-length") ?? Infinity);
  while (received.length - headEnd - 4 < length && await more());
  return {
    status: Number(statusLine.split(" ")[1]),
    headers,
    body: new TextDecoder().decode(received.subarray(headEnd + 4)),
  };
}

/** The gateway's resident set after it has served a few small requests. */
async function settledRss(gw: GatewayProcess, port: number): Promise<number> {
  for (let i = 0; i < 5; i++) {
    await (await fetch(`http://127.0.0.1:${port}/ok`)).text();
  }
  return await memory(gw.child.pid, "VmRSS");
}

const BUFFERING_ROUTES = [
  { match: { path: "/ok" }, target: { respond: { body: "ok" } } },
  { match: { path: "/topic" }, target: { topic: { topic: "bodies/in", mode: "publish" } } },
  { match: { path: "/function" }, target: { function: { name: "worker:python.hello" } } },
];

/** The example Python worker, serving the function route. */
const WORKERS = [{ name: "python", command: EXAMPLES.python }];

Deno.test("a 400 MB POST to a function or topic route is refused 413; memory stays flat", async () => {
  await using gw = await startGateway({
    listeners: { web: { type: "http", host: "127.0.0.1", port: 0 } },
    routes: BUFFERING_ROUTES,
    workers: WORKERS,
  });
  const port = await gw.port("web");
  const before = await settledRss(gw, port);
  for (const path of ["/function", "/topic"]) {
    const answer = await post(port, path, { size: 400 * MiB });
    assertEquals(answer.status, 413, `${path}: ${answer.body}`);
    assert(answer.body.includes("body_too_large"), answer.body);
    // Refused on its declared length: the answer came before most of the body was sent.
    assert(answer.sentBeforeAnswer < 100 * MiB, `${path}: ${answer.sentBeforeAnswer} bytes sent`);
  }
  const growth = await memory(gw.child.pid, "VmHWM") - before;
  assert(growth < 64 * MiB, `peak RSS grew by ${Math.round(growth / MiB)} MiB`);
  assertEquals(await (await fetch(`http://127.0.0.1:${port}/ok`)).text(), "ok");
});

Deno.test("a chunked body over the default limit to a buffering route is refused 413", async () => {
  await using gw = await startGateway({
    listeners: { web: { type: "http", host: "127.0.0.1", port: 0 } },
    routes: BUFFERING_ROUTES,
    workers: WORKERS,
  });
  const port = await gw.port("web");
  const answer = await post(port, "/topic", { size: 40 * MiB, chunked: true });
  assertEquals(answer.status, 413, answer.body);
  assertEquals(await (await fetch(`http://127.0.0.1:${port}/ok`)).text(), "ok");
});

Deno.test("30 parallel 8 MB bodies to a buffering route stay in the body budget; the rest 503", async () => {
  await using gw = await startGateway({
    listeners: { web: { type: "http", host: "127.0.0.1", port: 0 } },
    routes: BUFFERING_ROUTES,
    workers: WORKERS,
  });
  const port = await gw.port("web");
  const before = await settledRss(gw, port);
  const answers = await Promise.all(
    Array.from({ length: 30 }, () => post(port, "/topic", { size: 8 * MiB })),
  );
  // The default budget is 64MB: at most that much held, plus the chunks it is read from.
  const growth = await memory(gw.child.pid, "VmHWM") - before;
  assert(growth < 256 * MiB, `peak RSS grew by ${Math.round(growth / MiB)} MiB`);
  const statuses = answers.map((answer) => answer.status);
  const refused = answers.filter((answer) => answer.status === 503);
  assert(statuses.every((s) => s === 202 || s === 503), `statuses: ${statuses}`);
  assert(refused.length > 0, `none refused: ${statuses}`);
  assert(statuses.includes(202), `none served: ${statuses}`);
  for (const answer of refused) {
    assert(Number(answer.headers.get("retry-after")) >= 1, answer.headers.get("retry-after")!);
    assert(answer.body.includes("body_budget"), answer.body);
  }
  assertEquals(await (await fetch(`http://127.0.0.1:${port}/ok`)).text(), "ok");
});

Deno.test("30 parallel 8 MB bodies to a function served by a Python worker stay in the budget", async () => {
  await using gw = await startGateway({
    listeners: { web: { type: "http", host: "127.0.0.1", port: 0 } },
    routes: BUFFERING_ROUTES,
    workers: WORKERS,
  });
  const port = await gw.port("web");
  await until("the worker to serve", async () => {
    const res = await fetch(`http://127.0.0.1:${port}/function`);
    await res.body?.cancel();
    return res.status === 200;
  });
  const before = await settledRss(gw, port);
  const answers = await Promise.all(
    Array.from({ length: 30 }, () => post(port, "/function", { size: 8 * MiB })),
  );
  // The budget counts the bytes and the base64 the call carries; the frame to the worker is extra.
  const growth = await memory(gw.child.pid, "VmHWM") - before;
  assert(growth < 320 * MiB, `peak RSS grew by ${Math.round(growth / MiB)} MiB`);
  const statuses = answers.map((answer) => answer.status);
  assert(statuses.every((s) => s === 200 || s === 503), `statuses: ${statuses}`);
  assert(statuses.includes(200) && statuses.includes(503), `statuses: ${statuses}`);
});

/** An upstream that counts the body bytes of each request and answers the count. */
function countingUpstream(): { url: string; requests: number[]; server: Deno.HttpServer } {
  const requests: number[] = [];
  const server = Deno.serve({ hostname: "127.0.0.1", port: 0, onListen() {} }, async (request) => {
    let bytes = 0;
    try {
      for await (const chunk of request.body ?? []) bytes += chunk.length;
    } catch {
      return new Response("the body broke off", { status: 400 }); // the gateway gave up on it
    }
    requests.push(bytes);
    return new Response(String(bytes));
  });
  return { url: `http://127.0.0.1:${server.addr.port}`, requests, server };
}

/** A plugin that reads the whole request body when asked to (`x-read`), and says its size. */
const SIZER = `export default {
  name: "sizer",
  version: "1.0.0",
  async onRequest(req) {
    if (!req.headers["x-read"]) return;
    const size = (await req.bytes()).length;
    return { headers: { ...req.headers, "x-body-bytes": String(size) } };
  },
};
`;

Deno.test("an upstream route streams a large chunked body with no default limit; a plugin reading it is held to 10MB", async () => {
  const upstream = countingUpstream();
  try {
    await using gw = await startGateway({
      listeners: { web: { type: "http", host: "127.0.0.1", port: 0 } },
      upstreams: { api: { targets: [upstream.url] } },
      routes: [
        { match: { path: "/ok" }, target: { respond: { body: "ok" } } },
        { match: { path: "/up/*" }, target: { upstream: "api" }, plugins: ["sizer"] },
      ],
    }, { files: { "plugins/sizer.ts": SIZER } });
    const port = await gw.port("web");
    const before = await settledRss(gw, port);
    const answer = await post(port, "/up/file", { size: 400 * MiB, chunked: true });
    assertEquals(answer.status, 200, answer.body);
    assertEquals(answer.body, String(400 * MiB));
    // Streamed, not held: the peak grew by half the body at most (GC keeps a plateau of chunks).
    const growth = await memory(gw.child.pid, "VmHWM") - before;
    assert(growth < 200 * MiB, `peak RSS grew by ${Math.round(growth / MiB)} MiB`);

    // The same route, with the plugin reading the body whole.
    const read = await post(port, "/up/file", { size: 40 * MiB, chunked: true, headers: READ });
    assertEquals(read.status, 413, read.body);
    assert(read.body.includes("body_too_large"), read.body);
    const small = await post(port, "/up/file", { size: MiB, headers: READ });
    assertEquals([small.status, small.body], [200, String(MiB)]);
  } finally {
    await upstream.server.shutdown();
  }
});

const READ = { "x-read": "1" };

Deno.test("a configured limit on an upstream route refuses a larger Content-Length unread", async () => {
  const upstream = countingUpstream();
  try {
    await using gw = await startGateway({
      listeners: { web: { type: "http", host: "127.0.0.1", port: 0 } },
      upstreams: { api: { targets: [upstream.url] } },
      routes: [
        { match: { path: "/up/*" }, target: { upstream: "api" }, limits: { maxBodySize: "1MB" } },
      ],
    });
    const port = await gw.port("web");
    // 5 MiB declared, none of it sent: the answer cannot wait for the body.
    const answer = await post(port, "/up/file", { size: 0, declared: 5 * MiB });
    assertEquals(answer.status, 413, answer.body);
    assertEquals(upstream.requests, []);
    const chunked = await post(port, "/up/file", { size: 3 * MiB, chunked: true });
    assertEquals(chunked.status, 413, chunked.body);
    const small = await post(port, "/up/file", { size: 512 * 1024, chunked: true });
    assertEquals(small.body, String(512 * 1024));
  } finally {
    await upstream.server.shutdown();
  }
});
