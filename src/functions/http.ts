/**
 * How an HTTP request becomes a function's argument and a function's result
 * becomes the HTTP response, for the `function` route target. The shapes are
 * plain JSON so that a Python, PHP or Node worker reads them as easily as a
 * plugin does.
 *
 * @module
 */

/** The argument a function gets for an HTTP request. */
export interface HttpRequestArgs {
  method: string;
  /** The path, without the query. */
  path: string;
  /** The full URL as the client asked for it. */
  url: string;
  /** Route params (`/orders/:id` gives `{ id }`). */
  params: Record<string, string>;
  /** Query parameters; a repeated one keeps its last value. */
  query: Record<string, string>;
  /** Header names are lower case. */
  headers: Record<string, string>;
  /** The body as text, or base64 when {@link bodyEncoding} says so; "" when there is none. */
  body: string;
  bodyEncoding?: "base64";
  /** The client's address and the request id, for logs and audit. */
  clientIp: string;
  requestId: string;
}

/** A result that says how to answer: any object with a numeric `status`. */
export interface HttpResult {
  status: number;
  headers?: Record<string, string>;
  /** A string is sent as it is (text/plain unless a content type is set); anything else as JSON. */
  body?: unknown;
  /** `base64` when `body` is base64 of binary content. */
  bodyEncoding?: "base64";
}

const TEXTUAL = /^(text\/|application\/(json|xml|x-www-form-urlencoded|[\w.+-]+\+(json|xml))\b)/i;

/**
 * Encodes a body for {@link HttpRequestArgs}: text when its content type is
 * textual (and it decodes as UTF-8), else base64.
 *
 * @example
 * ```ts
 * import { encodeBody } from "./http.ts";
 * encodeBody(new TextEncoder().encode("hi"), "text/plain"); // { body: "hi" }
 * encodeBody(new Uint8Array([255]), "image/png"); // { body: "/w==", bodyEncoding: "base64" }
 * ```
 */
export function encodeBody(
  bytes: Uint8Array,
  contentType: string | undefined,
): Pick<HttpRequestArgs, "body" | "bodyEncoding"> {
  if (bytes.length === 0) return { body: "" };
  if (contentType === undefined || TEXTUAL.test(contentType)) {
    try {
      return { body: new TextDecoder("utf-8", { fatal: true }).decode(bytes) };
    } catch {
      // Not UTF-8 after all: fall through to base64.
    }
  }
  return { body: bytes.toBase64(), bodyEncoding: "base64" };
}

/**
 * Turns a function's result into the response: an {@link HttpResult} (an
 * object with a numeric `status`) as it says, anything else as a JSON 200.
 * Throws a `TypeError` naming the problem when a result claims to be an
 * HttpResult but is not a valid one.
 *
 * @example
 * ```ts
 * import { resultToResponse } from "./http.ts";
 * resultToResponse({ total: 3 }).status; // 200, body {"total":3}
 * resultToResponse({ status: 201, headers: { location: "/orders/7" } }).status; // 201
 * ```
 */
export function resultToResponse(result: unknown): Response {
  if (!isHttpResult(result)) return withLength(JSON.stringify(result ?? null), "application/json");
  const { status, body } = result;
  if (!Number.isInteger(status) || status < 200 || status > 599) {
    throw new TypeError(`result status ${status} is not an HTTP status (200-599)`);
  }
  const headers = new Headers(result.headers);
  if (body === undefined || body === null) return new Response(null, { status, headers });
  if (result.bodyEncoding === "base64") {
    if (typeof body !== "string") throw new TypeError("a base64 result body must be a string");
    return new Response(Uint8Array.fromBase64(body), { status, headers });
  }
  const text = typeof body === "string" ? body : JSON.stringify(body);
  const type = typeof body === "string" ? "text/plain; charset=utf-8" : "application/json";
  return withLength(text, type, status, headers);
}

/** A response with a known length (so that caches and plugins can tell it is not a stream). */
function withLength(text: string, type: string, status = 200, headers = new Headers()): Response {
  const bytes = encoder.encode(text);
  if (!headers.has("content-type")) headers.set("content-type", type);
  headers.set("content-length", String(bytes.length));
  return new Response(bytes, { status, headers });
}

const encoder = new TextEncoder();

function isHttpResult(value: unknown): value is HttpResult {
  return typeof value === "object" && value !== null && !Array.isArray(value) &&
    typeof (value as { status?: unknown }).status === "number";
}
