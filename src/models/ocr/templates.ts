/**
 * Document fields: a template names fields, each a regular expression and
 * optionally a label; the value is the first capture group (or the whole
 * match) found after the label on its line or on the line after it, or, with
 * no label, on the first line that matches. Labels match case-insensitively
 * and whatever the spacing (the recogniser may drop the space between two
 * words).
 *
 * @module
 */

import type { OcrFieldConfig } from "../config.ts";
import type { OcrLine } from "./types.ts";

function search(text: string, pattern: RegExp): string | null {
  const match = pattern.exec(text);
  return match ? (match[1] ?? match[0]).trim() : null;
}

/**
 * The template's fields picked out of the lines (null when absent).
 *
 * @example
 * ```ts
 * import { pickFields } from "./templates.ts";
 * const lines = [{ box: [[0, 0], [1, 0], [1, 1], [0, 1]], text: "Invoice No: INV-42", confidence: 1 }];
 * pickFields(lines as never, { invoice: { label: "invoice no", pattern: "([A-Z]+-\\d+)" } });
 * // { invoice: "INV-42" }
 * ```
 */
export function pickFields(
  lines: readonly OcrLine[],
  fields: Record<string, OcrFieldConfig>,
): Record<string, string | null> {
  const picked: Record<string, string | null> = {};
  for (const [name, field] of Object.entries(fields)) {
    const pattern = new RegExp(field.pattern, "iu");
    let value: string | null = null;
    if (field.label) {
      const words = field.label.trim().split(/\s+/).map((w) =>
        w.replace(/[.*+?^${}()|[\]\\]/g, "\\$&")
      );
      const label = new RegExp(words.join("\\s*"), "iu");
      for (let i = 0; i < lines.length && value === null; i++) {
        const found = label.exec(lines[i].text);
        if (!found) continue;
        value = search(lines[i].text.slice(found.index + found[0].length), pattern) ??
          (lines[i + 1] ? search(lines[i + 1].text, pattern) : null);
      }
    } else {
      for (const line of lines) {
        value = search(line.text, pattern);
        if (value !== null) break;
      }
    }
    picked[name] = value;
  }
  return picked;
}
