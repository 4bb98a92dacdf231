/**
 * The WebSocket target: upgrades a route's requests to WebSockets and either
 * publishes every message on the bus (`bus` mode) or relays it to an upstream
 * WebSocket (`proxy` mode). Every socket is admitted by the connection
 * manager, which enforces the route's connection limits and idle timeout and
 * pushes bus messages addressed to the connection through its handle.
 *
 * The rules:
 * - A request without `Upgrade: websocket` gets 426; a refused connection
 *   gets 503 and an unreachable upstream 502, both before upgrading.
 * - Subprotocol: the first of `protocols` (in config order) that the client
 *   offered. A client that offers none gets no subprotocol; a client that
 *   offers some, none of them acceptable, gets 400 `unsupported_subprotocol`
 *   (a browser would fail a socket accepted without one of its protocols).
 *   Without `protocols` in proxy mode, the client's offer goes to the upstream
 *   and the upstream's choice comes back.
 * - Heartbeat: Deno's own `idleTimeout`, set to two heartbeat intervals. After
 *   one interval without any frame from the client (message or pong) Deno
 *   pings; after a second silent interval it closes with 1001 "No response
 *   from ping frame.". A client that keeps talking is never pinged.
 * - A message larger than `maxMessageSize` (from the client) closes with 1009.
 *   Deno hands a message over only once it is complete, so on a listener
 *   that runs the HTTP guard, the guard enforces the limit while fragments
 *   arrive (the 101 response carries it, {@link limitMessages}); elsewhere
 *   the check happens when the message is complete.
 * - Before each send, a `bufferedAmount` above `sendQueueLimit` closes the
 *   socket with 1008 "slow consumer" (counted) instead of queueing more. The
 *   close frame waits behind what is queued, so a peer that never reads keeps
 *   its socket (and its place in the connection limits) until it reads or goes
 *   away: Deno cannot abort a server WebSocket. Its memory stays bounded.
 * - Replies go out as text frames when the reply's meta says `type: "text"`,
 *   as binary when it says `type: "binary"`, and otherwise in the kind of the
 *   message they answer. Pushes through the connection handle carry no meta
 *   and go out as binary frames.
 * - The manager closes a socket (idle timeout, admin kick, shutdown) with 1001,
 *   and one that sends more messages than its `limits.messageRate` with 1008.
 *
 * @module
 */

import { getLogger } from "@logtape/logtape";
import type { WebSocketTargetConfig } from "./config.ts";
import type { Bus } from "../bus/bus.ts";
import { compileTopicTemplate } from "../bus/topic_template.ts";
import type { Connection } from "../connections/connection.ts";
import type { ConnectionManager } from "../connections/manager.ts";
import { limitMessages } from "../connections/websocket_messages.ts";
import { errorResponse, GatewayError, webSocketClose } from "../errors.ts";
import type { GatewayContext, Target } from "../pipeline/stage.ts";
import type { Upstream, UpstreamTarget } from "../upstreams/upstream.ts";

/** What the WebSocket target needs besides its config. */
export interface WebSocketTargetDeps {
  /** Where bus-mode messages are published. */
  bus: Bus;
  /** Admits each socket (or refuses it, before the upgrade) and pushes bus messages to it. */
  connections: ConnectionManager;
  /** Proxy mode: the upstream whose targets are dialled as `ws://` (`wss://` for https). */
  upstream?: Upstream;
  /** Called once for each socket closed as a slow consumer. */
  onSlowConsumer?: () => void;
}

/** Milliseconds an upgraded socket may take to open before it is given up. */
const OPEN_DEADLINE = 10_000;
const logger = getLogger(["gateway", "websocket"]);
const encoder = new TextEncoder();
const decoder = new TextDecoder();
const DEVICE_ID = /^[A-Za-z0-9_.:@-]{1,128}$/;
/** Close codes a close frame must not carry (RFC 6455 §7.4.1). */
const UNSENDABLE_CLOSE_CODES = new Set([1004, 1005, 1006, 1015]);

/** A close reason cut to the 123 bytes a close frame holds, on a character boundary. */
function fitCloseReason(reason: string): string {
  const bytes = encoder.encode(reason);
  if (bytes.length <= 123) return reason;
  let end = 123;
  while ((bytes[end] & 0xc0) === 0x80) end--;
  return decoder.decode(bytes.subarray(0, end));
}

/** The UTF-8 bytes of a frame's data. */
function frameBytes(data: string | ArrayBuffer): Uint8Array {
  return typeof data === "string" ? encoder.encode(data) : new Uint8Array(data);
}

/**
 * Closes `to` because its peer closed with `code`: the same code where the
 * runtime can send it. 1005 (no code) stays no code. Toward the client, 1006
 * and 1015 (no close frame, TLS failure) become 1014 "bad gateway". Toward
 * the upstream, Deno's client sockets send only 1000 and 3000-4999, so other
 * codes become 1000 with the original code leading the reason.
 */
function relayClose(to: WebSocket, towards: "client" | "upstream", code: number, reason: string) {
  if (code === 1005) to.close();
  else if (towards === "client") {
    to.close(UNSENDABLE_CLOSE_CODES.has(code) ? 1014 : code, reason);
  } else if (code === 1000 || (code >= 3000 && code <= 4999)) to.close(code, reason);
  else to.close(1000, fitCloseReason(`${code} ${reason}`.trim()));
}

/** Opens a client WebSocket, or rejects when it closes or does not open within `timeout` ms. */
function openWebSocket(url: string, protocols: string[], timeout: number): Promise<WebSocket> {
  const socket = new WebSocket(url, protocols);
  socket.binaryType = "arraybuffer";
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      socket.close();
      reject(new Error(`no handshake within ${timeout} ms`));
    }, timeout);
    socket.onopen = () => {
      clearTimeout(timer);
      resolve(socket);
    };
    socket.onclose = (event) => {
      clearTimeout(timer);
      reject(new Error(`closed before opening (${event.code})`));
    };
  });
}

/**
 * Creates the target of a `websocket` route. The topic template's
 * placeholders are `{route}` (also `{listener}`), `{connectionId}`,
 * `{deviceId}`, `{remoteAddress}` and the route's path params; a value that
 * is missing (no device bound yet, unknown name) is `-`, and `/`, `+`, `#`
 * and NUL inside values become `_`, so that every value is one topic level.
 *
 * In bus mode with `handshake: "device-id"` the first message is the device id
 * (`[A-Za-z0-9_.:@-]`, 1-128 characters; anything else closes with 1008); it
 * is bound to the connection and not published.
 *
 * Proxy mode dials the upstream before upgrading, so that a dead upstream is a
 * 502 and not an accepted socket that closes at once; a failed dial moves to
 * another target, up to the upstream's `retries`, within its connect timeout.
 * The path and query are kept; frames keep their kind both ways; close codes
 * are relayed as {@link relayClose} allows. The upstream target counts as in
 * flight until its socket closes.
 *
 * @example
 * ```ts
 * import { Hono } from "hono";
 * import { Bus } from "../bus/bus.ts";
 * import { WebSocketTargetConfig } from "./config.ts";
 * import { ConnectionManager } from "../connections/manager.ts";
 * import { MetricsRegistry } from "../observability/metrics.ts";
 * import type { GatewayEnv } from "../pipeline/stage.ts";
 * import { createWebSocketTarget } from "./websocket.ts";
 *
 * const metrics = new MetricsRegistry();
 * const bus = new Bus(metrics);
 * const connections = new ConnectionManager(bus, metrics);
 * const config = WebSocketTargetConfig.parse({ topic: "devices/{id}/up" });
 * const target = createWebSocketTarget(config, { bus, connections });
 * bus.subscribe("devices/+/up", (message) => message.reply?.(message.payload), { owner: "echo" });
 * const app = new Hono<GatewayEnv>();
 * app.get("/devices/:id", (c) => target(c));
 * ```
 */
export function createWebSocketTarget(
  config: WebSocketTargetConfig,
  deps: WebSocketTargetDeps,
): Target {
  const upstream = config.mode === "proxy" ? deps.upstream : undefined;
  if (config.mode === "proxy" && !upstream) {
    throw new Error("a proxy-mode WebSocket target needs its upstream");
  }
  const acceptable = config.protocols ?? [];
  const renderTopic = compileTopicTemplate(config.topic);
  const idleTimeout = config.heartbeat / 500; // seconds: two heartbeat intervals

  return async (c: GatewayContext): Promise<Response> => {
    const { requestId, clientIp } = c.env;
    const route = c.env.route.name;
    if (!/\bwebsocket\b/i.test(c.req.header("upgrade") ?? "")) {
      return errorResponse(
        new GatewayError(426, "upgrade_required", "this route serves WebSocket connections only", {
          headers: { upgrade: "websocket" },
        }),
        requestId,
      );
    }
    const offered = (c.req.header("sec-websocket-protocol") ?? "").split(",")
      .map((protocol) => protocol.trim()).filter((protocol) => protocol !== "");
    const chosen = acceptable.find((protocol) => offered.includes(protocol));
    if (offered.length > 0 && acceptable.length > 0 && chosen === undefined) {
      return errorResponse(
        new GatewayError(
          400,
          "unsupported_subprotocol",
          `none of the offered subprotocols is accepted here (accepted: ${acceptable.join(", ")})`,
        ),
        requestId,
      );
    }

    let socket: WebSocket | undefined;
    let slow = false;
    /** Sends one frame to the client unless it is closed or too far behind (then closed, 1008). */
    const deliver = (data: string | Uint8Array, bytes: number): boolean => {
      if (socket?.readyState !== WebSocket.OPEN) return false;
      if (socket.bufferedAmount > config.sendQueueLimit) {
        if (!slow) {
          slow = true;
          deps.onSlowConsumer?.();
          socket.close(1008, "slow consumer");
        }
        return false;
      }
      socket.send(data);
      connection.sent(bytes, 1);
      return true;
    };
    const admitted = deps.connections.admit({
      listener: route,
      protocol: "ws",
      remoteAddress: clientIp,
      limits: config.limits,
      handle: {
        send(payload) {
          if (!deliver(payload, payload.byteLength)) {
            throw new Error(`WebSocket ${connection.id} is not open or is too far behind`);
          }
        },
        close: (reason, violation) =>
          socket?.close(violation ? 1008 : 1001, fitCloseReason(reason)),
      },
    });
    if ("refused" in admitted) {
      return errorResponse(
        new GatewayError(503, "connection_refused", admitted.refused),
        requestId,
      );
    }
    const connection: Connection = admitted;

    let upstreamSocket: WebSocket | undefined;
    let upstreamTarget: UpstreamTarget | undefined;
    if (upstream) {
      const url = c.req.url;
      const pathAndQuery = url.slice(url.indexOf("/", url.indexOf("//") + 2));
      const protocols = config.protocols ? (chosen === undefined ? [] : [chosen]) : offered;
      const tried = new Set<UpstreamTarget>();
      const failures: string[] = [];
      for (let attempt = 0; attempt <= upstream.config.retries && !upstreamSocket; attempt++) {
        const target = upstream.pick(tried);
        if (!target) break;
        tried.add(target);
        const wsUrl = `ws${target.url.slice("http".length)}${pathAndQuery}`;
        try {
          upstreamSocket = await openWebSocket(wsUrl, protocols, upstream.config.timeouts.connect);
          upstreamTarget = target;
          target.reportSuccess();
        } catch (error) {
          const reason = `${wsUrl}: ${(error as Error).message}`;
          failures.push(reason);
          target.reportFailure(reason);
          target.release();
        }
      }
      if (!upstreamSocket || !upstreamTarget) {
        connection.closed();
        return errorResponse(
          tried.size === 0
            ? new GatewayError(
              503,
              "no_healthy_target",
              `upstream "${upstream.name}" has no healthy target`,
            )
            : new GatewayError(
              502,
              "upstream_unreachable",
              `upstream "${upstream.name}": cannot open the WebSocket`,
              { detail: { failures } },
            ),
          requestId,
        );
      }
      c.env.upstreamTarget = upstreamTarget.url;
    }

    let response: Response;
    try {
      ({ socket, response } = Deno.upgradeWebSocket(c.req.raw, {
        protocol: upstreamSocket ? upstreamSocket.protocol || undefined : chosen,
        idleTimeout,
      }));
    } catch (error) {
      connection.closed();
      upstreamSocket?.close();
      upstreamTarget?.release();
      return errorResponse(
        new GatewayError(400, "bad_websocket_handshake", (error as Error).message),
        requestId,
      );
    }
    const client = socket;
    client.binaryType = "arraybuffer";
    let closed = false;
    client.onclose = (event) => {
      // Deno may dispatch `close` twice (after a heartbeat timeout, for one).
      if (closed) return;
      closed = true;
      connection.closed();
      if (upstreamSocket) relayClose(upstreamSocket, "upstream", event.code, event.reason);
    };
    // A client that goes away before the 101 response reaches it never opens or closes its
    // socket; after OPEN_DEADLINE it is given up, with its connection slot and upstream socket.
    const openDeadline = setTimeout(() => {
      if (client.readyState === WebSocket.CONNECTING) {
        client.onclose?.(new CloseEvent("close", { code: 1006, reason: "never opened" }));
      }
    }, OPEN_DEADLINE);
    client.addEventListener("open", () => clearTimeout(openDeadline));
    client.addEventListener("close", () => clearTimeout(openDeadline));

    if (upstreamSocket && upstreamTarget) {
      const toUpstream = upstreamSocket;
      const target = upstreamTarget;
      let released = false;
      toUpstream.onclose = (event) => {
        if (released) return;
        released = true;
        target.release();
        relayClose(client, "client", event.code, event.reason);
      };
      // The client socket opens once the 101 response is out; frames from the
      // upstream wait here until then, up to the send-queue limit.
      const early: { data: string | Uint8Array; bytes: number }[] = [];
      let earlyBytes = 0;
      toUpstream.onmessage = (event: MessageEvent<string | ArrayBuffer>) => {
        const bytes = frameBytes(event.data);
        const data = typeof event.data === "string" ? event.data : bytes;
        if (client.readyState !== WebSocket.CONNECTING) {
          deliver(data, bytes.byteLength);
          if (slow) toUpstream.close(1000, "1008 slow consumer");
        } else if ((earlyBytes += bytes.byteLength) > config.sendQueueLimit) {
          toUpstream.close(1000, "1008 slow consumer");
          client.close(1008, "slow consumer");
        } else early.push({ data, bytes: bytes.byteLength });
      };
      client.onopen = () => {
        for (const frame of early.splice(0)) deliver(frame.data, frame.bytes);
      };
      client.onmessage = (event: MessageEvent<string | ArrayBuffer>) => {
        const bytes = frameBytes(event.data);
        if (connection.received(bytes.byteLength, 1) === 0) return; // over its rate: closing
        if (bytes.byteLength > config.maxMessageSize) {
          client.close(1009, "message too big");
        } else if (toUpstream.bufferedAmount > config.sendQueueLimit) {
          client.close(1008, "upstream too slow");
        } else if (toUpstream.readyState === WebSocket.OPEN) {
          toUpstream.send(typeof event.data === "string" ? event.data : bytes);
        }
      };
      return limitMessages(response, config.maxMessageSize);
    }

    const params = c.req.param() as Record<string, string>;
    const placeholders: Record<string, string | undefined> = {
      ...params,
      route,
      listener: route,
      connectionId: connection.id,
      remoteAddress: clientIp,
    };
    let awaitingDeviceId = config.handshake === "device-id";
    client.onmessage = (event: MessageEvent<string | ArrayBuffer>) => {
      const kind = typeof event.data === "string" ? "text" : "binary";
      const payload = frameBytes(event.data);
      if (connection.received(payload.byteLength, 1) === 0) return; // over its rate: closing
      if (payload.byteLength > config.maxMessageSize) {
        client.close(1009, "message too big");
        return;
      }
      if (awaitingDeviceId) {
        const deviceId = decoder.decode(payload).trim();
        if (!DEVICE_ID.test(deviceId)) {
          client.close(1008, "invalid device id");
          return;
        }
        awaitingDeviceId = false;
        connection.bindDevice(deviceId);
        return;
      }
      placeholders.deviceId = connection.source.deviceId;
      const topic = renderTopic(placeholders);
      try {
        deps.bus.publish({
          topic,
          payload,
          source: connection.source,
          meta: { type: kind },
          reply: (answer, meta) => {
            const asText = (meta?.type ?? kind) === "text";
            deliver(asText ? decoder.decode(answer) : answer, answer.byteLength);
          },
        });
      } catch (error) {
        // An exception escaping a WebSocket event handler would end the process.
        logger.error("route {route}: connection {id} cannot publish on {topic}: {error}", {
          route,
          id: connection.id,
          topic,
          error,
        });
        const close = webSocketClose(error);
        client.close(close.code, close.reason);
      }
    };
    return limitMessages(response, config.maxMessageSize);
  };
}
