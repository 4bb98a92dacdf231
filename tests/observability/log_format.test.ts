/**
 * Golden lines of both log formats (issue 19): text with values inline and
 * unquoted and the other fields as `key=value`; JSON with a plain message.
 */

import type { LogRecord } from "@logtape/logtape";
import { assertEquals } from "../helpers/assert.ts";
import { jsonFormatter, renderMessage, textFormatter } from "../../src/observability/log_format.ts";

const SERVING: LogRecord = {
  category: ["gateway", "listener"],
  level: "info",
  timestamp: Date.UTC(2026, 11, 4, 20, 50, 1, 123),
  rawMessage: "{listener} serving on {address}",
  message: ["", 'listener "web"', " serving on ", "http://127.0.0.1:8080/", ""],
  properties: { listener: 'listener "web"', address: "http://127.0.0.1:8080/", tls: false },
};

const PLUGIN: LogRecord = {
  category: ["gateway", "plugin", "fan"],
  level: "warning",
  timestamp: Date.UTC(2026, 11, 4, 20, 50, 2, 5),
  rawMessage: "fan command",
  message: ["fan command"],
  properties: { speed: 2, room: "lab 1", tags: ["a", "b"], error: new TypeError("bad speed") },
};

Deno.test("text lines: time, level, logger, the message with values unquoted, then the fields", () => {
  assertEquals(
    textFormatter(false)(SERVING),
    '2026-12-04 20:50:01.123 INFO  gateway.listener listener "web" serving on http://127.0.0.1:8080/ tls=false\n',
  );
  assertEquals(
    textFormatter(false)(PLUGIN),
    '2026-12-04 20:50:02.005 WARN  gateway.plugin.fan fan command speed=2 room="lab 1" tags="[\\"a\\",\\"b\\"]" error="bad speed"\n',
  );
  const colored = "\x1b[2m2026-12-04 20:50:01.123\x1b[0m \x1b[32mINFO \x1b[0m";
  assertEquals(textFormatter(true)(SERVING).slice(0, colored.length), colored);
});

Deno.test("JSON lines: a plain message, every field under properties, errors with their message", () => {
  assertEquals(
    jsonFormatter(SERVING),
    JSON.stringify({
      "@timestamp": "2026-12-04T20:50:01.123Z",
      level: "INFO",
      message: 'listener "web" serving on http://127.0.0.1:8080/',
      logger: "gateway.listener",
      properties: SERVING.properties,
    }) + "\n",
  );
  const plugin = JSON.parse(jsonFormatter(PLUGIN));
  assertEquals(plugin.level, "WARN");
  assertEquals(plugin.properties.error.message, "bad speed");
  assertEquals(plugin.properties.tags, ["a", "b"]);
});

Deno.test("a message shows errors by their message and objects as JSON", () => {
  const record: LogRecord = {
    ...SERVING,
    rawMessage: "not watching {dir}: {error}",
    message: ["not watching ", "/srv/plugins", ": ", new Deno.errors.NotFound("no such dir"), ""],
  };
  assertEquals(renderMessage(record), "not watching /srv/plugins: no such dir");
  assertEquals(
    renderMessage({ ...record, message: ["limits ", { max: 3 }, ""] }),
    'limits {"max":3}',
  );
});
