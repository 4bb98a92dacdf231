/**
 * MQTT over WebSocket: the `mqtt` route target upgrades the request with
 * subprotocol `mqtt` (or `mqttv3.1`) and hands the socket to the broker as a
 * Node `Duplex`. Binary frames carry MQTT bytes (packets may span frames);
 * a text frame closes the connection. Writes corked together (the parts of
 * one MQTT packet) leave as one frame.
 *
 * @module
 */

import { Buffer } from "node:buffer";
import { Duplex } from "node:stream";
import { errorResponse, GatewayError } from "../errors.ts";
import type { GatewayContext, Target } from "../pipeline/stage.ts";
import type { MqttStream, StreamOrigin } from "./broker.ts";
import type { MqttTargetConfig } from "./config.ts";
import { adaptStream } from "./stream_adapter.ts";
import { limitMessages } from "../connections/websocket_messages.ts";

const SUBPROTOCOLS = ["mqtt", "mqttv3.1"];
/** The largest MQTT packet: a 5-byte fixed header and 268,435,455 bytes. */
const LARGEST_PACKET = 268_435_455 + 5;

/** What the target hands sockets to: the MQTT module (absent when the config has no `mqtt`). */
export interface MqttWebSocketHost {
  /** Whether the broker is running. */
  readonly running: boolean;
  /** The largest packet a connected client may send (the broker's `maxPacketSize`). */
  readonly maxPacketSize?: number;
  /** Serves one stream. */
  accept(stream: MqttStream, origin: StreamOrigin): void;
}

/** A server WebSocket as a Node Duplex of MQTT bytes. */
class WebSocketDuplex extends Duplex {
  bytesRead = 0;
  bytesWritten = 0;

  constructor(readonly socket: WebSocket) {
    super();
    socket.binaryType = "arraybuffer";
    socket.onmessage = (event: MessageEvent<string | ArrayBuffer>) => {
      if (typeof event.data === "string") {
        this.destroy(new Error("text frame on an MQTT WebSocket"));
        return;
      }
      this.bytesRead += event.data.byteLength;
      this.push(Buffer.from(event.data));
    };
    socket.onclose = () => {
      this.push(null);
      this.destroy();
    };
    socket.onerror = () => this.destroy();
  }

  override _read(): void {}

  override _write(chunk: Buffer, _encoding: string, callback: (error?: Error | null) => void) {
    this.#send(chunk, callback);
  }

  override _writev(
    chunks: { chunk: Buffer }[],
    callback: (error?: Error | null) => void,
  ): void {
    this.#send(Buffer.concat(chunks.map((entry) => entry.chunk)), callback);
  }

  override _destroy(error: Error | null, callback: (error?: Error | null) => void): void {
    // close() does nothing before the upgrade completes (a refused connection): close once open.
    if (this.socket.readyState === WebSocket.CONNECTING) {
      this.socket.onopen = () => this.socket.close(1000);
    } else if (this.socket.readyState === WebSocket.OPEN) this.socket.close(1000);
    callback(error);
  }

  #send(data: Uint8Array, callback: (error?: Error | null) => void): void {
    if (this.socket.readyState !== WebSocket.OPEN) {
      callback(new Error("the WebSocket is closed"));
      return;
    }
    this.socket.send(data);
    this.bytesWritten += data.byteLength;
    callback();
  }
}

/**
 * Creates the target of an `mqtt` route.
 *
 * @example
 * ```ts
 * import { createMqttWebSocketTarget } from "./websocket_target.ts";
 * import { MqttTargetConfig } from "./config.ts";
 * const host = { running: false, accept() {} };
 * const target = createMqttWebSocketTarget(MqttTargetConfig.parse({}), host);
 * ```
 */
export function createMqttWebSocketTarget(
  config: MqttTargetConfig,
  host: MqttWebSocketHost,
): Target {
  return (c: GatewayContext): Response => {
    const { requestId, clientIp } = c.env;
    if (!/\bwebsocket\b/i.test(c.req.header("upgrade") ?? "")) {
      return errorResponse(
        new GatewayError(426, "upgrade_required", "this route serves MQTT over WebSocket", {
          headers: {
            upgrade: "websocket",
          },
        }),
        requestId,
      );
    }
    const offered = (c.req.header("sec-websocket-protocol") ?? "").split(",").map((p) => p.trim());
    const protocol = SUBPROTOCOLS.find((p) => offered.includes(p));
    if (!protocol) {
      return errorResponse(
        new GatewayError(
          400,
          "unsupported_subprotocol",
          "MQTT over WebSocket needs the subprotocol mqtt",
        ),
        requestId,
      );
    }
    if (!host.running) {
      return errorResponse(
        new GatewayError(503, "mqtt_unavailable", "the MQTT broker is not running"),
        requestId,
      );
    }
    let upgraded: { socket: WebSocket; response: Response };
    try {
      upgraded = Deno.upgradeWebSocket(c.req.raw, { protocol, idleTimeout: 0 });
    } catch (error) {
      return errorResponse(
        new GatewayError(400, "bad_websocket_handshake", (error as Error).message),
        requestId,
      );
    }
    host.accept(adaptStream(new WebSocketDuplex(upgraded.socket)), {
      listener: c.env.route.name,
      remoteAddress: clientIp,
      limits: { ...config, idleTimeout: 0 },
    });
    // A WebSocket message holds MQTT packets: one larger than the largest packet is refused
    // (1009) while it arrives, where the listener runs the HTTP guard.
    const largest = host.maxPacketSize === undefined ? LARGEST_PACKET : host.maxPacketSize + 5;
    return limitMessages(upgraded.response, largest);
  };
}
