/**
 * The route targets of in-process inference: `model` (JSON tensors in, JSON
 * tensors out; `POST /models/:name/infer`) and `ocr` (a PNG or JPEG in, the
 * lines, text and template fields out; `POST /ocr`). Failures answer through
 * `errorResponse`, with the status the same failure has on a
 * `function: model:<name>` route: 400 for inputs that do not fit, 404 for an
 * unknown model, 413 for a too-large image, 503 for a model that failed to
 * load, 504 for a run past its time.
 *
 * @module
 */

import type { ModelTargetConfig, OcrTargetConfig } from "./config.ts";
import type { InferRequest, ModelRegistry } from "./registry.ts";
import { errorResponse, GatewayError } from "../errors.ts";
import type { GatewayContext, Target } from "../pipeline/stage.ts";
import { BodyTooLargeError, bufferedBody } from "../pipeline/buffered_body.ts";

const decoder = new TextDecoder();

/**
 * A target that runs a model on `{ "inputs": { name: { type, dims, data } } }`
 * (`"outputEncoding": "base64"` for outputs as base64 bytes).
 *
 * @example
 * ```ts
 * import { createModelTarget } from "./http.ts";
 * // routes: { match: { path: "/models/:name/infer" }, target: { model: {} } }
 * // const target = createModelTarget({}, registry);
 * ```
 */
export function createModelTarget(config: ModelTargetConfig, registry: ModelRegistry): Target {
  return async (c: GatewayContext): Promise<Response> => {
    const { requestId } = c.env;
    if (c.req.method !== "POST") {
      return errorResponse(
        new GatewayError(405, "method_not_allowed", "POST JSON tensors to run a model", {
          headers: {
            allow: "POST",
          },
        }),
        requestId,
      );
    }
    const name = config.name ?? c.req.param("name");
    if (!name) {
      return errorResponse(
        new GatewayError(500, "no_model", "the route names no model and has no :name"),
        requestId,
      );
    }
    let body: InferRequest;
    const bytes = await bufferedBody(c).read(c.req.raw);
    try {
      body = JSON.parse(decoder.decode(bytes));
    } catch (error) {
      return errorResponse(
        new GatewayError(400, "bad_json", `the body is not JSON: ${(error as Error).message}`),
        requestId,
      );
    }
    try {
      const base64 = body?.outputEncoding === "base64";
      return Response.json(await registry.infer(name, body?.inputs, base64));
    } catch (error) {
      return errorResponse(error, requestId);
    }
  };
}

/**
 * A target that reads the image in the request body. `?template=name` and
 * `?classify=true` override the target's settings.
 *
 * @example
 * ```ts
 * import { createOcrTarget } from "./http.ts";
 * // routes: { match: { path: "/ocr", methods: ["POST"] }, target: { ocr: {} } }
 * // const target = createOcrTarget({ classify: false }, registry);
 * ```
 */
export function createOcrTarget(config: OcrTargetConfig, registry: ModelRegistry): Target {
  return async (c: GatewayContext): Promise<Response> => {
    const { requestId } = c.env;
    if (c.req.method !== "POST") {
      return errorResponse(
        new GatewayError(405, "method_not_allowed", "POST a PNG or JPEG image to read it", {
          headers: {
            allow: "POST",
          },
        }),
        requestId,
      );
    }
    const limit = registry.maxImageBytes;
    const body = bufferedBody(c);
    let image: Uint8Array;
    try {
      image = await body.read(c.req.raw, Math.min(limit, body.maxBodySize));
    } catch (error) {
      if (!(error instanceof BodyTooLargeError) || error.maxBodySize !== limit) throw error;
      return errorResponse(
        new GatewayError(
          413,
          "image_too_large",
          `the image is more than ocr.maxImageBytes (${limit} bytes)`,
        ),
        requestId,
      );
    }
    if (image.length === 0) {
      return errorResponse(
        new GatewayError(400, "no_image", "the body is empty: POST a PNG or JPEG image"),
        requestId,
      );
    }
    const template = c.req.query("template") ?? config.template;
    const classify = c.req.query("classify");
    try {
      return Response.json(
        await registry.ocr(image, {
          classify: classify === undefined ? config.classify : classify === "true",
          ...(template ? { template } : {}),
        }),
      );
    } catch (error) {
      return errorResponse(error, requestId);
    }
  };
}
