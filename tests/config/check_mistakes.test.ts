/**
 * The mistakes `gateway check` catches, each with its exact message and
 * `file:line:column`: unknown topic placeholders, functions, plugins and
 * workers nothing provides, settings and grants for plugins that do not
 * exist, misspelled keys, names and values with a suggestion, and zod's
 * wording replaced by plain language.
 */

import { join } from "node:path";
import { assertEquals } from "../helpers/assert.ts";
import { ConfigError } from "../../src/config/load.ts";
import { checkGatewayConfig, loadGatewayConfig } from "../../src/sections.ts";

const READINGS = `export default {
  name: "readings",
  functions: { stats: () => ({}), latest: () => ({}) },
};
`;

/** Writes `files` into a fresh directory and returns the problems `load` finds in its config.json. */
async function problems(
  files: Record<string, string>,
  load = checkGatewayConfig,
): Promise<string[]> {
  const dir = await Deno.makeTempDir({ prefix: "check-mistakes-" });
  try {
    for (const [name, text] of Object.entries(files)) {
      await Deno.mkdir(join(dir, name, ".."), { recursive: true });
      await Deno.writeTextFile(join(dir, name), text);
    }
    await load(join(dir, "config.json"), () => undefined);
    return [];
  } catch (error) {
    if (!(error instanceof ConfigError)) throw error;
    return error.problems.map((problem) => problem.replaceAll(`${dir}/`, ""));
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

Deno.test("check: an unknown topic placeholder is named with the ones there are and the closest", async () => {
  const config = `{
  "listeners": {
    "plc": { "type": "tcp", "port": 0, "topic": "devices/{deviceID}/up" }
  },
  "routes": [
    {
      "match": { "path": "/push/:id" },
      "target": { "topic": { "topic": "device/{ID}/send" } }
    },
    {
      "match": { "path": "/ws/:site" },
      "target": { "websocket": { "topic": "ws/{sit}/{connectionId}" } }
    },
    { "match": { "path": "/all" }, "target": { "topic": { "topic": "all/{id}" } } },
    { "match": { "path": "/ok/:id" }, "target": { "topic": { "topic": "ok/{id}" } } }
  ]
}
`;
  const expected = [
    "config.json:3:40: listeners.plc.topic: unknown placeholder {deviceID} (did you mean " +
    "{deviceId}?); the placeholders are {listener}, {connectionId}, {deviceId}, {remoteAddress}",
    "config.json:8:30: routes[0].target.topic.topic: unknown placeholder {ID} (did you mean " +
    "{id}?); the placeholders are {id}",
    "config.json:12:34: routes[1].target.websocket.topic: unknown placeholder {sit} (did you " +
    "mean {site}?); the placeholders are {route}, {listener}, {connectionId}, {deviceId}, " +
    "{remoteAddress}, {site}",
    "config.json:14:59: routes[2].target.topic.topic: unknown placeholder {id}; there are none here",
  ];
  assertEquals(await problems({ "config.json": config }), expected);
  assertEquals(
    await problems({ "config.json": config }, loadGatewayConfig),
    expected,
    "serving refuses them too: the document says it all",
  );
});

Deno.test("check: a function that no plugin, worker or model provides is named with the closest", async () => {
  const config = `{
  "routes": [
    { "match": { "path": "/a" }, "target": { "function": { "name": "plugin:reading.stats" } } },
    { "match": { "path": "/b" }, "target": { "function": { "name": "readings.stat" } } },
    { "match": { "path": "/c" }, "target": { "function": { "name": "reading.stats" } } },
    { "match": { "path": "/d" }, "target": { "function": { "name": "worker:order.create" } } },
    { "match": { "path": "/e" }, "target": { "function": { "name": "model:ad" } } },
    { "match": { "path": "/f" }, "target": { "function": { "name": "readings.latest" } } },
    { "match": { "path": "/g" }, "target": { "function": { "name": "orders.create" } } },
    { "match": { "path": "/h" }, "target": { "function": { "name": "model:add" } } }
  ],
  "workers": [{ "name": "orders", "command": ["/bin/sh"] }],
  "models": [{ "name": "add", "path": "add.onnx" }]
}
`;
  const files = { "config.json": config, "plugins/readings.ts": READINGS };
  assertEquals(await problems(files), [
    'config.json:3:60: routes[0].target.function.name: unknown plugin "reading" (did you mean ' +
    '"readings"?)',
    'config.json:4:60: routes[1].target.function.name: plugin "readings" has no function "stat" ' +
    '(did you mean "stats"?); its functions are stats, latest',
    'config.json:5:60: routes[2].target.function.name: no plugin or worker is called "reading" ' +
    '(did you mean "readings"?)',
    'config.json:6:60: routes[3].target.function.name: unknown worker "order" (did you mean ' +
    '"orders"?)',
    'config.json:7:60: routes[4].target.function.name: unknown model "ad" (did you mean "add"?)',
  ]);
  assertEquals(
    await problems(files, loadGatewayConfig),
    [],
    "serving does not look: functions are served by whatever runs, and answer 503 until then",
  );
});

Deno.test("check: plugins used, granted or given settings must be in the plugins directory", async () => {
  const config = `{
  "listeners": { "web": { "type": "http", "port": 0, "plugins": ["readngs"] } },
  "routes": [{ "plugins": ["readings", "stamp"], "target": { "respond": {} } }],
  "plugins": {
    "global": ["reading"],
    "grants": { "stamp": { "net": true } },
    "settings": { "readings": {}, "Readings": { "a": 1 } }
  }
}
`;
  const files = { "config.json": config, "plugins/readings.ts": READINGS };
  assertEquals(await problems(files), [
    'config.json:2:66: listeners.web.plugins[0]: unknown plugin "readngs" (did you mean ' +
    '"readings"?)',
    'config.json:3:40: routes[0].plugins[1]: unknown plugin "stamp"',
    'config.json:5:16: plugins.global[0]: unknown plugin "reading" (did you mean "readings"?)',
    'config.json:6:17: plugins.grants.stamp: unknown plugin "stamp"',
    'config.json:7:35: plugins.settings.Readings: unknown plugin "Readings" (did you mean ' +
    '"readings"?)',
  ]);
  assertEquals(
    await problems(files, loadGatewayConfig),
    [],
    "serving warns, as plugins come and go",
  );
});

Deno.test("check: a plugin that does not load is a problem, and its functions are not guessed at", async () => {
  const config = `{
  "routes": [{ "target": { "function": { "name": "broken.anything" } } }]
}
`;
  const broken = `export default { name: "other" };\n`;
  assertEquals(await problems({ "config.json": config, "plugins/broken.ts": broken }), [
    `config.json:1:1: plugins.dir: plugin "broken" does not load: the plugin's name is "other", ` +
    `but its file says "broken"`,
  ]);
});

Deno.test("check: misspelled keys, names and values come with a suggestion", async () => {
  const config = `{
  "listeners": {
    "web": { "type": "http", "port": 8080 },
    "raw": { "type": "tcp", "port": 9000, "framing": { "type": "lenght" } }
  },
  "admin": { "prot": 9901 },
  "upstreams": { "api": { "targets": ["http://127.0.0.1:9000"] } },
  "routes": [{ "listeners": ["webb"], "target": { "upstream": "apii" } }],
  "log": { "level": "warn" },
  "rotues": []
}
`;
  assertEquals(await problems({ "config.json": config }), [
    'config.json:10:3: rotues: unknown key (did you mean "routes"?)',
    "config.json:4:56: listeners.raw.framing.type: must be one of line, length, delimiter, " +
    'fixed, raw (did you mean "length"?)',
    'config.json:6:14: admin.prot: unknown key (did you mean "port"?)',
    "config.json:9:12: log.level: must be one of debug, info, warning, error",
    'config.json:8:30: routes[0].listeners[0]: unknown listener "webb" (did you mean "web"?)',
    'config.json:8:51: routes[0].target.upstream: unknown upstream "apii" (did you mean "api"?)',
  ]);
});

Deno.test("check: zod's wording becomes plain language", async () => {
  const config = `{
  "listeners": {
    "a": { "type": "http", "port": "8080" },
    "b": { "type": "http", "port": 80.5 },
    "c": { "type": "http", "port": 70000 },
    "d": { "type": "http" },
    "e": { "host": "127.0.0.1", "port": 1 }
  },
  "workers": [{ "name": "w", "command": [] }],
  "routes": [{ "match": { "path": "x" }, "target": { "respond": { "body": 5 } } }]
}
`;
  assertEquals(await problems({ "config.json": config }), [
    "config.json:3:28: listeners.a.port: must be a number, not a string",
    "config.json:4:28: listeners.b.port: must be a whole number, not 80.5",
    "config.json:5:28: listeners.c.port: must be at most 65535",
    "config.json:6:5: listeners.d.port: is required (a number)",
    "config.json:7:5: listeners.e.type: is required (one of http, tcp, udp, unix)",
    'config.json:10:27: routes[0].match.path: must start with "/"',
    "config.json:10:67: routes[0].target.respond.body: must be a string, an object or an " +
    "array, not a number",
    "config.json:9:30: workers[0].command: must not be empty",
  ]);
});

Deno.test("check: a problem in an included file names that file, line and column", async () => {
  const config = `{
  "routes": { "$include": "routes.json" },
  "plugins": { "$include": "missing.json" }
}
`;
  const routes = `[
  { "match": { "path": "/a" }, "target": { "upstream": "api" } }
]
`;
  assertEquals(await problems({ "config.json": config, "routes.json": routes }), [
    "config.json:3:16: plugins.$include: cannot read missing.json: file not found",
  ]);
  assertEquals(
    await problems({
      "config.json": config.replace(',\n  "plugins": { "$include": "missing.json" }', ""),
      "routes.json": routes,
    }),
    ['routes.json:2:44: routes[0].target.upstream: unknown upstream "api"'],
  );
});
