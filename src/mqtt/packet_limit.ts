/**
 * Bounds the MQTT packets a client may send, before aedes buffers them: the
 * fixed header of each packet (type byte and remaining-length varint,
 * MQTT 3.1.1 §2.2.3) is read as the bytes arrive, and a stream whose packet
 * declares more than the limit is destroyed before its body is held. aedes's
 * parser (mqtt-packet) has no size option: it keeps a packet's bytes until
 * the whole packet is there.
 *
 * @module
 */

import type { Duplex } from "node:stream";

/**
 * Reads the fixed headers of a byte stream of MQTT packets and checks each
 * remaining length against `limit` (which the broker raises once the client's
 * CONNECT is accepted).
 *
 * @example
 * ```ts
 * import { PacketLimit } from "./packet_limit.ts";
 * const limit = new PacketLimit(64 * 1024);
 * limit.scan(new Uint8Array([0x10, 0x80, 0x80, 0x80, 0x01])); // "a packet of 268435456 bytes is over the limit of 65536"
 * limit.scan(new Uint8Array([0xc0, 0x00])); // undefined (PINGREQ)
 * ```
 */
export class PacketLimit {
  /** The largest remaining length (bytes after the fixed header) accepted. */
  limit: number;
  /** Bytes of the current packet's body still to come; -1 while reading a fixed header. */
  #body = -1;
  /** Whether the type byte of the current fixed header has been read. */
  #typed = false;
  #length = 0;
  #lengthBytes = 0;

  constructor(limit: number) {
    this.limit = limit;
  }

  /** Reads `chunk`, the next bytes of the stream; returns why the stream must close, if it must. */
  scan(chunk: Uint8Array): string | undefined {
    let i = 0;
    while (i < chunk.length) {
      if (this.#body > 0) {
        const skipped = Math.min(this.#body, chunk.length - i);
        this.#body -= skipped;
        i += skipped;
        if (this.#body === 0) this.#body = -1;
        continue;
      }
      const byte = chunk[i++];
      if (!this.#typed) {
        this.#typed = true;
        continue;
      }
      this.#length += (byte & 0x7f) * 128 ** this.#lengthBytes++;
      if (this.#length > this.limit) {
        return `a packet of ${this.#length} bytes is over the limit of ${this.limit}`;
      }
      if (byte & 0x80) {
        if (this.#lengthBytes === 4) return "malformed remaining length (more than 4 bytes)";
        continue;
      }
      this.#body = this.#length > 0 ? this.#length : -1;
      this.#typed = false;
      this.#length = 0;
      this.#lengthBytes = 0;
    }
    return undefined;
  }
}

/**
 * Checks every chunk `stream` receives with `limit` as it is pushed (before
 * it is buffered for reading); a chunk over the limit destroys the stream
 * with an error saying why, and is dropped.
 *
 * @example
 * ```ts
 * import { PassThrough } from "node:stream";
 * import { limitPackets, PacketLimit } from "./packet_limit.ts";
 * const stream = new PassThrough();
 * limitPackets(stream, new PacketLimit(16));
 * stream.on("error", () => {});
 * stream.push(new Uint8Array([0x30, 0x7f])); // PUBLISH of 127 bytes: the stream is destroyed
 * ```
 */
export function limitPackets(stream: Duplex, limit: PacketLimit): void {
  const push = stream.push;
  stream.push = function (this: Duplex, chunk: unknown, encoding?: BufferEncoding): boolean {
    if (chunk instanceof Uint8Array) {
      const refused = limit.scan(chunk);
      if (refused) {
        this.destroy(new Error(refused));
        return false;
      }
    }
    return push.call(this, chunk, encoding);
  };
}
