import { FrameError } from "../../src/listeners/framing.ts";
import { encodeFrame, FrameDecoder, type FrameMessage } from "../../src/workers/frame.ts";
import { assert, assertEquals, assertMatch } from "../helpers/assert.ts";
import { seededRandom } from "../helpers/random.ts";

/** Feeds `bytes` to `decoder` in pieces cut at random places. */
function feed(decoder: FrameDecoder, bytes: Uint8Array, rand: () => number): FrameMessage[] {
  const out: FrameMessage[] = [];
  for (let at = 0; at < bytes.length;) {
    const size = 1 + Math.floor(rand() * Math.min(64, bytes.length - at));
    out.push(...decoder.push(bytes.subarray(at, at + size)).map((frame) => frame.message));
    at += size;
  }
  return out;
}

function failure(run: () => unknown): FrameError {
  try {
    run();
  } catch (error) {
    if (error instanceof FrameError) return error;
    throw error;
  }
  throw new Error("expected a FrameError");
}

const MESSAGES: FrameMessage[] = [
  { type: "ping", id: 1 },
  { type: "call", id: 7, function: "add", args: { a: 1, b: [1, 2, "ü€𝄞"] }, timeout: 5000 },
  { type: "result", id: "w3", ok: false, error: { type: "ValueError", message: "bad" } },
  { type: "publish", topic: "a/b", payload: "x".repeat(300), encoding: "utf8" },
];

Deno.test("frames decode the same however the stream is cut", () => {
  const stream = new Uint8Array(MESSAGES.flatMap((m) => [...encodeFrame(m)]));
  const rand = seededRandom(1);
  for (let round = 0; round < 200; round++) {
    assertEquals(feed(new FrameDecoder(1024), stream, rand), MESSAGES);
  }
  const decoder = new FrameDecoder(1024);
  assertEquals(decoder.push(stream.subarray(0, 5)), []);
  assertEquals(decoder.pending, 5);
});

Deno.test("each message comes with the byte offset of its frame", () => {
  const frames = MESSAGES.map((message) => encodeFrame(message));
  const decoder = new FrameDecoder(1024);
  const decoded = decoder.push(new Uint8Array(frames.flatMap((frame) => [...frame])));
  let offset = 0;
  for (const [i, frame] of frames.entries()) {
    assertEquals(decoded[i], { message: MESSAGES[i], offset });
    offset += frame.length;
  }
  assertEquals(decoder.pending, 0);
});

Deno.test("the maximum frame can be raised between frames, as after a hello", () => {
  const hello = encodeFrame({ type: "hello", pad: "x".repeat(10) });
  const big = encodeFrame({ type: "call", args: "y".repeat(200) });
  const decoder = new FrameDecoder(64);
  // Half of the big frame's length field arrives with the hello, while the limit is still 64.
  assertEquals(decoder.push(new Uint8Array([...hello, ...big.subarray(0, 2)])).length, 1);
  decoder.maxFrame = 1024;
  assertEquals(decoder.maxFrame, 1024);
  assertEquals(decoder.push(big.subarray(2)), [{
    message: { type: "call", args: "y".repeat(200) },
    offset: hello.length,
  }]);
  decoder.maxFrame = 16;
  const error = failure(() => decoder.push(big));
  assertEquals(error.offset, hello.length + big.length);
});

Deno.test("a frame longer than the maximum is refused with its byte offset", () => {
  const first = encodeFrame({ type: "ping", id: 1 });
  const big = encodeFrame({ type: "log", message: "x".repeat(100) });
  const decoder = new FrameDecoder(64);
  assertEquals(decoder.push(first), [{ message: { type: "ping", id: 1 }, offset: 0 }]);
  // Refused on the header alone, before the body is buffered.
  const error = failure(() => decoder.push(big.subarray(0, 4)));
  assertEquals(error.offset, first.length);
  assertMatch(
    error.message,
    new RegExp(
      `^frame at byte offset ${first.length}: length field announces a frame of \\d+ bytes, over the maximum of 64$`,
    ),
  );
  // The stream is unusable afterwards.
  assertEquals(failure(() => decoder.push(first)), error);
});

Deno.test("malformed bodies are refused naming the offset and the problem", () => {
  const frame = (body: Uint8Array) => {
    const out = new Uint8Array(4 + body.length);
    new DataView(out.buffer).setUint32(0, body.length);
    out.set(body, 4);
    return out;
  };
  const text = (s: string) => frame(new TextEncoder().encode(s));
  const ok = encodeFrame({ type: "pong", id: 2 });
  const cases: [Uint8Array, RegExp][] = [
    [text("{nope"), /invalid JSON/],
    [text("[1,2]"), /not a JSON object/],
    [text("null"), /not a JSON object/],
    [text('{"id":1}'), /no string "type"/],
    [text('{"type":3}'), /no string "type"/],
    [frame(new Uint8Array([0x7b, 0xff, 0xfe, 0x7d])), /invalid UTF-8/],
  ];
  for (const [bad, reason] of cases) {
    const decoder = new FrameDecoder(1024);
    decoder.push(ok);
    const error = failure(() => decoder.push(bad));
    assertEquals(error.offset, ok.length);
    assertMatch(error.message, reason);
  }
});

Deno.test("encodeFrame refuses a body above the maximum", () => {
  let message = "";
  try {
    encodeFrame({ type: "log", message: "x".repeat(100) }, 50);
  } catch (error) {
    message = (error as Error).message;
  }
  assertMatch(message, /"log" frame of \d+ bytes exceeds the maximum frame of 50/);
});

Deno.test("fuzz: 100,000 random and mutated streams decode or fail with a FrameError", () => {
  const CASES = 100_000;
  const MAX = 512;
  const rand = seededRandom(0x5eed);
  const pick = <T>(items: T[]) => items[Math.floor(rand() * items.length)];
  let decodedIntact = 0;
  let refused = 0;
  for (let n = 0; n < CASES; n++) {
    const originals = Array.from({ length: 1 + Math.floor(rand() * 3) }, () => pick(MESSAGES));
    const stream = new Uint8Array(originals.flatMap((m) => [...encodeFrame(m)]));
    const mutation = Math.floor(rand() * 6);
    let bytes = stream;
    if (mutation === 1) { // flip bits
      bytes = stream.slice();
      for (let i = 0; i < 1 + rand() * 4; i++) {
        bytes[Math.floor(rand() * bytes.length)] ^= 1 << Math.floor(rand() * 8);
      }
    } else if (mutation === 2) { // truncate
      bytes = stream.subarray(0, Math.floor(rand() * stream.length));
    } else if (mutation === 3) { // random garbage
      bytes = Uint8Array.from({ length: Math.floor(rand() * 600) }, () => Math.floor(rand() * 256));
    } else if (mutation === 4) { // a length field rewritten
      bytes = stream.slice();
      new DataView(bytes.buffer).setUint32(0, Math.floor(rand() * 2 ** 32));
    } else if (mutation === 5) { // bytes inserted
      const at = Math.floor(rand() * stream.length);
      bytes = new Uint8Array([
        ...stream.subarray(0, at),
        Math.floor(rand() * 256),
        ...stream.subarray(at),
      ]);
    }
    const decoder = new FrameDecoder(MAX);
    let messages: FrameMessage[];
    try {
      messages = feed(decoder, bytes, rand);
    } catch (error) {
      if (!(error instanceof FrameError)) throw new Error(`case ${n}: ${error}`);
      assert(error.offset >= 0 && error.offset < bytes.length, `case ${n}: offset ${error.offset}`);
      refused++;
      continue;
    }
    for (const message of messages) {
      assert(typeof message.type === "string", `case ${n}: a message without a type`);
    }
    assert(decoder.pending <= 4 + MAX, `case ${n}: ${decoder.pending} bytes pending`);
    if (mutation === 0) {
      assertEquals(messages, originals, `case ${n}`);
      decodedIntact++;
    }
  }
  assert(decodedIntact > CASES / 10, `only ${decodedIntact} intact streams`);
  assert(refused > CASES / 10, `only ${refused} refusals`);
});
