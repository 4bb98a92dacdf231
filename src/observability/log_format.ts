/**
 * The two shapes of a log line: readable text for a person at a terminal
 * (time, level, logger, the message with its values inline, then the other
 * fields as `key=value`) and JSON lines for machines (a plain `message` and
 * the fields as JSON).
 *
 * @module
 */

import type { LogRecord } from "@logtape/logtape";

const LEVEL_NAMES: Record<LogRecord["level"], string> = {
  trace: "TRACE",
  debug: "DEBUG",
  info: "INFO",
  warning: "WARN",
  error: "ERROR",
  fatal: "FATAL",
};

/** ANSI colour of each level's name in text lines. */
const LEVEL_COLORS: Record<LogRecord["level"], string> = {
  trace: "\x1b[90m",
  debug: "\x1b[90m",
  info: "\x1b[32m",
  warning: "\x1b[33m",
  error: "\x1b[31m",
  fatal: "\x1b[1;31m",
};
const DIM = "\x1b[2m";
const RESET = "\x1b[0m";

/** A value as the message shows it: strings bare, errors by their message, the rest as JSON. */
function inline(value: unknown): string {
  if (typeof value === "string") return value;
  if (value instanceof Error) return value.message || value.name;
  if (value === undefined) return "undefined";
  if (typeof value === "bigint") return value.toString();
  try {
    return JSON.stringify(value) ?? String(value);
  } catch { // cyclic
    return Deno.inspect(value, { compact: true, breakLength: Infinity });
  }
}

/** The names of the `{placeholders}` of a record's message template. */
function placeholders(record: LogRecord): Set<string> {
  const template = typeof record.rawMessage === "string" ? record.rawMessage : "";
  return new Set(Array.from(template.matchAll(/\{([^{}\s]+)\}/g), (match) => match[1]));
}

/** A field value that JSON can carry: errors become their name, message and stack. */
function jsonValue(value: unknown): unknown {
  if (value instanceof Error) {
    return { name: value.name, message: value.message, stack: value.stack };
  }
  if (typeof value === "bigint") return value.toString();
  return value;
}

/**
 * The record's message with its values inline (strings unquoted).
 *
 * @example
 * ```ts
 * import { renderMessage } from "./log_format.ts";
 * const line = renderMessage({
 *   category: ["gateway"], level: "info", timestamp: 0, properties: {},
 *   rawMessage: "{listener} serving", message: ["", 'listener "web"', " serving"],
 * });
 * console.log(line); // listener "web" serving
 * ```
 */
export function renderMessage(record: LogRecord): string {
  let text = "";
  for (let i = 0; i < record.message.length; i++) {
    text += i % 2 === 0 ? record.message[i] as string : inline(record.message[i]);
  }
  return text;
}

/**
 * Formats records as text lines: `2026-12-04 20:50:01.123 INFO  gateway.listener
 * message key=value …`, the level coloured when `color` is set. Fields named
 * in the message template are not repeated; string values with spaces,
 * quotes or `=` are JSON-quoted so the line stays parseable.
 *
 * @example
 * ```ts
 * import { textFormatter } from "./log_format.ts";
 * const format = textFormatter(false);
 * const line = format({
 *   category: ["gateway", "plugins"], level: "info", timestamp: 0,
 *   rawMessage: "fan command", message: ["fan command"], properties: { fan: 2, room: "lab 1" },
 * });
 * console.log(line); // 1970-01-01 00:00:00.000 INFO  gateway.plugins fan command fan=2 room="lab 1"
 * ```
 */
export function textFormatter(color: boolean): (record: LogRecord) => string {
  return (record) => {
    const time = new Date(record.timestamp).toISOString().replace("T", " ").slice(0, 23);
    const level = LEVEL_NAMES[record.level].padEnd(5);
    const logger = record.category.join(".");
    let line = color
      ? `${DIM}${time}${RESET} ${
        LEVEL_COLORS[record.level]
      }${level}${RESET} ${DIM}${logger}${RESET} `
      : `${time} ${level} ${logger} `;
    line += renderMessage(record);
    const named = placeholders(record);
    for (const [key, value] of Object.entries(record.properties)) {
      if (named.has(key) || value === undefined) continue;
      const text = inline(value);
      line += ` ${key}=${/^[^\s"=]+$/.test(text) ? text : JSON.stringify(text)}`;
    }
    return line + "\n";
  };
}

/**
 * Formats a record as one JSON line: `@timestamp`, `level`, `logger`, the
 * plain rendered `message` and every field under `properties`.
 *
 * @example
 * ```ts
 * import { jsonFormatter } from "./log_format.ts";
 * const line = jsonFormatter({
 *   category: ["gateway"], level: "warning", timestamp: 0,
 *   rawMessage: "{what} refused", message: ["", "frame", " refused"], properties: { what: "frame" },
 * });
 * console.log(JSON.parse(line).message); // frame refused
 * ```
 */
export function jsonFormatter(record: LogRecord): string {
  const properties: Record<string, unknown> = {};
  for (const [key, value] of Object.entries(record.properties)) properties[key] = jsonValue(value);
  return JSON.stringify({
    "@timestamp": new Date(record.timestamp).toISOString(),
    level: LEVEL_NAMES[record.level],
    message: renderMessage(record),
    logger: record.category.join("."),
    properties,
  }) + "\n";
}
