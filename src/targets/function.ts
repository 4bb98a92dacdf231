/**
 * The function target: an HTTP request calls a function (a plugin's, a
 * language worker's, a model's) over the bus, and its result is the response.
 *
 * @module
 */

import type { Bus } from "../bus/bus.ts";
import type { FunctionTargetConfig } from "./config.ts";
import { errorResponse, GatewayError } from "../errors.ts";
import { callFunction, parseFunctionRef } from "../functions/call.ts";
import { encodeBody, type HttpRequestArgs, resultToResponse } from "../functions/http.ts";
import type { GatewayContext, Target } from "../pipeline/stage.ts";
import { bufferedBody } from "../pipeline/buffered_body.ts";

const decoder = new TextDecoder();

/** The argument a function gets for a request: its JSON body for a model, else {@link HttpRequestArgs}. */
async function argsOf(c: GatewayContext, model: boolean): Promise<unknown> {
  const request = c.req.raw;
  const whole = bufferedBody(c);
  const bytes = await whole.read(request);
  if (model) {
    try {
      return JSON.parse(decoder.decode(bytes));
    } catch (error) {
      throw new GatewayError(400, "bad_json", `the body is not JSON: ${(error as Error).message}`);
    }
  }
  const url = new URL(request.url);
  const body = encodeBody(bytes, request.headers.get("content-type") ?? undefined);
  // The text or base64 of the body is held with the call, beside the bytes.
  whole.hold(body.body.length);
  return {
    method: request.method,
    path: url.pathname,
    url: request.url,
    params: c.req.param() as Record<string, string>,
    query: Object.fromEntries(url.searchParams),
    headers: Object.fromEntries(request.headers),
    ...body,
    clientIp: c.env.clientIp,
    requestId: c.env.requestId,
  } satisfies HttpRequestArgs;
}

/**
 * Creates a function target. The function gets an {@link HttpRequestArgs},
 * except a model (`model:<name>`), which gets the request's JSON body, as on
 * the bus (`{ inputs, outputEncoding? }`); the result maps to the response
 * (see `resultToResponse`). A failed call answers through `errorResponse`
 * with the status of its type, as the same failure answers on any other
 * route (500 for the function's own errors, 503 when nothing serves it or it
 * is overloaded, 504 past the timeout, 502 `bad_result` for a result that is
 * no response); the traceback goes to the log, not to the client.
 *
 * @example
 * ```ts
 * import { createFunctionTarget } from "./function.ts";
 * import { Bus } from "../bus/bus.ts";
 * const target = createFunctionTarget({ name: "worker:orders.create", timeout: 30_000 }, new Bus());
 * ```
 */
export function createFunctionTarget(config: FunctionTargetConfig, bus: Bus): Target {
  const ref = parseFunctionRef(config.name);
  return async (c: GatewayContext): Promise<Response> => {
    const args = await argsOf(c, ref.kind === "model");
    let result;
    try {
      result = await callFunction(bus, ref, args, {
        source: { listener: c.env.route.listener, protocol: "http" },
        timeout: config.timeout,
        meta: { requestId: c.env.requestId },
      });
    } catch (error) {
      return errorResponse(error, c.env.requestId);
    }
    try {
      return resultToResponse(result);
    } catch (error) {
      return errorResponse(
        new GatewayError(502, "bad_result", `${config.name}: ${(error as Error).message}`, {
          cause: error,
        }),
        c.env.requestId,
      );
    }
  };
}
