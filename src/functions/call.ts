/**
 * Function calls over the bus. A function is served on `fn/<owner>/<name>`
 * (owner: a plugin, a language worker, or `model`). In process, the
 * arguments and the result travel as values (`BusMessage.value`, `replyValue`)
 * and are serialised only where they leave the process or thread; a caller
 * that sends bytes gets bytes: the JSON of the arguments and of the result.
 * Both must be JSON-compatible (`jsonValueError`), in process as out of it.
 * A failed call replies with meta `error` set to the error type and
 * `{ type, message, traceback? }` as value. The caller's deadline travels in
 * meta `deadline` (epoch ms), so a function that calls another passes on what
 * is left of its own time, never more.
 *
 * Only the gateway serves `fn/<owner>/*`, on behalf of that owner: plugins,
 * workers and MQTT clients reach the bus through a scope (`Bus.scoped`) that
 * lets them call any function but neither subscribe to `fn/` nor publish on
 * another owner's functions. A reply is a function the bus hands the
 * callee, never a topic, so nobody else can read or give it.
 *
 * @module
 */

import { type Bus, BusError, type Subscription } from "../bus/bus.ts";
import { encodeValue, jsonValueError, type MessageSource, messageValue } from "../bus/message.ts";
import { GatewayError, statusOfCode } from "../errors.ts";

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
 * traceback across the bus. Its code is its type and its status the one
 * `statusOfCode` gives that type (504 `timeout`, 503 `no_responder` and
 * `overloaded`, 400 `bad_arguments`, 500 for the callee's own types); the
 * traceback is its detail, for the log only.
 *
 * @example
 * ```ts
 * import { FunctionCallError } from "./call.ts";
 * const error = new FunctionCallError({ type: "ValueError", message: "bad id" });
 * error.status; // 500
 * ```
 */
export class FunctionCallError extends GatewayError {
  readonly type: string;
  readonly traceback?: string;

  constructor(body: FunctionErrorBody) {
    super(
      statusOfCode(body.type),
      body.type,
      body.message,
      body.traceback === undefined ? {} : { detail: { traceback: body.traceback } },
    );
    this.name = "FunctionCallError";
    this.type = body.type;
    if (body.traceback !== undefined) this.traceback = body.traceback;
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
 * with `args` and resolves with its result: in process, the very value the
 * function returned. Rejects with a {@link FunctionCallError}: the callee's
 * own error, or `timeout`, `no_responder`, `bad_arguments` (arguments that
 * are not JSON-compatible).
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
  const value = args ?? null;
  const invalid = jsonValueError(value, "arguments");
  if (invalid) throw new FunctionCallError({ type: "bad_arguments", message: invalid });
  let reply;
  try {
    reply = await bus.request(topic, { value }, {
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
  const result = messageValue(reply);
  if (reply.meta.error !== undefined) throw new FunctionCallError(result as FunctionErrorBody);
  return result;
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
 * answers with its error (see {@link errorBody}). Arguments that are not JSON
 * answer `bad_arguments`, a result that is not JSON-compatible `bad_result`.
 * An in-process caller gets the result value itself, any other its JSON. Unsubscribe the returned subscription, or
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
    const answer = message.replyValue ??
      ((value: unknown, meta?: Record<string, string>) => reply(encodeValue(value), meta));
    let args: unknown;
    try {
      args = messageValue(message);
    } catch (error) {
      answer(errorReply("bad_arguments", `arguments are not JSON: ${error}`), {
        error: "bad_arguments",
      });
      return;
    }
    (async () => await handler(args as Args, call) ?? null)().then((result) => {
      const invalid = jsonValueError(result, "result");
      if (invalid) answer(errorReply("bad_result", invalid), { error: "bad_result" });
      else answer(result);
    }, (error) => {
      const body = errorBody(error);
      answer(body, { error: body.type });
    });
  }, { owner, queueSize: 65536, overflow: "drop-newest" });
}

function errorReply(type: string, message: string): FunctionErrorBody {
  return { type, message };
}

/**
 * The wire form of anything a handler threw: a {@link FunctionCallError} as
 * it came; an error with a code (a `GatewayError`) or a `type` under that
 * name, so that the caller maps it to the same status; any other error under
 * its class name.
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
    const { code, type } = error as Error & { code?: unknown; type?: unknown };
    return {
      type: typeof code === "string" ? code : typeof type === "string" ? type : error.name,
      message: error.message,
      ...(error.stack === undefined ? {} : { traceback: error.stack }),
    };
  }
  return { type: "Error", message: String(error) };
}
