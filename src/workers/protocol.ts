/**
 * The messages of the worker protocol, version {@link PROTOCOL_VERSION}
 * (docs/worker-protocol.md), and the validation of what a worker sends: a
 * message of a known type with fields of the right types, or a
 * {@link ProtocolError} that says which field is wrong.
 *
 * @module
 */

import type { FrameMessage } from "./frame.ts";

/** The protocol version this gateway speaks. */
export const PROTOCOL_VERSION = 2;

/** A call or result id: unique among the sender's calls in flight. */
export type CallId = string | number;

/** Why a call failed, as it travels in a `result`. */
export interface ErrorInfo {
  type: string;
  message: string;
  traceback?: string;
}

/** The worker's first frame. */
export interface Hello {
  type: "hello";
  protocol: number;
  worker: string;
  instance: number;
  /** The instance's `GATEWAY_SECRET`: proves the connection comes from the process the gateway spawned. */
  secret: string;
  pid: number;
  functions: string[];
  subscriptions: string[];
  concurrency: number;
  codecs: string[];
}

/** The gateway's answer to an accepted `hello`. */
export interface Welcome {
  type: "welcome";
  protocol: number;
  codec: "json";
  maxFrame: number;
  /** Milliseconds between the gateway's pings. */
  heartbeat: number;
}

/** A refusal; the gateway closes the connection after it. */
export interface ErrorFrame {
  type: "error";
  message: string;
}

/** A function call, in either direction. */
export interface Call {
  type: "call";
  id: CallId;
  function: string;
  args: unknown;
  /** Milliseconds the caller waits. */
  timeout?: number;
  meta?: Record<string, string>;
}

/** The answer to a call. */
export type Result =
  | { type: "result"; id: CallId; ok: true; value: unknown }
  | { type: "result"; id: CallId; ok: false; error: ErrorInfo };

/** The caller no longer waits for call `id`. */
export interface Cancel {
  type: "cancel";
  id: CallId;
}

/** A payload as it travels in `publish` and `event` frames. */
export interface EncodedPayload {
  payload: string;
  encoding: "utf8" | "base64";
}

/** A message a worker puts on the bus. */
export interface Publish extends EncodedPayload {
  type: "publish";
  topic: string;
  meta?: Record<string, string>;
}

/** A bus message delivered to a worker's subscription. */
export interface Event extends EncodedPayload {
  type: "event";
  /** The subscription's filter, so the worker picks its handler without matching topics. */
  filter: string;
  topic: string;
  meta: Record<string, string>;
}

/** Adds or removes a bus subscription of the worker instance. */
export interface SubscriptionChange {
  type: "subscribe" | "unsubscribe";
  filter: string;
}

/** A heartbeat and its answer, in either direction. */
export interface Heartbeat {
  type: "ping" | "pong";
  id: CallId;
}

/** A log record from the worker. */
export interface Log {
  type: "log";
  level: "debug" | "info" | "warning" | "error";
  message: string;
  fields?: Record<string, unknown>;
}

/** Asks the worker to finish its calls in flight and exit 0. */
export interface Stop {
  type: "stop";
  /** Milliseconds before the gateway sends SIGTERM. */
  timeout: number;
}

/** Every message a worker may send after its `hello`. */
export type WorkerMessage =
  | Call
  | Result
  | Cancel
  | Publish
  | SubscriptionChange
  | Heartbeat
  | Log;

/** Every message the gateway sends. */
export type GatewayMessage =
  | Welcome
  | ErrorFrame
  | Call
  | Result
  | Cancel
  | Event
  | Heartbeat
  | Stop;

/**
 * A message that is valid JSON but not a valid protocol message.
 *
 * @example
 * ```ts
 * import { parseWorkerMessage, ProtocolError } from "./protocol.ts";
 * try {
 *   parseWorkerMessage({ type: "call", id: 1 });
 * } catch (error) {
 *   if (error instanceof ProtocolError) console.log(error.message);
 * }
 * ```
 */
export class ProtocolError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "ProtocolError";
  }
}

const LOG_LEVELS = new Set(["debug", "info", "warning", "error"]);

/** Field checks that throw a {@link ProtocolError} naming the message type and the field. */
class Fields {
  constructor(readonly message: FrameMessage) {}

  #fail(field: string, expected: string): never {
    throw new ProtocolError(`"${this.message.type}" message: "${field}" must be ${expected}`);
  }

  string(field: string): string {
    const value = this.message[field];
    return typeof value === "string" ? value : this.#fail(field, "a string");
  }

  id(field = "id"): CallId {
    const value = this.message[field];
    return typeof value === "string" || Number.isSafeInteger(value)
      ? value as CallId
      : this.#fail(field, "a string or an integer");
  }

  count(field: string, min: number): number {
    const value = this.message[field];
    return Number.isSafeInteger(value) && (value as number) >= min
      ? value as number
      : this.#fail(field, `an integer ≥ ${min}`);
  }

  optionalTimeout(): number | undefined {
    const value = this.message.timeout;
    if (value === undefined || value === null) return undefined;
    return typeof value === "number" && value >= 0 ? value : this.#fail("timeout", "ms ≥ 0");
  }

  strings(field: string): string[] {
    const value = this.message[field];
    if (value === undefined) return [];
    return Array.isArray(value) && value.every((item) => typeof item === "string")
      ? value
      : this.#fail(field, "an array of strings");
  }

  meta(): Record<string, string> | undefined {
    const value = this.message.meta;
    if (value === undefined || value === null) return undefined;
    if (typeof value !== "object" || Array.isArray(value)) {
      this.#fail("meta", "an object of strings");
    }
    for (const item of Object.values(value)) {
      if (typeof item !== "string") this.#fail("meta", "an object of strings");
    }
    return value as Record<string, string>;
  }

  encoding(): "utf8" | "base64" {
    const value = this.message.encoding ?? "utf8";
    return value === "utf8" || value === "base64" ? value : this.#fail("encoding", "utf8|base64");
  }

  errorInfo(): ErrorInfo {
    const error = this.message.error as Record<string, unknown> | null | undefined;
    if (
      !error || typeof error !== "object" || typeof error.type !== "string" ||
      typeof error.message !== "string" ||
      (error.traceback !== undefined && error.traceback !== null &&
        typeof error.traceback !== "string")
    ) {
      this.#fail("error", "{ type: string, message: string, traceback?: string }");
    }
    return {
      type: error.type,
      message: error.message,
      ...(typeof error.traceback === "string" ? { traceback: error.traceback } : {}),
    };
  }
}

/**
 * Validates a worker's `hello` and returns it typed. Throws a
 * {@link ProtocolError} on a wrong field or an unsupported protocol version.
 *
 * @example
 * ```ts
 * import { parseHello } from "./protocol.ts";
 * parseHello({
 *   type: "hello", protocol: 2, worker: "orders", instance: 0, secret: "5f3c…", pid: 42,
 *   functions: ["create"], subscriptions: [], concurrency: 4, codecs: ["json"],
 * }).functions; // ["create"]
 * ```
 */
export function parseHello(message: FrameMessage): Hello {
  if (message.type !== "hello") {
    throw new ProtocolError(`the first message must be "hello", got "${message.type}"`);
  }
  const fields = new Fields(message);
  const protocol = fields.count("protocol", 1);
  if (protocol !== PROTOCOL_VERSION) {
    throw new ProtocolError(
      `protocol version ${protocol} is not supported (this gateway speaks ${PROTOCOL_VERSION})`,
    );
  }
  const functions = fields.strings("functions");
  const bad = functions.find((name) => !/^[A-Za-z0-9_.-]+$/.test(name));
  if (bad !== undefined) {
    throw new ProtocolError(`"hello" message: function name "${bad}" must match [A-Za-z0-9_.-]+`);
  }
  const codecs = message.codecs === undefined ? ["json"] : fields.strings("codecs");
  if (!codecs.includes("json")) {
    throw new ProtocolError(`"hello" message: "codecs" must include "json"`);
  }
  return {
    type: "hello",
    protocol,
    worker: fields.string("worker"),
    instance: fields.count("instance", 0),
    secret: fields.string("secret"),
    pid: fields.count("pid", 0),
    functions,
    subscriptions: fields.strings("subscriptions"),
    concurrency: fields.count("concurrency", 1),
    codecs,
  };
}

/**
 * Validates a message a worker sent after its `hello`. Throws a
 * {@link ProtocolError} on an unknown type or a wrong field.
 *
 * @example
 * ```ts
 * import { parseWorkerMessage } from "./protocol.ts";
 * parseWorkerMessage({ type: "pong", id: 3 }); // { type: "pong", id: 3 }
 * ```
 */
export function parseWorkerMessage(message: FrameMessage): WorkerMessage {
  const fields = new Fields(message);
  switch (message.type) {
    case "call": {
      const timeout = fields.optionalTimeout();
      const meta = fields.meta();
      return {
        type: "call",
        id: fields.id(),
        function: fields.string("function"),
        args: message.args ?? null,
        ...(timeout === undefined ? {} : { timeout }),
        ...(meta ? { meta } : {}),
      };
    }
    case "result": {
      const id = fields.id();
      if (message.ok === true) {
        return { type: "result", id, ok: true, value: message.value ?? null };
      }
      if (message.ok === false) return { type: "result", id, ok: false, error: fields.errorInfo() };
      throw new ProtocolError(`"result" message: "ok" must be true or false`);
    }
    case "cancel":
    case "ping":
    case "pong":
      return { type: message.type, id: fields.id() };
    case "publish": {
      const meta = fields.meta();
      return {
        type: "publish",
        topic: fields.string("topic"),
        payload: fields.string("payload"),
        encoding: fields.encoding(),
        ...(meta ? { meta } : {}),
      };
    }
    case "subscribe":
    case "unsubscribe":
      return { type: message.type, filter: fields.string("filter") };
    case "log": {
      const level = message.level ?? "info";
      if (typeof level !== "string" || !LOG_LEVELS.has(level)) {
        throw new ProtocolError(`"log" message: "level" must be debug, info, warning or error`);
      }
      const extra = message.fields;
      if (extra !== undefined && (extra === null || typeof extra !== "object")) {
        throw new ProtocolError(`"log" message: "fields" must be an object`);
      }
      return {
        type: "log",
        level: level as Log["level"],
        message: fields.string("message"),
        ...(extra ? { fields: extra as Record<string, unknown> } : {}),
      };
    }
    default:
      throw new ProtocolError(`unknown message type "${message.type}"`);
  }
}
