/**
 * The one shape every message has on the bus, whatever protocol it came in
 * on: WebSocket frames, TCP frames, UDP datagrams, MQTT publishes, device
 * telemetry, and function calls (`fn/<owner>/<name>`).
 *
 * A message between in-process parties (a function call and its reply) may
 * carry a `value` instead of bytes: then nothing is encoded unless someone
 * reads `payload`, which is the value's JSON, encoded once on first read. A
 * value must be JSON-compatible (see {@link jsonValueError}) so that it means
 * the same in process and out of it; it is shared, not copied: treat it as
 * read-only.
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
  /** The bytes; for a message carrying {@link BusMessage.value}, its JSON, encoded on first read. */
  payload: Uint8Array;
  /** The JSON-compatible value of an in-process message (a function call's arguments). */
  value?: unknown;
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
  /**
   * Answers with a value instead of bytes, when the one waiting is in this
   * process (a {@link BusMessage.reply} of the value's JSON otherwise).
   */
  replyValue?: (value: unknown, meta?: Record<string, string>) => void;
}

const encoder = new TextEncoder();
const decoder = new TextDecoder();

/**
 * The JSON bytes of a value (`undefined` as `null`).
 *
 * @example
 * ```ts
 * import { encodeValue } from "./message.ts";
 * new TextDecoder().decode(encodeValue({ a: 1 })); // '{"a":1}'
 * ```
 */
export function encodeValue(value: unknown): Uint8Array {
  return encoder.encode(JSON.stringify(value ?? null));
}

/**
 * The value of a message: its `value` when it carries one, else its payload
 * parsed as JSON (empty bytes as `null`). Throws a `SyntaxError` on bytes that
 * are not JSON.
 *
 * @example
 * ```ts
 * import { encodeValue, messageValue } from "./message.ts";
 * messageValue({ payload: encodeValue([1, 2]) }); // [1, 2]
 * ```
 */
export function messageValue(message: { payload: Uint8Array; value?: unknown }): unknown {
  if (message.value !== undefined) return message.value;
  const payload = message.payload;
  return payload.length === 0 ? null : JSON.parse(decoder.decode(payload));
}

/**
 * Sets `target.value` to `value` and defines `target.payload` as the value's
 * JSON, encoded on first read and then kept.
 *
 * @example
 * ```ts
 * import { withValue } from "./message.ts";
 * const reply = withValue({ meta: {} }, { ok: true });
 * reply.payload.length; // 11
 * ```
 */
export function withValue<T extends object>(
  target: T,
  value: unknown,
): T & { readonly payload: Uint8Array; value: unknown } {
  let payload: Uint8Array | undefined;
  return Object.defineProperties(target, {
    value: { value, enumerable: true, writable: true },
    payload: { get: () => payload ??= encodeValue(value), enumerable: true },
  }) as T & { readonly payload: Uint8Array; value: unknown };
}

/** How deep a value may nest: deeper is refused, like a cycle. */
const MAX_DEPTH = 512;

/**
 * Why `value` is not JSON-compatible, naming where (`args.items[2]: a Date is
 * not JSON ...`), or undefined when it is. JSON-compatible: `null`, booleans,
 * strings, finite numbers, arrays of these, and plain objects of these (a
 * property that is `undefined` counts as absent). Anything else (`NaN`,
 * `Infinity`, bytes, `Date`, `Map`, class instances, functions, cycles)
 * would not survive a process boundary unchanged, so it is refused in
 * process too.
 *
 * @example
 * ```ts
 * import { jsonValueError } from "./message.ts";
 * jsonValueError({ a: [1, "x", null] }); // undefined
 * jsonValueError({ at: new Date(0) }, "result"); // "result.at: a Date is not JSON ..."
 * ```
 */
export function jsonValueError(value: unknown, where = "value"): string | undefined {
  return check(value, where, []);
}

function check(value: unknown, where: string, ancestors: object[]): string | undefined {
  switch (typeof value) {
    case "string":
    case "boolean":
      return undefined;
    case "number":
      return Number.isFinite(value) ? undefined : `${where}: ${value} is not a JSON number`;
    case "object":
      break;
    default:
      return `${where}: ${
        typeof value === "undefined" ? "undefined" : `a ${typeof value}`
      } is not JSON`;
  }
  if (value === null) return undefined;
  if (ancestors.includes(value)) return `${where}: a cycle is not JSON`;
  if (ancestors.length >= MAX_DEPTH) return `${where}: nested deeper than ${MAX_DEPTH} levels`;
  ancestors.push(value);
  let error: string | undefined;
  if (Array.isArray(value)) {
    for (let i = 0; i < value.length && !error; i++) {
      error = check(value[i], `${where}[${i}]`, ancestors);
    }
  } else {
    const prototype = Object.getPrototypeOf(value);
    if (prototype !== Object.prototype && prototype !== null) {
      const kind = prototype?.constructor?.name ?? "object";
      ancestors.pop();
      return `${where}: a ${kind} is not JSON; pass plain objects, arrays, strings, numbers`;
    }
    for (const key in value) {
      const item = (value as Record<string, unknown>)[key];
      if (item !== undefined) error = check(item, `${where}.${key}`, ancestors);
      if (error) break;
    }
  }
  ancestors.pop();
  return error;
}
