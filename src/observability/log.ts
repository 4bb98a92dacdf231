/**
 * Logging through `@logtape/logtape`: JSON lines for machines, readable text
 * on a terminal, written to stderr without blocking request handling.
 *
 * @module
 */

import { configure, dispose, getStreamSink } from "@logtape/logtape";
import { jsonFormatter, textFormatter } from "./log_format.ts";

import type { LogConfig } from "./config.ts";

let applied: string | undefined;

/**
 * Applies the `log` section. Cheap to call on every reload: nothing happens
 * when the section did not change.
 *
 * @example
 * ```ts
 * import { configureLogging } from "./log.ts";
 * await configureLogging({ level: "info", format: "auto" });
 * ```
 */
export async function configureLogging(
  config: Pick<LogConfig, "level" | "format">,
): Promise<void> {
  const key = JSON.stringify([config.level, config.format]);
  if (key === applied) return;
  // The old sink holds stderr's writer lock until it is disposed of.
  if (applied !== undefined) await dispose();
  applied = key;
  const json = logsAsJson(config.format);
  const color = Deno.stderr.isTerminal() && !Deno.noColor;
  const formatter = json ? jsonFormatter : textFormatter(color);
  await configure({
    reset: true,
    sinks: {
      stderr: getStreamSink(Deno.stderr.writable, {
        formatter,
        nonBlocking: { bufferSize: 256, flushInterval: 50 },
        closeStream: false,
      }),
    },
    loggers: [
      { category: ["gateway"], lowestLevel: config.level, sinks: ["stderr"] },
      { category: ["logtape", "meta"], lowestLevel: "warning", sinks: ["stderr"] },
    ],
  });
}

/**
 * Whether `format` writes JSON lines: `json`, or `auto` when stderr is not a
 * terminal.
 *
 * @example
 * ```ts
 * import { logsAsJson } from "./log.ts";
 * logsAsJson("text"); // false
 * ```
 */
export function logsAsJson(format: LogConfig["format"]): boolean {
  return format === "json" || (format === "auto" && !Deno.stderr.isTerminal());
}

/**
 * Writes out buffered log records; call before the process exits.
 *
 * @example
 * ```ts
 * import { flushLogs } from "./log.ts";
 * await flushLogs();
 * ```
 */
export async function flushLogs(): Promise<void> {
  await dispose();
  applied = undefined;
}
