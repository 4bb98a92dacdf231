/**
 * A link put into a loaded plugin's directory through the real gateway
 * process: the running version cannot read through it. Deno checks a read
 * permission against the path as given, not where a link there leads, so the
 * plugin is granted its own files by path, never its directory.
 */

import { join } from "node:path";
import { assertEquals, assertStringIncludes } from "../helpers/assert.ts";
import { freePort, type GatewayProcess, startGateway } from "../helpers/gateway.ts";
import { until } from "../helpers/wait.ts";

/** Answers with the text of `?file=` (beside its mod.ts), or the name of the error reading it. */
const READER = `export default {
  name: "reader",
  async onRequest(req) {
    const file = new URL(req.query.file, import.meta.url);
    try {
      return { status: 200, body: await Deno.readTextFile(file) };
    } catch (error) {
      return { status: 200, body: error.name };
    }
  },
};
`;

async function startReader(): Promise<
  { gw: GatewayProcess; read: (file: string) => Promise<string> }
> {
  const port = freePort();
  const gw = await startGateway({
    listeners: { web: { type: "http", port } },
    routes: [{ match: { path: "/*" }, plugins: ["reader"], target: { respond: { body: "no" } } }],
  }, {
    files: {
      "plugins/reader/mod.ts": READER,
      "plugins/reader/own.txt": "own text",
      "secret.txt": "the secret outside the plugin",
    },
  });
  const read = async (file: string) => {
    const res = await fetch(`http://127.0.0.1:${port}/?file=${encodeURIComponent(file)}`);
    return `${res.status} ${await res.text()}`;
  };
  return { gw, read };
}

Deno.test("plugin symlink: a link added after load is not read through; its own file still is", async () => {
  const { gw, read } = await startReader();
  await using _ = gw;
  assertEquals(await read("own.txt"), "200 own text");
  const dir = join(gw.dir, "plugins", "reader");
  await Deno.symlink(join(gw.dir, "secret.txt"), join(dir, "secret-link.txt"));
  await Deno.symlink("/etc/passwd", join(dir, "passwd"));
  assertEquals(await read("secret-link.txt"), "200 NotCapable");
  assertEquals(await read("passwd"), "200 NotCapable");
  assertEquals(await read("own.txt"), "200 own text");
});

Deno.test("plugin symlink: its own file replaced by a link out of its directory ends the running version", async () => {
  const { gw, read } = await startReader();
  await using _ = gw;
  assertEquals(await read("own.txt"), "200 own text");
  const own = join(gw.dir, "plugins", "reader", "own.txt");
  await Deno.remove(own);
  await Deno.symlink(join(gw.dir, "secret.txt"), own);
  await until("the watcher to see the link", async () => {
    const list = await (await gw.admin("/plugins")).json() as Record<string, unknown>[];
    const reader = list.find((plugin) => plugin.name === "reader");
    return String((reader?.lastError as { message?: string } | null)?.message).includes("outside");
  });
  const after = await read("own.txt");
  assertStringIncludes(after, "503");
});
