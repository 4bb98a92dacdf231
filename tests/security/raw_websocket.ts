/**
 * A WebSocket client written by hand over TCP for the security tests: it
 * sends whatever frames a test builds (fragments that never end, floods of
 * tiny messages) and reads the frames the gateway sends back.
 *
 * @module
 */

const encoder = new TextEncoder();

/** WebSocket opcodes the tests send and read. */
export const OPCODE = { continuation: 0, text: 1, binary: 2, close: 8, ping: 9, pong: 10 };

/**
 * One client frame (masked, as a client must send it).
 *
 * @example
 * ```ts
 * import { clientFrame, OPCODE } from "./raw_websocket.ts";
 * clientFrame(OPCODE.binary, new Uint8Array(3), false).length; // 2 + 4 + 3
 * ```
 */
export function clientFrame(opcode: number, payload: Uint8Array, fin = true): Uint8Array {
  const length = payload.length;
  const extra = length < 126 ? 0 : length < 65536 ? 2 : 8;
  const frame = new Uint8Array(2 + extra + 4 + length);
  const view = new DataView(frame.buffer);
  frame[0] = (fin ? 0x80 : 0) | opcode;
  if (extra === 0) frame[1] = 0x80 | length;
  else if (extra === 2) {
    frame[1] = 0x80 | 126;
    view.setUint16(2, length);
  } else {
    frame[1] = 0x80 | 127;
    view.setBigUint64(2, BigInt(length));
  }
  // A zero mask: the payload goes out as it is.
  frame.set(payload, 2 + extra + 4);
  return frame;
}

/** A frame the server sent. */
export interface ServerFrame {
  opcode: number;
  payload: Uint8Array;
}

/**
 * A raw WebSocket connection to a gateway route.
 *
 * @example
 * ```ts ignore
 * import { RawWebSocket, clientFrame, OPCODE } from "./raw_websocket.ts";
 * const ws = await RawWebSocket.open(8080, "/ws");
 * await ws.write(clientFrame(OPCODE.text, new TextEncoder().encode("hi")));
 * ws.close();
 * ```
 */
export class RawWebSocket {
  /** The status code of the response to the upgrade request. */
  status = 0;
  #buffered = new Uint8Array(0);

  private constructor(readonly conn: Deno.TcpConn) {}

  /** Connects, upgrades and reads the response head; `status` is its status code. */
  static async open(port: number, path: string, protocol?: string): Promise<RawWebSocket> {
    const conn = await Deno.connect({ hostname: "127.0.0.1", port });
    const key = btoa(String.fromCharCode(...crypto.getRandomValues(new Uint8Array(16))));
    await conn.write(encoder.encode(
      `GET ${path} HTTP/1.1\r\nHost: 127.0.0.1:${port}\r\nUpgrade: websocket\r\n` +
        `Connection: Upgrade\r\nSec-WebSocket-Key: ${key}\r\nSec-WebSocket-Version: 13\r\n` +
        (protocol ? `Sec-WebSocket-Protocol: ${protocol}\r\n` : "") + "\r\n",
    ));
    const socket = new RawWebSocket(conn);
    socket.status = Number((await socket.#readHead()).split(" ")[1]);
    return socket;
  }

  async #readHead(): Promise<string> {
    for (;;) {
      const text = new TextDecoder().decode(this.#buffered);
      const end = text.indexOf("\r\n\r\n");
      if (end >= 0) {
        this.#buffered = this.#buffered.subarray(encoder.encode(text.slice(0, end + 4)).length);
        return text.slice(0, end);
      }
      if (!await this.#fill()) throw new Error("closed before the response head");
    }
  }

  /** Reads more bytes into the buffer; false at the end of the stream. */
  async #fill(): Promise<boolean> {
    const chunk = new Uint8Array(64 * 1024);
    let n: number | null;
    try {
      n = await this.conn.read(chunk);
    } catch {
      n = null;
    }
    if (n === null) return false;
    const joined = new Uint8Array(this.#buffered.length + n);
    joined.set(this.#buffered);
    joined.set(chunk.subarray(0, n), this.#buffered.length);
    this.#buffered = joined;
    return true;
  }

  /** Writes bytes; false once the gateway has closed the connection. */
  async write(bytes: Uint8Array): Promise<boolean> {
    try {
      for (let written = 0; written < bytes.length;) {
        written += await this.conn.write(bytes.subarray(written));
      }
      return true;
    } catch {
      return false;
    }
  }

  /** The next frame from the server, or null when the connection ends first. */
  async next(): Promise<ServerFrame | null> {
    for (;;) {
      const b = this.#buffered;
      if (b.length >= 2) {
        const short = b[1] & 0x7f;
        const extra = short === 126 ? 2 : short === 127 ? 8 : 0;
        if (b.length >= 2 + extra) {
          const view = new DataView(b.buffer, b.byteOffset, b.byteLength);
          const length = extra === 0
            ? short
            : extra === 2
            ? view.getUint16(2)
            : Number(view.getBigUint64(2));
          if (b.length >= 2 + extra + length) {
            const payload = b.slice(2 + extra, 2 + extra + length);
            this.#buffered = b.subarray(2 + extra + length);
            return { opcode: b[0] & 0x0f, payload };
          }
        }
      }
      if (!await this.#fill()) return null;
    }
  }

  /** The code of the close frame the server sends (skipping other frames), or null without one. */
  async closeCode(): Promise<number | null> {
    for (;;) {
      const frame = await this.next();
      if (frame === null) return null;
      if (frame.opcode === OPCODE.close) {
        return frame.payload.length >= 2 ? (frame.payload[0] << 8) | frame.payload[1] : 1005;
      }
    }
  }

  /** Closes the TCP connection. */
  close(): void {
    try {
      this.conn.close();
    } catch { /* closed */ }
  }
}

/**
 * `VmRSS` or `VmHWM` (its peak) of process `pid` in bytes, from
 * `/proc/<pid>/status`, read by `cat` (Deno lets only `--allow-all` read /proc).
 *
 * @example
 * ```ts
 * import { memoryOf } from "./raw_websocket.ts";
 * await memoryOf(Deno.pid, "VmHWM"); // e.g. 52_428_800
 * ```
 */
export async function memoryOf(pid: number, field: "VmRSS" | "VmHWM"): Promise<number> {
  const { stdout } = await new Deno.Command("cat", { args: [`/proc/${pid}/status`] }).output();
  const kib = new RegExp(`^${field}:\\s+(\\d+) kB`, "m").exec(new TextDecoder().decode(stdout))
    ?.[1];
  if (kib === undefined) throw new Error(`no ${field} in /proc/${pid}/status`);
  return Number(kib) * 1024;
}
