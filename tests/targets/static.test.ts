import { join } from "node:path";
import { assert, assertEquals } from "../helpers/assert.ts";
import { StaticTargetConfig } from "../../src/targets/config.ts";
import { createStaticTarget } from "../../src/targets/static.ts";
import { serveTarget } from "../helpers/test_server.ts";
import { rawGet } from "../helpers/raw_http.ts";

const SECRET = "TOP SECRET";
const BIG_CONTENT = new Uint8Array(3 * 1024 * 1024 + 17).map((_, i) => (i * 31) % 251);

/** A temporary site: `root/` to serve and, beside it, `outside/secret.txt`. */
interface Site extends AsyncDisposable {
  root: string;
  outside: string;
}

async function makeSite(): Promise<Site> {
  const dir = await Deno.makeTempDir({ prefix: "static-test-" });
  const root = join(dir, "root");
  const outside = join(dir, "outside");
  await Deno.mkdir(join(root, "sub"), { recursive: true });
  await Deno.mkdir(join(root, "empty-dir"));
  await Deno.mkdir(outside);
  const files: Record<string, string> = {
    "index.html": "<h1>home</h1>",
    "style.css": "body {}",
    "app.js": "export {};",
    "app.mjs": "export {};",
    "data.json": "{}",
    "logo.svg": "<svg/>",
    "pic.png": "png",
    "mod.wasm": "wasm",
    "notes.txt": "notes",
    "blob.unknownext": "?",
    "noext": "?",
    "hello world.txt": "spaced",
    "100%.txt": "percent",
    "sub/index.html": "sub home",
    "sub/page.txt": "page",
  };
  for (const [name, text] of Object.entries(files)) {
    await Deno.writeTextFile(join(root, name), text);
  }
  await Deno.writeFile(join(root, "big.bin"), BIG_CONTENT);
  await Deno.writeTextFile(join(outside, "secret.txt"), SECRET);
  await Deno.symlink(join(root, "notes.txt"), join(root, "inside-link.txt"));
  await Deno.symlink(join(outside, "secret.txt"), join(root, "escape-file"));
  await Deno.symlink(outside, join(root, "escape-dir"));
  return { root, outside, [Symbol.asyncDispose]: () => Deno.remove(dir, { recursive: true }) };
}

function serveSite(root: string, config: Record<string, unknown> = {}) {
  return serveTarget(createStaticTarget(StaticTargetConfig.parse({ root, ...config }), root));
}

Deno.test("files are served with their content type and length", async () => {
  await using site = await makeSite();
  await using server = serveSite(site.root);
  const expected: [string, string][] = [
    ["/index.html", "text/html; charset=utf-8"],
    ["/style.css", "text/css; charset=utf-8"],
    ["/app.js", "text/javascript; charset=utf-8"],
    ["/app.mjs", "text/javascript; charset=utf-8"],
    ["/data.json", "application/json"],
    ["/logo.svg", "image/svg+xml; charset=utf-8"],
    ["/pic.png", "image/png"],
    ["/mod.wasm", "application/wasm"],
    ["/notes.txt", "text/plain; charset=utf-8"],
    ["/blob.unknownext", "application/octet-stream"],
    ["/noext", "application/octet-stream"],
  ];
  for (const [path, type] of expected) {
    const res = await fetch(server.url + path);
    const text = await res.text();
    assertEquals(res.status, 200, path);
    assertEquals(res.headers.get("content-type"), type, path);
    assertEquals(res.headers.get("content-length"), String(text.length), path);
  }
});

Deno.test("names are percent-decoded once", async () => {
  await using site = await makeSite();
  await using server = serveSite(site.root);
  const spaced = await fetch(`${server.url}/hello%20world.txt`);
  assertEquals([spaced.status, await spaced.text()], [200, "spaced"]);
  const percent = await fetch(`${server.url}/100%25.txt`);
  assertEquals([percent.status, await percent.text()], [200, "percent"]);
});

Deno.test("a large file is streamed whole", async () => {
  await using site = await makeSite();
  await using server = serveSite(site.root);
  const res = await fetch(`${server.url}/big.bin`);
  assertEquals(res.headers.get("content-length"), String(BIG_CONTENT.length));
  assertEquals(await res.bytes(), BIG_CONTENT);
});

Deno.test("HEAD sends the headers only; other methods get 405 with Allow", async () => {
  await using site = await makeSite();
  await using server = serveSite(site.root);
  const head = await fetch(`${server.url}/notes.txt`, { method: "HEAD" });
  assertEquals(head.status, 200);
  assertEquals(head.headers.get("content-length"), "5");
  assertEquals(head.headers.get("content-type"), "text/plain; charset=utf-8");
  assertEquals(await head.text(), "");
  for (const method of ["POST", "PUT", "DELETE"]) {
    const res = await fetch(`${server.url}/notes.txt`, { method });
    assertEquals(res.status, 405, method);
    assertEquals(res.headers.get("allow"), "GET, HEAD");
    assertEquals((await res.json()).error.code, "method_not_allowed");
  }
});

Deno.test("ETag and Last-Modified make conditional requests answer 304", async () => {
  await using site = await makeSite();
  await using server = serveSite(site.root);
  const url = `${server.url}/notes.txt`;
  const first = await fetch(url);
  await first.body?.cancel();
  const etag = first.headers.get("etag");
  const lastModified = first.headers.get("last-modified");
  assert(etag && /^"[0-9a-f]+-[0-9a-f]+"$/.test(etag), `etag ${etag}`);
  assert(lastModified, "last-modified");

  const conditional = async (headers: Record<string, string>) => {
    const res = await fetch(url, { headers });
    const text = await res.text();
    return res.status === 304 ? [304, text, res.headers.get("etag")] : [res.status];
  };
  assertEquals(await conditional({ "if-none-match": etag }), [304, "", etag]);
  assertEquals(await conditional({ "if-none-match": `"other", W/${etag}` }), [304, "", etag]);
  assertEquals(await conditional({ "if-none-match": "*" }), [304, "", etag]);
  assertEquals(await conditional({ "if-none-match": '"other"' }), [200]);
  assertEquals(await conditional({ "if-modified-since": lastModified }), [304, "", etag]);
  assertEquals(await conditional({ "if-modified-since": "Thu, 01 Jan 1970 00:00:00 GMT" }), [200]);
  assertEquals(await conditional({ "if-modified-since": "not a date" }), [200]);
  assertEquals(
    await conditional({ "if-none-match": '"other"', "if-modified-since": lastModified }),
    [200],
    "If-None-Match wins over If-Modified-Since",
  );
});

Deno.test("directories redirect to their '/' form and serve their index", async () => {
  await using site = await makeSite();
  await using server = serveSite(site.root);
  const redirect = await fetch(`${server.url}/sub?x=1`, { redirect: "manual" });
  await redirect.body?.cancel();
  assertEquals([redirect.status, redirect.headers.get("location")], [301, "/sub/?x=1"]);
  const sub = await fetch(`${server.url}/sub/`);
  assertEquals([sub.status, await sub.text()], [200, "sub home"]);
  assertEquals(sub.headers.get("content-type"), "text/html; charset=utf-8");
  const home = await fetch(`${server.url}/`);
  assertEquals([home.status, await home.text()], [200, "<h1>home</h1>"]);
  for (const path of ["/empty-dir/", "/notes.txt/", "/missing", "/sub/missing.txt"]) {
    const res = await fetch(server.url + path);
    assertEquals(res.status, 404, path);
    assertEquals((await res.json()).error.code, "not_found");
  }
});

Deno.test("stripPrefix is removed before the path names a file", async () => {
  await using site = await makeSite();
  await using server = serveSite(site.root, { stripPrefix: "/assets/", index: "page.txt" });
  const file = await fetch(`${server.url}/assets/notes.txt`);
  assertEquals([file.status, await file.text()], [200, "notes"]);
  const redirect = await fetch(`${server.url}/assets`, { redirect: "manual" });
  await redirect.body?.cancel();
  assertEquals([redirect.status, redirect.headers.get("location")], [301, "/assets/"]);
  const index = await fetch(`${server.url}/assets/sub/`);
  assertEquals([index.status, await index.text()], [200, "page"]);
});

Deno.test("a symbolic link inside the root to a file inside it is served", async () => {
  await using site = await makeSite();
  await using server = serveSite(site.root);
  const res = await rawGet(server.port, "/inside-link.txt");
  assertEquals(res.status, 200);
  assert(res.text.endsWith("\r\n\r\nnotes"), res.text);
});

Deno.test("nothing outside the root is served, however the path is written", async () => {
  await using site = await makeSite();
  await using server = serveSite(site.root);
  const targets = [
    "/../outside/secret.txt",
    "/../../../../../../../../etc/passwd",
    "/sub/../../outside/secret.txt",
    "/%2e%2e/outside/secret.txt",
    "/%2E%2E/outside/secret.txt",
    "/.%2e/outside/secret.txt",
    "/%2e%2e%2foutside%2fsecret.txt",
    "/sub%2f..%2f..%2foutside%2fsecret.txt",
    "/..%2f..%2f..%2f..%2fetc%2fpasswd",
    "/..%5coutside%5csecret.txt",
    "/..\\outside\\secret.txt",
    "/%252e%252e/outside/secret.txt",
    "/%c0%ae%c0%ae/outside/secret.txt",
    "//etc/passwd",
    "/%2fetc%2fpasswd",
    `/${join(site.outside, "secret.txt")}`,
    `/${encodeURIComponent(join(site.outside, "secret.txt"))}`,
    "/notes.txt%00.html",
    "/%00/../outside/secret.txt",
    "/escape-file",
    "/escape-dir/secret.txt",
    "/escape-dir/",
    "http://127.0.0.1/../outside/secret.txt",
  ];
  const served: string[] = [];
  for (const target of targets) {
    const res = await rawGet(server.port, target);
    if (res.status !== 404 || res.text.includes(SECRET) || res.text.includes("root:")) {
      served.push(`${target} -> ${res.status}`);
    }
  }
  assertEquals(served, []);
});

Deno.test("a root that is missing or not a directory is refused at construction", async () => {
  await using site = await makeSite();
  const config = (root: string) => StaticTargetConfig.parse({ root });
  const missing = join(site.root, "nope");
  let error: unknown;
  try {
    createStaticTarget(config(missing), missing);
  } catch (e) {
    error = e;
  }
  assert(error instanceof Deno.errors.NotFound, `missing root: ${error}`);
  const file = join(site.root, "notes.txt");
  error = undefined;
  try {
    createStaticTarget(config(file), file);
  } catch (e) {
    error = e;
  }
  assert(error instanceof Error && error.message.includes("not a directory"), `${error}`);
});
