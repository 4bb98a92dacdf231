/**
 * The one error model. Anything the gateway answers a client with because
 * something failed is a {@link GatewayError}: an HTTP status, a code to branch
 * on, a short message, and (for the log and the admin API only) the cause and
 * a detail. {@link errorResponse} is the one place that turns any thrown value
 * into the client's response, `{ "error": { status, code, message, requestId } }`,
 * and the one place that logs it with everything the client must not see:
 * internal addresses, file paths, stacks.
 *
 * @module
 */

import { getLogger } from "@logtape/logtape";

/** What a {@link GatewayError} carries besides its status, code and message. */
export interface GatewayErrorOptions {
  /** The error that caused this one (logged, never sent). */
  cause?: unknown;
  /** Internal facts for the log and the admin API: target URLs, file paths, tracebacks. */
  detail?: unknown;
  /** Response headers the failure calls for (`retry-after`, `allow`, `upgrade`). */
  headers?: HeadersInit;
}

/**
 * A failure with the status and code a client gets. `message` is for the
 * client: it names what failed in the client's terms (a route, an upstream's
 * name, a function) and never an internal address or path; those go in
 * `detail`.
 *
 * @example
 * ```ts
 * import { GatewayError } from "./errors.ts";
 * const error = new GatewayError(502, "upstream_unreachable", 'upstream "api": cannot connect', {
 *   detail: { target: "http://10.0.0.7:8080" },
 * });
 * error.status; // 502
 * ```
 */
export class GatewayError extends Error {
  readonly detail?: unknown;
  readonly headers?: HeadersInit;

  constructor(
    readonly status: number,
    readonly code: string,
    message: string,
    options: GatewayErrorOptions = {},
  ) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause });
    this.name = "GatewayError";
    if (options.detail !== undefined) this.detail = options.detail;
    if (options.headers !== undefined) this.headers = options.headers;
  }
}

/**
 * Statuses of the codes that travel by name alone: across a function call
 * (`{ type, message }` from a plugin, a language worker or a model) or from
 * an error that carries a code but no status.
 */
const CODE_STATUS: Record<string, number> = {
  bad_arguments: 400,
  bad_result: 502,
  no_responder: 503,
  overloaded: 503,
  unavailable: 503,
  model_unavailable: 503,
  timeout: 504,
};

/**
 * The HTTP status of an error code that travels without one: 500 for a code
 * that is not the gateway's own (a function's `ValueError`).
 *
 * @example
 * ```ts
 * import { statusOfCode } from "./errors.ts";
 * statusOfCode("timeout"); // 504
 * statusOfCode("ValueError"); // 500
 * ```
 */
export function statusOfCode(code: string): number {
  return Object.hasOwn(CODE_STATUS, code) ? CODE_STATUS[code] : 500;
}

/**
 * Turns any thrown value into a {@link GatewayError}: a GatewayError as it
 * is; an error that carries a numeric `status` and a `code` or `type` (an
 * error from a module that cannot import this one) with those; anything else
 * as 500 `internal_error` with the value as its cause.
 *
 * @example
 * ```ts
 * import { toGatewayError } from "./errors.ts";
 * toGatewayError(new TypeError("x is undefined")).code; // "internal_error"
 * ```
 */
export function toGatewayError(error: unknown): GatewayError {
  if (error instanceof GatewayError) return error;
  if (error instanceof Error) {
    const { status, code, type } = error as Error & {
      status?: unknown;
      code?: unknown;
      type?: unknown;
    };
    const named = typeof code === "string" ? code : typeof type === "string" ? type : undefined;
    if (named !== undefined) {
      const known = typeof status === "number" && status >= 400 && status <= 599;
      return new GatewayError(known ? status : statusOfCode(named), named, error.message, {
        cause: error,
      });
    }
  }
  return new GatewayError(500, "internal_error", "the gateway failed to handle this request", {
    cause: error,
  });
}

const ADDRESS = new RegExp(
  [
    String.raw`\b[a-z][a-z\d+.-]*:\/\/[^\s"'<>()]*`, // any URL: http://10.0.0.7:8080/x, file:///a
    String.raw`\b\d{1,3}(?:\.\d{1,3}){3}(?::\d+)?\b`, // IPv4, with or without a port
    String.raw`\[[\da-f:.]+\](?::\d+)?`, // [IPv6]:port
    String.raw`\blocalhost:\d+\b`,
  ].join("|"),
  "gi",
);
/** A source location: `/p/a.ts:3:9`, `mod.py:12`, `worker.php:40`. */
const SOURCE = /[^\s"'()<>]*\.[a-z]{1,4}:\d+(?::\d+)?/gi;

/**
 * A client-facing message with internal addresses and source locations
 * replaced by `<address>` and `<source>`: the safety net under messages that
 * come from code the gateway does not write (a plugin's or worker's own error
 * message).
 *
 * @example
 * ```ts
 * import { redact } from "./errors.ts";
 * redact("x is undefined (at /srv/plugins/a.ts:3:9)"); // "x is undefined (at <source>)"
 * redact("connect to 127.0.0.1:9000 refused"); // "connect to <address> refused"
 * ```
 */
export function redact(message: string): string {
  return message.replace(ADDRESS, "<address>").replace(SOURCE, "<source>");
}

/**
 * The WebSocket close for a failure on an open connection (see
 * {@link toGatewayError}): 1013 "try again later" for a 503, 1011 for other
 * 5xx, 1008 "policy violation" for what the client sent; the reason is the
 * error's code, never its message.
 *
 * @example
 * ```ts
 * import { GatewayError, webSocketClose } from "./errors.ts";
 * webSocketClose(new GatewayError(400, "invalid_topic", "bad")); // { code: 1008, reason: "invalid_topic" }
 * ```
 */
export function webSocketClose(error: unknown): { code: number; reason: string } {
  const { status, code } = toGatewayError(error);
  return { code: status === 503 ? 1013 : status >= 500 ? 1011 : 1008, reason: code };
}

/** One failure as the log and the admin API keep it. */
export interface ErrorRecord {
  requestId: string;
  time: string;
  status: number;
  code: string;
  message: string;
  detail?: unknown;
  /** The cause chain, each as `Name: message`, outermost first. */
  causes: string[];
  stack?: string;
}

/**
 * The last failures (5xx) by request id, for the admin API; bounded, oldest
 * dropped first.
 *
 * @example
 * ```ts
 * import { ErrorLog } from "./errors.ts";
 * const log = new ErrorLog(2);
 * log.add({ requestId: "r1", time: "", status: 502, code: "x", message: "m", causes: [] });
 * log.get("r1")?.status; // 502
 * ```
 */
export class ErrorLog {
  readonly #records = new Map<string, ErrorRecord>();

  constructor(readonly capacity: number) {}

  /** Keeps `record`, dropping the oldest one when full. */
  add(record: ErrorRecord): void {
    this.#records.delete(record.requestId);
    this.#records.set(record.requestId, record);
    if (this.#records.size > this.capacity) {
      this.#records.delete(this.#records.keys().next().value!);
    }
  }

  /** The failure of request `requestId`, while it is still kept. */
  get(requestId: string): ErrorRecord | undefined {
    return this.#records.get(requestId);
  }

  /** Every kept failure, newest first. */
  list(): ErrorRecord[] {
    return [...this.#records.values()].reverse();
  }
}

/** The failures {@link errorResponse} answered with a 5xx, for `GET /errors` on the admin API. */
export const recentErrors: ErrorLog = new ErrorLog(256);

const logger = getLogger(["gateway", "errors"]);

function causesOf(error: GatewayError): { causes: string[]; stack?: string } {
  const causes: string[] = [];
  let stack: string | undefined = error.stack;
  for (let cause = error.cause, depth = 0; cause !== undefined && depth < 8; depth++) {
    if (cause instanceof Error) {
      causes.push(`${cause.name}: ${cause.message}`);
      stack = cause.stack ?? stack;
      cause = cause.cause;
    } else {
      causes.push(String(cause));
      break;
    }
  }
  return { causes, ...(stack === undefined ? {} : { stack }) };
}

/**
 * The client's response to any thrown value (see {@link toGatewayError}):
 * `{ "error": { status, code, message, requestId } }` with the request id also
 * in `X-Request-Id`, and the failure's headers. The message is
 * {@link redact}ed; cause, detail and stack are logged under the request id
 * (5xx as errors or warnings, 4xx at debug) and 5xx are kept in
 * {@link recentErrors}.
 *
 * @example
 * ```ts
 * import { errorResponse, GatewayError } from "./errors.ts";
 * const res = errorResponse(new GatewayError(404, "no_route", "no route for GET /x"), "req-1");
 * res.status; // 404
 * ```
 */
export function errorResponse(error: unknown, requestId?: string): Response {
  const failure = toGatewayError(error);
  const { status, code } = failure;
  const message = redact(failure.message);
  if (status >= 500) {
    const record: ErrorRecord = {
      requestId: requestId ?? "-",
      time: new Date().toISOString(),
      status,
      code,
      message: failure.message,
      ...(failure.detail === undefined ? {} : { detail: failure.detail }),
      ...causesOf(failure),
    };
    if (requestId) recentErrors.add(record);
    const line = "request {requestId} failed: {status} {code}: {message}";
    if (status === 500) logger.error(line, { ...record });
    else logger.warn(line, { ...record });
  } else {
    logger.debug("request {requestId}: {status} {code}: {message}", {
      requestId: requestId ?? "-",
      status,
      code,
      message: failure.message,
    });
  }
  const response = Response.json({ error: { status, code, message, requestId } }, {
    status,
    headers: failure.headers,
  });
  if (requestId) response.headers.set("x-request-id", requestId);
  return response;
}
