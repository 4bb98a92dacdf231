/**
 * The WebSocket message meter follows frame headers however the bytes are
 * cut, adds up the fragments of each message (not control frames), and
 * stops at the first message past the limit, at its header.
 */

import { assertEquals } from "../helpers/assert.ts";
import {
  limitMessages,
  messageMeterFor,
  WebSocketMessageMeter,
} from "../../src/connections/websocket_messages.ts";
import { clientFrame, OPCODE } from "../security/raw_websocket.ts";

function concat(parts: Uint8Array[]): Uint8Array {
  const out = new Uint8Array(parts.reduce((n, part) => n + part.length, 0));
  let offset = 0;
  for (const part of parts) {
    out.set(part, offset);
    offset += part.length;
  }
  return out;
}

/** Feeds `bytes` in pieces of `size`; the result of the last feed. */
function feedInPieces(meter: WebSocketMessageMeter, bytes: Uint8Array, size: number): boolean {
  let within = true;
  for (let i = 0; i < bytes.length; i += size) within = meter.feed(bytes.subarray(i, i + size));
  return within;
}

const bytes = (n: number) => new Uint8Array(n);

Deno.test("messages within the limit pass, cut anywhere, with control frames between fragments", () => {
  const stream = concat([
    clientFrame(OPCODE.text, bytes(100), false),
    clientFrame(OPCODE.ping, bytes(4)),
    clientFrame(OPCODE.continuation, bytes(300), false), // 16-bit length
    clientFrame(OPCODE.pong, bytes(0)),
    clientFrame(OPCODE.continuation, bytes(600)), // 1,000 bytes: at the limit
    clientFrame(OPCODE.binary, bytes(1000)), // a new message starts from 0
  ]);
  for (const size of [1, 3, 7, 64, stream.length]) {
    assertEquals(
      feedInPieces(new WebSocketMessageMeter(1000), stream, size),
      true,
      `pieces of ${size}`,
    );
  }
});

Deno.test("a message is refused at the header of the fragment that passes the limit", () => {
  const meter = new WebSocketMessageMeter(1000);
  assertEquals(meter.feed(clientFrame(OPCODE.binary, bytes(900), false)), true);
  // Only the header of the next fragment: its length is enough.
  assertEquals(
    meter.feed(clientFrame(OPCODE.continuation, bytes(200), false).subarray(0, 8)),
    false,
  );
  assertEquals(meter.feed(clientFrame(OPCODE.binary, bytes(1))), false); // and stays refused
});

Deno.test("a single frame declaring a 64-bit length past the limit is refused", () => {
  const header = new Uint8Array([0x82, 0xff, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0]); // 4 GiB, masked
  assertEquals(new WebSocketMessageMeter(1 << 20).feed(header), false);
});

Deno.test("a tagged 101 response gives a meter with its route's limit; others none", () => {
  const tagged = limitMessages(new Response(null), 4096);
  assertEquals(messageMeterFor(tagged)?.maxMessageSize, 4096);
  assertEquals(messageMeterFor(new Response(null)), undefined);
});
