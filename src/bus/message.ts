/**
 * The one shape every message has on the bus, whatever protocol it came in
 * on: WebSocket frames, TCP frames, UDP datagrams, MQTT publishes, device
 * telemetry, and function calls (`fn/<owner>/<name>`).
 *
 * @module
 */

/** Where a message entered the gateway. */
export interface MessageSource {
  /** Listener name (or route name for WebSocket routes; `gateway` for internal publishers). */
  listener: string;
  protocol: "ws" | "tcp" | "udp" | "unix" | "mqtt" | "http" | "plugin" | "worker" | "gateway";
  /** The connection it came from, when it came from one. */
  connectionId?: string;
  /** The device bound to that connection, when one is. */
  deviceId?: string;
}

/** A message on the bus. */
export interface BusMessage {
  /** A topic with `/`-separated levels; no wildcards. */
  topic: string;
  payload: Uint8Array;
  source: MessageSource;
  /** Free-form string metadata (content type, correlation ids, route params). */
  meta: Record<string, string>;
  /**
   * Answers the message on the connection or request it came from; absent
   * when nothing is waiting for an answer. Calling it more than once sends more
   * than one answer where the protocol allows it (a socket), and is ignored
   * after the first for request/reply.
   */
  reply?: (payload: Uint8Array, meta?: Record<string, string>) => void;
}
