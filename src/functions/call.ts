/**
 * Function calls over the bus. A function is served on `fn/<owner>/<name>`
 * (owner: a plugin, a language worker, or `model`); the request payload is
 * the JSON of the arguments, the reply payload the JSON of the result. A
 * failed call replies with meta `error` set to the error type and the JSON
 * `{ type, message, traceback? }` as payload. The caller's deadline travels in
 * meta `deadline` (epoch ms), so a function that calls another passes on what
 * is left of its own time, never more.
 *
 * @module
 */

import { type Bus, BusError, type Subscription } from "../bus/bus.ts";
import type { MessageSource } from "../bus/message.ts";

/** The kinds of owner a function reference may name. */
export type FunctionOwnerKind = "plugin" | "worker" | "model";

/** A parsed function reference such as `worker:orders.create`. */
export interface FunctionRef {
  /** The kind named by the reference's prefix, when it has one. */
  kind?: FunctionOwnerKind;
  owner: string;
  name: string;
  /** The bus topic the function is served on: `fn/<owner>/<name>`. */
  topic: string;
}

const NAME = /^[A-Za-z0-9_-]+$/;
const REF = /^(?:(plugin|worker):)?([A-Za-z0-9_-]+)\.([A-Za-z0-9_.-]+)$/;
const MODEL_REF = /^model:([A-Za-z0-9_-]+)$/;

/**
 * Parses `owner.name`, `plugin:owner.name`, `worker:owner.name` or
 * `model:name` (the same as `model.name`: models are served by the owner
 * `model`). The owner ends at the first dot. Throws on anything else.
 *
 * @example
 * ```ts
 * import { parseFunctionRef } from "./call.ts";
 * parseFunctionRef("worker:orders.create");
 * // { kind: "worker", owner: "orders", name: "create", topic: "fn/orders/create" }
 * ```
 */
export function parseFunctionRef(ref: string): FunctionRef {
  const model = MODEL_REF.exec(ref);
  if (model) {
    return { kind: "model", owner: "model", name: model[1], topic: `fn/model/${model[1]}` };
  }
  const match = REF.exec(ref);
  if (!match) {
    throw new Error(
      `function reference "${ref}" is not "owner.name", "plugin:|worker:owner.name" or "model:name"`,
    );
  }
  const [, kind, owner, name] = match;
  return {
    ...(kind ? { kind: kind as FunctionOwnerKind } : {}),
    owner,
    name,
    topic: `fn/${owner}/${name}`,
  };
}

/** Why a call failed; `type` is what a caller branches on. */
export interface FunctionErrorBody {
  /** `timeout`, `no_responder`, `overloaded`, `bad_arguments`, or the thrower's own type. */
  type: string;
  message: string;
  /** The callee's stack or traceback, when it has one. */
  traceback?: string;
}

/**
 * A failed function call, carrying the callee's error type, message and
 * traceback across the bus.
 *
 * @example
 * ```ts
 * import { FunctionCallError } from "./call.ts";
 * const error = new FunctionCallError({ type: "ValueError", message: "bad id" });
 * error.status; // 500
 * ```
 */
export class FunctionCallError extends Error {
  readonly type: string;
  readonly traceback?: string;

  constructor(body: FunctionErrorBody) {
    super(body.message);
    this.name = "FunctionCallError";
    this.type = body.type;
    if (body.traceback !== undefined) this.traceback = body.traceback;
  }

  /** The HTTP status this error answers with. */
  get status(): number {
    const statuses: Record<string, number> = {
      timeout: 504,
      no_responder: 503,
      overloaded: 503,
      bad_arguments: 400,
    };
    return statuses[this.type] ?? 500;
  }

  /** The error as it travels on the bus and in HTTP error bodies. */
  toJSON(): FunctionErrorBody {
    return {
      type: this.type,
      message: this.message,
      ...(this.traceback === undefined ? {} : { traceback: this.traceback }),
    };
  }
}

const encoder = new TextEncoder();
const decoder = new TextDecoder();

/** What a caller says about a call besides its arguments. */
export interface CallOptions {
  /** Who calls. */
  source: MessageSource;
  /** Milliseconds the call may take; capped by `deadline`. */
  timeout: number;
  /** An absolute deadline (epoch ms) inherited from the caller's own call. */
  deadline?: number;
  /** Extra metadata for the callee (request id, content type). */
  meta?: Record<string, string>;
}

/**
 * Calls the function `ref` (a reference string or a parsed {@link FunctionRef})
 * with `args` and resolves with its result. Rejects with a
 * {@link FunctionCallError}: the callee's own error, or `timeout`,
 * `no_responder`.
 *
 * @example
 * ```ts
 * import { Bus } from "../bus/bus.ts";
 * import { callFunction, serveFunction } from "./call.ts";
 * const bus = new Bus();
 * serveFunction(bus, "math", "add", ({ a, b }: { a: number; b: number }) => a + b);
 * const source = { listener: "gateway", protocol: "gateway" } as const;
 * await callFunction(bus, "math.add", { a: 1, b: 2 }, { source, timeout: 1000 }); // 3
 * ```
 */
export async function callFunction(
  bus: Bus,
  ref: string | FunctionRef,
  args: unknown,
  options: CallOptions,
): Promise<unknown> {
  const { topic } = typeof ref === "string" ? parseFunctionRef(ref) : ref;
  const now = Date.now();
  const deadline = Math.min(now + options.timeout, options.deadline ?? Infinity);
  const timeout = deadline - now;
  if (timeout <= 0) {
    throw new FunctionCallError({ type: "timeout", message: `no time left to call ${topic}` });
  }
  let reply;
  try {
    reply = await bus.request(topic, encoder.encode(JSON.stringify(args ?? null)), {
      source: options.source,
      meta: { ...options.meta, deadline: String(deadline) },
      timeout,
    });
  } catch (error) {
    if (error instanceof BusError && (error.code === "timeout" || error.code === "no_responder")) {
      const message = error.code === "timeout"
        ? `${topic} did not answer within ${timeout} ms`
        : `nothing serves ${topic}`;
      throw new FunctionCallError({ type: error.code, message });
    }
    throw error;
  }
  const body = reply.payload.length === 0 ? null : JSON.parse(decoder.decode(reply.payload));
  if (reply.meta.error !== undefined) throw new FunctionCallError(body as FunctionErrorBody);
  return body;
}

/** What a function handler learns about the call besides its arguments. */
export interface CallInfo {
  /** The function's name: the last level of the topic it was called on. */
  name: string;
  /** Epoch ms by which the caller wants the answer. */
  deadline: number;
  source: MessageSource;
  meta: Record<string, string>;
}

/**
 * Serves `handler` as the function `owner.name` on the bus (`name` may be
 * `+` to serve every function of the owner; `call.name` says which). Calls run
 * concurrently (the subscription only starts each one); a handler that throws
 * answers with its error (a {@link FunctionCallError} keeps its type, any other
 * error becomes its class name). Arguments that are not JSON answer
 * `bad_arguments`. Unsubscribe the returned subscription, or
 * `bus.unsubscribeOwner(owner)`, to stop serving.
 *
 * @example
 * ```ts
 * import { Bus } from "../bus/bus.ts";
 * import { serveFunction } from "./call.ts";
 * const bus = new Bus();
 * const served = serveFunction(bus, "clock", "now", () => Date.now());
 * served.unsubscribe();
 * ```
 */
export function serveFunction<Args>(
  bus: Bus,
  owner: string,
  name: string,
  handler: (args: Args, call: CallInfo) => unknown,
): Subscription {
  if (!NAME.test(owner)) throw new Error(`function owner "${owner}" must match ${NAME}`);
  return bus.subscribe(`fn/${owner}/${name}`, (message) => {
    const reply = message.reply;
    if (!reply) return;
    const call: CallInfo = {
      name: message.topic.slice(message.topic.lastIndexOf("/") + 1),
      deadline: Number(message.meta.deadline) || Infinity,
      source: message.source,
      meta: message.meta,
    };
    let args: unknown;
    try {
      args = message.payload.length === 0 ? null : JSON.parse(decoder.decode(message.payload));
    } catch (error) {
      replyError(reply, { type: "bad_arguments", message: `arguments are not JSON: ${error}` });
      return;
    }
    (async () => encoder.encode(JSON.stringify(await handler(args as Args, call) ?? null)))()
      .then(reply, (error) => replyError(reply, errorBody(error)));
  }, { owner, queueSize: 65536, overflow: "drop-newest" });
}

/**
 * The wire form of anything a handler threw.
 *
 * @example
 * ```ts
 * import { errorBody } from "./call.ts";
 * errorBody(new RangeError("too big")).type; // "RangeError"
 * ```
 */
export function errorBody(error: unknown): FunctionErrorBody {
  if (error instanceof FunctionCallError) return error.toJSON();
  if (error instanceof Error) {
    return { type: error.name, message: error.message, traceback: error.stack };
  }
  return { type: "Error", message: String(error) };
}

function replyError(
  reply: (payload: Uint8Array, meta?: Record<string, string>) => void,
  body: FunctionErrorBody,
): void {
  reply(encoder.encode(JSON.stringify(body)), { error: body.type });
}
