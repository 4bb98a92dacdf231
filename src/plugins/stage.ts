/**
 * The plugin chain of a route: `onRequest` hooks in priority order (higher
 * first), the target, then `onResponse` hooks in the reverse order. A hook may
 * change the request, answer instead of the target (then only the plugins
 * before it see that answer in `onResponse`), or change the response.
 * A hook that throws answers 500, one past its deadline 504, and a plugin
 * that is not loaded 503 (`plugin_disabled` when it is disabled); each with the request id and without disturbing
 * other routes.
 *
 * @module
 */

import { errorResponse, GatewayError } from "../errors.ts";
import { withoutConnectionNamed } from "../upstreams/hop_by_hop.ts";
import type { GatewayContext, Stage } from "../pipeline/stage.ts";
import { bufferedBody, streamOf } from "../pipeline/buffered_body.ts";
import type { PluginHost, PluginSlot } from "./host.ts";
import type { BodyData, HookResult, RequestData } from "./messages.ts";
import { PluginError } from "./sandbox.ts";

const encoder = new TextEncoder();

/**
 * Headers as a plain record for a plugin. Repeated headers arrive combined
 * (`a, b`) except `set-cookie`, whose values cannot be combined that way:
 * they are joined with newlines, which no header value contains.
 */
function headerRecord(headers: Headers): Record<string, string> {
  const record = Object.fromEntries(headers);
  const cookies = headers.getSetCookie();
  if (cookies.length > 1) record["set-cookie"] = cookies.join("\n");
  return record;
}

/** The reverse of {@link headerRecord}. */
function headersOf(record: Record<string, string>): Headers {
  const headers = new Headers();
  for (const [name, value] of Object.entries(record)) {
    if (name.toLowerCase() === "set-cookie") {
      for (const cookie of String(value).split("\n")) headers.append(name, cookie);
    } else {
      headers.set(name, value);
    }
  }
  return headers;
}

function requestData(c: GatewayContext, request: Request): RequestData {
  const url = new URL(request.url);
  return {
    method: request.method,
    url: request.url,
    path: url.pathname,
    headers: headerRecord(request.headers),
    params: c.req.param() as Record<string, string>,
    query: Object.fromEntries(url.searchParams),
    clientIp: c.env.clientIp,
    requestId: c.env.requestId,
    route: c.env.route,
  };
}

/** A body from a hook as bytes, and the content type it implies when none is set. */
function bodyBytes(body: BodyData): { bytes: Uint8Array; type: string } {
  if (body instanceof Uint8Array) return { bytes: body, type: "application/octet-stream" };
  if (typeof body === "string") {
    return { bytes: encoder.encode(body), type: "text/plain; charset=utf-8" };
  }
  return { bytes: encoder.encode(JSON.stringify(body)), type: "application/json" };
}

function withBody(
  headers: Headers,
  body: BodyData | undefined,
): Uint8Array<ArrayBuffer> | null {
  if (body === undefined) return null;
  const { bytes, type } = bodyBytes(body);
  if (!headers.has("content-type")) headers.set("content-type", type);
  headers.delete("content-length");
  return bytes as Uint8Array<ArrayBuffer>;
}

/** Reads a response's body once, leaving a replayable copy. */
function bodyReader(read: () => Promise<ArrayBuffer>): () => Promise<Uint8Array> {
  let bytes: Promise<Uint8Array> | undefined;
  return () => bytes ??= read().then((buffer) => new Uint8Array(buffer));
}

/**
 * A hook's failure as the client sees it: which plugin, and whether it threw,
 * ran late or is restarting. What it threw and where (file and line) is the
 * detail, for the log and the admin API.
 */
function hookFailure(error: unknown, plugin: string): GatewayError {
  const kind = error instanceof PluginError ? error.kind : "threw";
  const [status, code, what] = kind === "timeout"
    ? [504, "plugin_timeout", "did not answer in time"]
    : kind === "gone"
    ? [503, "plugin_unavailable", "is restarting"]
    : [500, "plugin_error", "failed"];
  return new GatewayError(status, code, `plugin "${plugin}" ${what}`, {
    cause: error,
    detail: error instanceof PluginError ? { plugin, ...error.info } : { plugin },
  });
}

/**
 * Creates the stage that runs a route's plugins: `names(listener)` lists them
 * for the listener a request came in on (global, the listener's, the
 * route's). Plugins are looked up on each request, so a reloaded version
 * serves the next request without rebuilding the route.
 *
 * @example
 * ```ts
 * import { createPluginStage } from "./stage.ts";
 * // const stage = createPluginStage(host, () => ["request-id", "api-key"]);
 * ```
 */
export function createPluginStage(
  host: PluginHost,
  names: (listener: string) => readonly string[],
): Stage {
  return async (c, next) => {
    const slots: PluginSlot[] = [];
    for (const name of names(c.env.route.listener)) {
      const slot = host.slot(name);
      if (slot?.disabled) {
        return errorResponse(
          new GatewayError(503, "plugin_disabled", `plugin "${name}" is disabled`),
          c.env.requestId,
        );
      }
      if (!slot?.active) {
        const why = slot?.lastError ? `: ${slot.lastError.message}` : "";
        return errorResponse(
          new GatewayError(503, "plugin_unavailable", `plugin "${name}" is not loaded${why}`),
          c.env.requestId,
        );
      }
      slots.push(slot);
    }
    slots.sort((a, b) => (b.active!.info!.priority) - (a.active!.info!.priority));
    const deadline = () => Date.now() + host.config.hookTimeout;
    // A client may not name, in its Connection header, a header a plugin adds.
    c.req.raw = withoutConnectionNamed(c.req.raw);
    let request = requestData(c, c.req.raw);
    const ran: PluginSlot[] = [];
    const states = new Map<PluginSlot, unknown>();
    // The request body, read whole (held to the route's limit and budget) when a hook asks,
    // once for every hook and the target.
    const whole = bufferedBody(c);
    let response: Response | undefined;
    for (const slot of slots) {
      if (!slot.active?.info?.hooks.onRequest) {
        ran.push(slot);
        continue;
      }
      const raw = c.req.raw;
      // A body over its limit or budget answers as such (413, 503), not as the hook's failure.
      let bodyFailure: unknown;
      const body = () =>
        whole.read(raw).catch((error) => {
          bodyFailure = error;
          throw error;
        });
      let result: HookResult;
      try {
        result = await host.run(
          slot,
          "request",
          (sandbox) => sandbox.onRequest(request, deadline(), body),
        );
      } catch (error) {
        return errorResponse(bodyFailure ?? hookFailure(error, slot.name), c.env.requestId);
      }
      if (result.respond) {
        const headers = headersOf(result.respond.headers ?? {});
        response = new Response(withBody(headers, result.respond.body), {
          status: result.respond.status,
          headers,
        });
        break;
      }
      ran.push(slot);
      if (result.state !== undefined) states.set(slot, result.state);
      if (result.method || result.url || result.headers || result.body !== undefined) {
        const headers = result.headers ? headersOf(result.headers) : new Headers(raw.headers);
        let replaced: ReadableStream<Uint8Array> | null;
        if (result.body !== undefined) {
          const bytes = withBody(headers, result.body)!;
          whole.replace(bytes);
          replaced = streamOf(bytes);
        } else {
          replaced = raw.bodyUsed ? streamOf(await body()) : raw.body;
        }
        const method = result.method ?? raw.method;
        c.req.raw = new Request(new URL(result.url ?? raw.url, raw.url), {
          method,
          headers,
          body: method === "GET" || method === "HEAD" ? null : replaced,
          signal: raw.signal,
        });
        request = requestData(c, c.req.raw);
      } else if (raw.bodyUsed) {
        c.req.raw = new Request(raw, { body: streamOf(await body()) });
      }
    }
    response ??= await next();
    for (const slot of ran.toReversed()) {
      if (!slot.active?.info?.hooks.onResponse) continue;
      const current: Response = response;
      const body = bodyReader(() => current.arrayBuffer());
      let result: HookResult;
      try {
        result = await host.run(slot, "response", (sandbox) =>
          sandbox.onResponse(
            request,
            {
              status: current.status,
              headers: headerRecord(current.headers),
              state: states.get(slot),
            },
            deadline(),
            body,
          ));
      } catch (error) {
        return errorResponse(hookFailure(error, slot.name), c.env.requestId);
      }
      if (result.status === undefined && !result.headers && result.body === undefined) {
        if (current.bodyUsed) {
          response = new Response(await body() as Uint8Array<ArrayBuffer>, current);
        }
        continue;
      }
      const headers = result.headers ? headersOf(result.headers) : new Headers(current.headers);
      const replaced = result.body === undefined
        ? (current.bodyUsed ? await body() as Uint8Array<ArrayBuffer> : current.body)
        : withBody(headers, result.body);
      response = new Response(replaced, { status: result.status ?? current.status, headers });
    }
    return response;
  };
}
