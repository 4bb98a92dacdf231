/**
 * Topic templates from the config, such as `tcp/{listener}/{connectionId}` or
 * `device/{id}/send`: compiled once, rendered per message.
 *
 * @module
 */

import { z } from "zod";
import { topicError } from "./topic.ts";

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
  const parts = template.split(/\{([A-Za-z_][A-Za-z0-9_]*)\}/);
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
 * A topic template in a config, compiled while validating so that a bad one
 * is reported with its JSON path.
 *
 * @example
 * ```ts
 * import { TopicTemplate } from "./topic_template.ts";
 * TopicTemplate.safeParse("tcp/{listener}/{connectionId}").success; // true
 * TopicTemplate.safeParse("tcp/#/x").success; // false
 * ```
 */
export const TopicTemplate = z.string().min(1).superRefine((template, ctx) => {
  try {
    compileTopicTemplate(template);
  } catch (error) {
    ctx.addIssue({ code: "custom", message: (error as Error).message });
  }
});
