/**
 * Traversal on a `static` target (the hardening issue's "Tests and checks"):
 * dot segments, their percent-encodings, encoded slashes, backslashes and
 * symbolic links never serve a file outside the root; each is a 400 or a 404.
 * Raw HTTP/1.1 over `Deno.connect`, because `fetch` normalises the path before
 * sending it; through the real gateway process.
 */

import { join } from "node:path";
import { assert, assertEquals } from "../helpers/assert.ts";
import { startGateway } from "../helpers/gateway.ts";
import { rawGet } from "../helpers/raw_http.ts";

const SECRET = "secret outside the root";

const TRAVERSALS = [
  "/../secret.txt",
  "/sub/../../secret.txt",
  "/%2e%2e/secret.txt",
  "/%2E%2E/secret.txt",
  "/.%2e/secret.txt",
  "/sub/%2e%2e/%2e%2e/secret.txt",
  "/..%2fsecret.txt",
  "/%2e%2e%2fsecret.txt",
  "/sub%2f..%2f..%2fsecret.txt",
  "/..\\secret.txt",
  "/..%5csecret.txt",
  "/sub\\..\\..\\secret.txt",
  "/%252e%252e/secret.txt",
  "//secret.txt",
  "/%00/../secret.txt",
  "/escape-file",
  "/escape-dir/secret.txt",
  `http://127.0.0.1/../secret.txt`,
];

Deno.test("no traversal serves a file outside a static root: 400 or 404", async () => {
  await using gw = await startGateway({
    listeners: { web: { type: "http", host: "127.0.0.1", port: 0 } },
    routes: [{ match: { path: "/*" }, target: { static: { root: "public" } } }],
  }, {
    files: {
      "public/inside.txt": "public file",
      "public/sub/nested.txt": "nested file",
      "secret.txt": SECRET,
      "outside/secret.txt": SECRET,
    },
  });
  // Links from inside the root to a file and a directory outside it.
  await Deno.symlink(join(gw.dir, "secret.txt"), join(gw.dir, "public", "escape-file"));
  await Deno.symlink(join(gw.dir, "outside"), join(gw.dir, "public", "escape-dir"));
  const port = await gw.port("web");

  const inside = await rawGet(port, "/inside.txt");
  assertEquals([inside.status, inside.body], [200, "public file"]);
  assertEquals((await rawGet(port, "/sub/nested.txt")).body, "nested file");
  for (const target of TRAVERSALS) {
    const { status, body } = await rawGet(port, target);
    assert(status === 400 || status === 404, `${target}: ${status} ${body}`);
    assert(!body.includes(SECRET), `${target} served the secret`);
  }
});
