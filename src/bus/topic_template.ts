/**
 * Topic templates from the config, such as `tcp/{listener}/{connectionId}` or
 * `device/{id}/send`: compiled once, rendered per message.
 *
 * @module
 */

import { z } from "zod";
import { didYouMean } from "../config/suggest.ts";
import { topicError } from "./topic.ts";

const PLACEHOLDER = /\{([A-Za-z_][A-Za-z0-9_]*)\}/;

/** Values for a template's placeholders; a missing one renders as `-`. */
export type TemplateValues = Record<string, string | undefined>;

/**
 * Compiles a topic template. A placeholder's value cannot add levels or
 * wildcards: `/`, `+`, `#` and NUL in it become `_`. Throws when the template
 * cannot make a valid topic.
 *
 * @example
 * ```ts
 * import { compileTopicTemplate } from "./topic_template.ts";
 * const topic = compileTopicTemplate("device/{id}/send");
 * topic({ id: "plc-1" }); // "device/plc-1/send"
 * topic({ id: "a/b" }); // "device/a_b/send"
 * ```
 */
export function compileTopicTemplate(template: string): (values: TemplateValues) => string {
  // Literal text at even indexes, placeholder names at odd ones.
  const parts = template.split(new RegExp(PLACEHOLDER, "g"));
  const problem = topicError(parts.map((part, i) => i % 2 ? "-" : part).join(""));
  if (problem) throw new Error(`topic template "${template}": ${problem}`);
  if (parts.length === 1) return () => template;
  return (values) => {
    let topic = parts[0];
    for (let i = 1; i < parts.length; i += 2) {
      const value = values[parts[i]];
      topic += (value === undefined || value === "" ? "-" : value.replace(/[/+#\0]/g, "_")) +
        parts[i + 1];
    }
    return topic;
  };
}

/**
 * The problem with a template's first placeholder that is not one of
 * `placeholders` (a typo would publish `-` in its place): it, the ones there
 * are and the closest of them. Undefined when every placeholder is known.
 *
 * @example
 * ```ts
 * import { placeholderProblem } from "./topic_template.ts";
 * placeholderProblem("devices/{deviceID}/up", ["listener", "deviceId"]);
 * // "unknown placeholder {deviceID} (did you mean {deviceId}?); the placeholders are {listener}, {deviceId}"
 * placeholderProblem("devices/{id}/up", ["id"]); // undefined
 * ```
 */
export function placeholderProblem(
  template: string,
  placeholders: readonly string[],
): string | undefined {
  const parts = template.split(new RegExp(PLACEHOLDER, "g"));
  const unknown = parts.find((part, i) => i % 2 === 1 && !placeholders.includes(part));
  if (unknown === undefined) return undefined;
  const braced = placeholders.map((name) => `{${name}}`);
  return `unknown placeholder {${unknown}}${didYouMean(`{${unknown}}`, braced, (s) => s)}; ` +
    (braced.length ? `the placeholders are ${braced.join(", ")}` : "there are none here");
}

/**
 * A topic template in a config, compiled while validating so that a bad one
 * is reported with its JSON path; with `placeholders`, any other placeholder
 * is a problem too. Without, the section that knows them checks them
 * ({@link placeholderProblem}), as a route does with its path params.
 *
 * @example
 * ```ts
 * import { topicTemplate } from "./topic_template.ts";
 * topicTemplate(["id"]).safeParse("device/{id}/send").success; // true
 * topicTemplate(["id"]).safeParse("device/{ID}/send").success; // false
 * topicTemplate().safeParse("tcp/#/x").success; // false
 * ```
 */
export function topicTemplate(placeholders?: readonly string[]): z.ZodString {
  return z.string().min(1).superRefine((template, ctx) => {
    try {
      compileTopicTemplate(template);
    } catch (error) {
      ctx.addIssue({ code: "custom", message: (error as Error).message });
      return;
    }
    const problem = placeholders && placeholderProblem(template, placeholders);
    if (problem) ctx.addIssue({ code: "custom", message: problem });
  });
}

/** The placeholders of a connection's topic: what every listener and connection fills in. */
export const CONNECTION_PLACEHOLDERS = [
  "listener",
  "connectionId",
  "deviceId",
  "remoteAddress",
] as const;

/**
 * The topic template of a connection's messages (a TCP, UDP or Unix
 * listener's): placeholders `{listener}`, `{connectionId}`, `{deviceId}`,
 * `{remoteAddress}`.
 *
 * @example
 * ```ts
 * import { TopicTemplate } from "./topic_template.ts";
 * TopicTemplate.safeParse("tcp/{listener}/{connectionId}").success; // true
 * TopicTemplate.safeParse("devices/{deviceID}/up").success; // false: {deviceId}
 * TopicTemplate.safeParse("tcp/#/x").success; // false
 * ```
 */
export const TopicTemplate = topicTemplate(CONNECTION_PLACEHOLDERS);
