/**
 * HTTP/2 floods over h2c with prior knowledge, written as raw frames through
 * the real gateway process (the hardening issue's "Tests and checks"): a
 * rapid-reset flood (HEADERS then RST_STREAM, stream after stream) and a
 * CONTINUATION flood (a header block that never ends). Each time the gateway
 * ends the attacking connection (GOAWAY or close) instead of working or
 * buffering without bound, and another client's request still answers.
 */

import { assert, assertEquals } from "../helpers/assert.ts";
import { type GatewayProcess, startGateway } from "../helpers/gateway.ts";
import { until } from "../helpers/wait.ts";

const PREFACE = new TextEncoder().encode("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n");
const FRAME = { HEADERS: 1, RST_STREAM: 3, SETTINGS: 4, GOAWAY: 7, CONTINUATION: 9 } as const;
const END_STREAM = 0x1;
const END_HEADERS = 0x4;
const CANCEL = 0x8;

/** One frame: 9-byte header and payload. */
function frame(type: number, flags: number, stream: number, payload: Uint8Array): Uint8Array {
  const bytes = new Uint8Array(9 + payload.length);
  const view = new DataView(bytes.buffer);
  view.setUint32(0, payload.length << 8);
  bytes[3] = type;
  bytes[4] = flags;
  view.setUint32(5, stream & 0x7fffffff);
  bytes.set(payload, 9);
  return bytes;
}

/** HPACK, no Huffman: GET, http, `/`, and the authority as a literal. */
function requestHeaderBlock(authority: string): Uint8Array {
  const name = new TextEncoder().encode(authority);
  return new Uint8Array([0x82, 0x86, 0x84, 0x41, name.length, ...name]);
}

/** HPACK literal header fields (without indexing, new names) filling about `size` bytes. */
function filler(size: number, seed: number): Uint8Array {
  const bytes: number[] = [];
  for (let i = 0; bytes.length < size; i++) {
    const name = new TextEncoder().encode(`x-flood-${seed}-${i}`);
    const value = new TextEncoder().encode("v".repeat(100));
    bytes.push(0x00, name.length, ...name, value.length, ...value);
  }
  return new Uint8Array(bytes);
}

function concatBytes(parts: Uint8Array[]): Uint8Array {
  const out = new Uint8Array(parts.reduce((sum, part) => sum + part.length, 0));
  let at = 0;
  for (const part of parts) {
    out.set(part, at);
    at += part.length;
  }
  return out;
}

/**
 * An h2c connection that records what the server sends: whether a GOAWAY
 * came (and its error code), the streams it reset or answered (a HEADERS
 * frame), and whether it closed.
 */
async function attacker(port: number) {
  const conn = await Deno.connect({ hostname: "127.0.0.1", port });
  const seen = {
    goaway: -1,
    closed: false,
    bytes: 0,
    resets: [] as number[],
    answered: [] as number[],
  };
  const reading = (async () => {
    let pending: Uint8Array = new Uint8Array(0);
    const buffer = new Uint8Array(65536);
    try {
      for (let count = await conn.read(buffer); count !== null; count = await conn.read(buffer)) {
        seen.bytes += count;
        pending = concatBytes([pending, buffer.subarray(0, count)]);
        // Walks complete frames; each pass consumes one.
        while (pending.length >= 9) {
          const length = (pending[0] << 16) | (pending[1] << 8) | pending[2];
          if (pending.length < 9 + length) break;
          const view = new DataView(pending.buffer, pending.byteOffset);
          const stream = view.getUint32(5) & 0x7fffffff;
          if (pending[3] === FRAME.GOAWAY && length >= 8) seen.goaway = view.getUint32(13);
          if (pending[3] === FRAME.RST_STREAM) seen.resets.push(stream);
          if (pending[3] === FRAME.HEADERS) seen.answered.push(stream);
          pending = pending.slice(9 + length);
        }
      }
    } catch { /* reset by the server */ }
    seen.closed = true;
  })();
  await conn.write(concatBytes([PREFACE, frame(FRAME.SETTINGS, 0, 0, new Uint8Array(0))]));
  return {
    seen,
    /** Writes `bytes`; false once the server no longer takes them. */
    async send(bytes: Uint8Array): Promise<boolean> {
      if (seen.closed) return false;
      try {
        await conn.write(bytes);
        return true;
      } catch {
        return false;
      }
    },
    close(): void {
      try {
        conn.close();
      } catch { /* already closed */ }
    },
    /** Waits for the server to end the connection (a 20 s safety limit fails instead). */
    async ended(): Promise<void> {
      const stuck = setTimeout(() => conn.close(), 20_000);
      await reading;
      clearTimeout(stuck);
      try {
        conn.close();
      } catch { /* already closed */ }
    },
  };
}

/** The gateway's resident set size in bytes, from `/metrics`. */
async function rss(gw: GatewayProcess): Promise<number> {
  const text = await (await gw.admin("/metrics")).text();
  const value = text.match(/^gateway_process_memory_bytes\{kind="rss"\} (\S+)$/m)?.[1];
  assert(value !== undefined, `no rss in /metrics:\n${text.slice(0, 500)}`);
  return Number(value);
}

const CONFIG = {
  listeners: { web: { type: "http", host: "127.0.0.1", port: 0 } },
  routes: [{ target: { respond: { body: "still here" } } }],
};

Deno.test("HTTP/2 rapid reset: the flooding connection is ended, other clients are answered", async () => {
  await using gw = await startGateway(CONFIG);
  const port = await gw.port("web");
  const before = await rss(gw);
  const flood = await attacker(port);
  const block = requestHeaderBlock(`127.0.0.1:${port}`);
  const reset = new Uint8Array([0, 0, 0, CANCEL]);
  const answer = fetch(`http://127.0.0.1:${port}/`);
  let sent = 0;
  // Up to 100,000 streams in batches of 500 HEADERS + RST_STREAM pairs.
  for (let batch = 0; batch < 200; batch++) {
    const frames: Uint8Array[] = [];
    for (let i = 0; i < 500; i++) {
      const stream = 2 * (sent + i) + 1;
      frames.push(frame(FRAME.HEADERS, END_STREAM | END_HEADERS, stream, block));
      frames.push(frame(FRAME.RST_STREAM, 0, stream, reset));
    }
    if (!(await flood.send(concatBytes(frames)))) break;
    sent += 500;
  }
  assertEquals(await (await answer).text(), "still here");
  await flood.ended();
  assert(flood.seen.closed, "the server kept the flooding connection");
  assert(sent < 100_000 || flood.seen.goaway !== -1, `all ${sent} streams taken, no GOAWAY`);
  const grown = (await rss(gw)) - before;
  assert(grown < 100 * 2 ** 20, `RSS grew by ${grown} bytes`);
});

Deno.test("HTTP/2 CONTINUATION flood: the endless header block is cut off, memory stays bounded", async () => {
  await using gw = await startGateway(CONFIG);
  const port = await gw.port("web");
  const before = await rss(gw);
  const flood = await attacker(port);
  const first = requestHeaderBlock(`127.0.0.1:${port}`);
  const answer = fetch(`http://127.0.0.1:${port}/`);
  let sent = await flood.send(frame(FRAME.HEADERS, END_STREAM, 1, first)) ? first.length : 0;
  // Up to 64 MiB of header block in 16 KiB CONTINUATION frames, never END_HEADERS.
  for (let i = 0; i < 4096 && sent > 0; i++) {
    const part = filler(16 * 1024 - 256, i);
    if (!(await flood.send(frame(FRAME.CONTINUATION, 0, 1, part)))) break;
    sent += part.length;
  }
  assertEquals(await (await answer).text(), "still here");
  await flood.ended();
  assert(flood.seen.closed, "the server kept the flooding connection");
  assert(sent < 64 * 1024 * 1024, `the whole ${sent}-byte header block was taken`);
  const grown = (await rss(gw)) - before;
  assert(grown < 100 * 2 ** 20, `RSS grew by ${grown} bytes`);
});

/** HPACK literal header field without indexing, with a new name. */
function literal(name: string, value: string): number[] {
  const encoder = new TextEncoder();
  const nameBytes = encoder.encode(name);
  const valueBytes = encoder.encode(value);
  return [0x00, nameBytes.length, ...nameBytes, valueBytes.length, ...valueBytes];
}

Deno.test("HTTP/2 requests with Connection or Upgrade fields are refused, never forwarded", async () => {
  let forwarded = 0;
  const upstream = Deno.serve({ hostname: "127.0.0.1", port: 0, onListen() {} }, () => {
    forwarded++;
    return new Response("upstream");
  });
  try {
    await using gw = await startGateway({
      listeners: { web: { type: "http", host: "127.0.0.1", port: 0 } },
      upstreams: { api: { targets: [`http://127.0.0.1:${upstream.addr.port}`] } },
      routes: [{ match: { path: "/*" }, target: { upstream: "api" } }],
    });
    const port = await gw.port("web");
    const client = await attacker(port);
    const block = requestHeaderBlock(`127.0.0.1:${port}`);
    const fields: [string, string][][] = [
      [["connection", "upgrade"], ["upgrade", "h2c"]],
      [["upgrade", "h2c"]],
      [["http2-settings", "AAMAAABkAARAAAAAAAIAAAAA"], ["connection", "http2-settings"]],
      [["transfer-encoding", "chunked"]],
      [["keep-alive", "timeout=5"]],
    ];
    for (const [i, extra] of fields.entries()) {
      const headers = new Uint8Array([...block, ...extra.flatMap(([n, v]) => literal(n, v))]);
      await client.send(frame(FRAME.HEADERS, END_STREAM | END_HEADERS, 2 * i + 1, headers));
    }
    // A well-formed request last, on the same connection if the server kept it.
    const last = 2 * fields.length + 1;
    await client.send(frame(FRAME.HEADERS, END_STREAM | END_HEADERS, last, block));
    // Frames are handled in order: once the last stream is answered, the others were dealt with.
    await until(
      "the last stream answered or the connection ended",
      () => client.seen.answered.includes(last) || client.seen.closed,
    );
    assertEquals(
      forwarded,
      client.seen.answered.includes(last) ? 1 : 0,
      "a refused stream was forwarded",
    );
    const answered = await fetch(`http://127.0.0.1:${port}/`);
    assertEquals(await answered.text(), "upstream");
    for (let i = 0; i < fields.length; i++) {
      const stream = 2 * i + 1;
      assert(
        client.seen.resets.includes(stream) || client.seen.goaway !== -1,
        `stream ${stream} (${
          fields[i].map(([n]) => n)
        }) was neither reset nor the connection ended`,
      );
      assert(!client.seen.answered.includes(stream), `stream ${stream} was answered`);
    }
    client.close();
  } finally {
    await upstream.shutdown();
  }
});
