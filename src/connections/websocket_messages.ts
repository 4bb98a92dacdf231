/**
 * The size limit of WebSocket messages while they arrive. `Deno.upgradeWebSocket`
 * (2.9.6) has no message size option: its fastwebsockets `FragmentCollector`
 * buffers the fragments of a message until the last one, however many there
 * are, and hands the message to JavaScript only then, so a message that
 * never ends is never seen (denoland/deno#15809, open). A listener that
 * relays the client's bytes itself (the HTTP guard) follows the frame
 * headers on the way in with a {@link WebSocketMessageMeter} and closes the
 * connection (close frame 1009) as soon as a message passes the route's
 * `maxMessageSize`, without buffering any payload.
 *
 * The route's limit reaches the relay with the 101 response:
 * {@link limitMessages} tags it, {@link messageMeterFor} reads it back.
 *
 * @module
 */

/** Which 101 responses carry a message size limit, and which. */
const limits = new WeakMap<Response, number>();

/**
 * Tags a WebSocket upgrade response with the largest message its route
 * accepts; returns the response.
 *
 * @example
 * ```ts
 * import { limitMessages, messageMeterFor } from "./websocket_messages.ts";
 * const response = limitMessages(new Response(null), 1024);
 * messageMeterFor(response)?.maxMessageSize; // 1024
 * ```
 */
export function limitMessages(response: Response, maxMessageSize: number): Response {
  limits.set(response, maxMessageSize);
  return response;
}

/**
 * A meter for the client's frames on a connection `response` upgraded, when
 * it was tagged by {@link limitMessages}.
 *
 * @example
 * ```ts
 * import { messageMeterFor } from "./websocket_messages.ts";
 * messageMeterFor(new Response(null)); // undefined: no limit was tagged
 * ```
 */
export function messageMeterFor(response: Response): WebSocketMessageMeter | undefined {
  const limit = limits.get(response);
  return limit === undefined ? undefined : new WebSocketMessageMeter(limit);
}

/**
 * Follows the frames a WebSocket client sends (RFC 6455 §5.2) and adds up
 * the payload of each message: its first data frame and its continuations.
 * Control frames (ping, pong, close) are not part of messages. A frame header
 * declaring a length that takes the message past the limit is enough: the
 * payload is not waited for.
 *
 * @example
 * ```ts
 * import { WebSocketMessageMeter } from "./websocket_messages.ts";
 * const meter = new WebSocketMessageMeter(4);
 * // A text frame without FIN, 3 bytes (mask 0), then a continuation of 3 bytes.
 * meter.feed(new Uint8Array([0x01, 0x83, 0, 0, 0, 0, 97, 98, 99])); // true
 * meter.feed(new Uint8Array([0x80, 0x83, 0, 0, 0, 0])); // false: 6 bytes > 4
 * ```
 */
export class WebSocketMessageMeter {
  /** Header bytes of the frame being read, until it is complete. */
  readonly #header = new Uint8Array(14);
  #headerLength = 0;
  /** Payload bytes of the current frame still to come. */
  #payloadLeft = 0;
  /** Payload bytes of the message in progress so far. */
  #messageBytes = 0;
  #over = false;

  constructor(readonly maxMessageSize: number) {}

  /** Follows `chunk`; false once a message has passed the limit (and from then on). */
  feed(chunk: Uint8Array): boolean {
    let offset = 0;
    while (offset < chunk.length && !this.#over) {
      if (this.#payloadLeft > 0) {
        const skipped = Math.min(this.#payloadLeft, chunk.length - offset);
        this.#payloadLeft -= skipped;
        offset += skipped;
        continue;
      }
      this.#header[this.#headerLength++] = chunk[offset++];
      const needed = this.#headerSize();
      if (needed === undefined || this.#headerLength < needed) continue;
      this.#frame(needed);
      this.#headerLength = 0;
    }
    return !this.#over;
  }

  /** The complete header's size, once its first two bytes are in. */
  #headerSize(): number | undefined {
    if (this.#headerLength < 2) return undefined;
    const short = this.#header[1] & 0x7f;
    const extended = short === 126 ? 2 : short === 127 ? 8 : 0;
    const mask = this.#header[1] & 0x80 ? 4 : 0;
    return 2 + extended + mask;
  }

  /** Takes a complete frame header of `size` bytes. */
  #frame(size: number): void {
    const header = this.#header;
    const opcode = header[0] & 0x0f;
    const short = header[1] & 0x7f;
    const view = new DataView(header.buffer, 0, size);
    const length = short === 126
      ? view.getUint16(2)
      : short === 127
      ? Number(view.getBigUint64(2))
      : short;
    this.#payloadLeft = length;
    if (opcode >= 8) return; // control frames are not part of messages
    this.#messageBytes = opcode === 0 ? this.#messageBytes + length : length;
    if (this.#messageBytes > this.maxMessageSize) this.#over = true;
  }
}

/**
 * The close frame (1009, "message too big") a server sends when a message is
 * over the limit.
 *
 * @example
 * ```ts
 * import { MESSAGE_TOO_BIG_CLOSE } from "./websocket_messages.ts";
 * MESSAGE_TOO_BIG_CLOSE[0]; // 0x88: FIN and opcode 8 (close)
 * ```
 */
export const MESSAGE_TOO_BIG_CLOSE: Uint8Array = (() => {
  const reason = new TextEncoder().encode("message too big");
  return new Uint8Array([0x88, 2 + reason.length, 1009 >> 8, 1009 & 0xff, ...reason]);
})();
