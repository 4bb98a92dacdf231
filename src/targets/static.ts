/**
 * The static-files target: serves a directory over GET and HEAD, streaming
 * each file, with `Content-Type`, `Content-Length`, `Last-Modified` and
 * `ETag`, and 304 for conditional requests that match.
 *
 * Nothing outside the root is ever served. The request path is split into
 * segments and each is percent-decoded once; a segment that is empty (as in
 * `//etc/passwd`), starts with `.` (`..`, and hidden files such as `.env` or
 * `.git`), or that decodes to something containing `/`,
 * `\` or NUL, is refused. Symbolic links are followed, but only to files whose
 * real path is inside the real root. Every refusal, like every missing file,
 * is a 404, so the answer never tells what exists outside the root.
 *
 * @module
 */

import { join, sep } from "node:path";
import { getMimeType } from "hono/utils/mime";
import type { StaticTargetConfig } from "./config.ts";
import { errorResponse, GatewayError } from "../errors.ts";
import type { GatewayContext, Target } from "../pipeline/stage.ts";

/** Errors (by `code`) that mean a path cannot be served, rather than that the server failed. */
const UNSERVABLE_PATH_ERRORS = new Set([
  "ENOENT",
  "ENOTDIR",
  "EACCES",
  "EPERM",
  "ELOOP",
  "ENAMETOOLONG",
]);

/** A regular file inside the root, found by {@link createStaticTarget}. */
interface FoundFile {
  path: string;
  info: Deno.FileInfo;
}

/**
 * Creates a target serving files from the directory `root` (an absolute path).
 * The request path, less `stripPrefix`, names the file; a directory is served
 * by its `index` file, and a directory path without its final `/` is
 * redirected (301) to the path with it. Throws when `root` is not a directory,
 * so a config pointing at a missing directory fails to load.
 *
 * @example
 * ```ts
 * import { createStaticTarget } from "./static.ts";
 * const root = await Deno.makeTempDir();
 * const target = createStaticTarget({ root, index: "index.html", stripPrefix: "/assets" }, root);
 * await Deno.remove(root);
 * ```
 */
export function createStaticTarget(config: StaticTargetConfig, root: string): Target {
  const realRoot = Deno.realPathSync(root);
  if (!Deno.statSync(realRoot).isDirectory) {
    throw new Error(`static root ${root} is not a directory`);
  }
  const insideRoot = realRoot.endsWith(sep) ? realRoot : realRoot + sep;
  const prefix = config.stripPrefix?.replace(/\/+$/, "") ?? "";

  /** The regular file or directory at `path` when its real path is inside the root. */
  async function findInsideRoot(path: string): Promise<FoundFile | null> {
    try {
      const realPath = await Deno.realPath(path);
      if (realPath !== realRoot && !realPath.startsWith(insideRoot)) return null;
      const info = await Deno.stat(realPath);
      return info.isFile || info.isDirectory ? { path: realPath, info } : null;
    } catch (error) {
      if (isUnservable(error)) return null;
      throw error;
    }
  }

  return async (c) => {
    const method = c.req.method;
    if (method !== "GET" && method !== "HEAD") {
      return errorResponse(
        new GatewayError(405, "method_not_allowed", `${method} is not allowed on static files`, {
          headers: { allow: "GET, HEAD" },
        }),
        c.env.requestId,
      );
    }
    let path = c.req.path;
    if (prefix && (path === prefix || path.startsWith(prefix + "/"))) {
      path = path.slice(prefix.length);
    }
    // "" is the root without its final "/"; otherwise segments follow a leading "/".
    const segments = path === "" ? [] : path.split("/").slice(1);
    const endsWithSlash = segments.at(-1) === "";
    if (endsWithSlash) segments.pop();
    const names: string[] = [];
    for (const segment of segments) {
      let name: string;
      try {
        name = decodeURIComponent(segment);
      } catch {
        return notFound(c);
      }
      if (
        name === "" || name.startsWith(".") || name.includes("/") ||
        name.includes("\\") || name.includes("\0")
      ) {
        return notFound(c);
      }
      names.push(name);
    }

    let found = await findInsideRoot(join(realRoot, ...names));
    let fileName = names.at(-1) ?? "";
    if (found?.info.isDirectory) {
      if (!endsWithSlash) {
        const url = new URL(c.req.url);
        return new Response(null, {
          status: 301,
          headers: { location: `${url.pathname}/${url.search}` },
        });
      }
      found = await findInsideRoot(join(found.path, config.index));
      fileName = config.index;
    } else if (endsWithSlash) {
      return notFound(c);
    }
    if (!found?.info.isFile) return notFound(c);

    const { info } = found;
    const mtime = info.mtime?.getTime() ?? 0;
    const etag = `"${info.size.toString(16)}-${mtime.toString(16)}"`;
    const headers: Record<string, string> = { etag };
    if (info.mtime) headers["last-modified"] = info.mtime.toUTCString();

    const ifNoneMatch = c.req.raw.headers.get("if-none-match");
    const ifModifiedSince = c.req.raw.headers.get("if-modified-since");
    const notModified = ifNoneMatch !== null
      ? ifNoneMatch.split(",").some((tag) => {
        const trimmed = tag.trim();
        return trimmed === "*" || trimmed.replace(/^W\//, "") === etag;
      })
      : ifModifiedSince !== null && info.mtime !== null &&
        Math.floor(mtime / 1000) * 1000 <= Date.parse(ifModifiedSince);
    if (notModified) return new Response(null, { status: 304, headers });

    headers["content-type"] = getMimeType(fileName) ?? "application/octet-stream";
    headers["content-length"] = String(info.size);
    if (method === "HEAD") return new Response(null, { headers });
    try {
      const file = await Deno.open(found.path);
      return new Response(file.readable, { headers });
    } catch (error) {
      if (isUnservable(error)) return notFound(c);
      throw error;
    }
  };
}

function isUnservable(error: unknown): boolean {
  return UNSERVABLE_PATH_ERRORS.has((error as { code?: string }).code ?? "");
}

function notFound(c: GatewayContext): Response {
  return errorResponse(new GatewayError(404, "not_found", "no such file"), c.env.requestId);
}
