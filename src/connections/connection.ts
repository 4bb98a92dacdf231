/**
 * The contract between listeners and the connection manager. A listener
 * (WebSocket, TCP, UDP peer, Unix socket) asks the manager to admit each new
 * connection, gets back a {@link Connection} to report traffic on, and gives
 * the manager a {@link ConnectionHandle} through which the admin API, limits
 * and the bus can push to it or close it.
 *
 * @module
 */

import type { MessageSource } from "../bus/message.ts";
import type { MessageRate } from "./token_bucket.ts";

/** What a listener lets the manager do with one of its connections. */
export interface ConnectionHandle {
  /** Sends one payload, framed as the listener frames replies. Throws if closed. */
  send(payload: Uint8Array): void;
  /**
   * Closes the connection; `reason` goes to the log (and to WebSocket close
   * frames). `violation`: the peer broke a limit (a WebSocket closes with
   * 1008 instead of 1001).
   */
  close(reason: string, violation?: boolean): void;
}

/** Limits a listener applies to its connections (from the listener's config). */
export interface ConnectionLimits {
  /** Most open connections on this listener. */
  maxConnections: number;
  /** Most open connections from one remote address on this listener. */
  maxPerIp: number;
  /** Milliseconds without traffic in either direction before the connection is closed; 0 = never. */
  idleTimeout: number;
  /**
   * Messages a second (and burst) each connection may send; the excess is
   * dropped and counted. Absent, or `perSecond` 0: no limit.
   */
  messageRate?: MessageRate;
}

/** A connection as the admin API shows it. */
export interface ConnectionInfo {
  id: string;
  listener: string;
  protocol: MessageSource["protocol"];
  remoteAddress: string;
  remotePort?: number;
  deviceId?: string;
  /** Epoch milliseconds. */
  openedAt: number;
  /** Epoch milliseconds of the last frame in or out. */
  lastSeenAt: number;
  bytesIn: number;
  bytesOut: number;
  framesIn: number;
  framesOut: number;
}

/** One admitted connection, as the listener that owns it sees it. */
export interface Connection {
  readonly id: string;
  /** The `source` of every bus message this connection publishes. */
  readonly source: MessageSource;
  /**
   * Counts incoming traffic and marks the connection alive. Returns how many
   * of the `frames` (default 1) are within the connection's message rate:
   * the listener delivers those, the first ones, and drops the rest (counted
   * as dropped). A connection that went over its rate is being closed (its
   * handle's `close` was called); a UDP peer is not, its excess is dropped.
   */
  received(bytes: number, frames?: number): number;
  /** Counts outgoing traffic and marks the connection alive. */
  sent(bytes: number, frames?: number): void;
  /** Binds a device id (from a handshake frame or a plugin); updates `source.deviceId`. */
  bindDevice(deviceId: string): void;
  /** Tells the manager the connection is gone (the listener calls this once, however it ended). */
  closed(): void;
  /** A snapshot for the admin API. */
  info(): ConnectionInfo;
}
