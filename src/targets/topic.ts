/**
 * The topic target: an HTTP request becomes a bus message. In `publish` mode
 * the body is published and the answer is 202 with the number of
 * subscribers it reached (a way to push to devices: `device/{id}/send`); in
 * `request` mode it is sent as a request and the first reply is the response.
 * The payload is the body as read (see `bufferedBody`), not a copy of it.
 *
 * @module
 */

import type { TopicTargetConfig } from "./config.ts";
import type { Bus } from "../bus/bus.ts";
import { compileTopicTemplate } from "../bus/topic_template.ts";
import { errorResponse } from "../errors.ts";
import type { GatewayContext, Target } from "../pipeline/stage.ts";
import { bufferedBody } from "../pipeline/buffered_body.ts";

/**
 * Creates a topic target. Route params fill the template's placeholders.
 *
 * @example
 * ```ts
 * import { createTopicTarget } from "./topic.ts";
 * import { Bus } from "../bus/bus.ts";
 * const push = createTopicTarget({ topic: "device/{id}/send", mode: "publish", timeout: 5000 }, new Bus());
 * ```
 */
export function createTopicTarget(config: TopicTargetConfig, bus: Bus): Target {
  const render = compileTopicTemplate(config.topic);
  return async (c: GatewayContext): Promise<Response> => {
    const topic = render(c.req.param() as Record<string, string>);
    const payload = await bufferedBody(c).read(c.req.raw);
    const meta: Record<string, string> = { requestId: c.env.requestId };
    const contentType = c.req.header("content-type");
    if (contentType) meta.contentType = contentType;
    const source = { listener: c.env.route.listener, protocol: "http" as const };
    if (config.mode === "publish") {
      const subscribers = bus.publish({ topic, payload, source, meta });
      return Response.json({ topic, subscribers }, { status: 202 });
    }
    try {
      const reply = await bus.request(topic, payload, { source, meta, timeout: config.timeout });
      return new Response(reply.payload as Uint8Array<ArrayBuffer>, {
        headers: { "content-type": reply.meta.contentType ?? "application/octet-stream" },
      });
    } catch (error) {
      // A BusError: 504 timeout, 503 no_responder, 400 invalid_topic.
      return errorResponse(error, c.env.requestId);
    }
  };
}
