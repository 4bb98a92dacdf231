/**
 * The one canonical form of a request path, computed once where a request
 * enters a listener and then used by routing, plugins, logs and forwarding
 * alike, so the path a route matched is exactly the path the upstream gets.
 *
 * The policy, after nginx and Envoy:
 * - percent-encoded unreserved characters (`A-Z a-z 0-9 - . _ ~`) are decoded
 *   (`%7E` → `~`, `%2e` → `.`); every other escape keeps its byte, in
 *   uppercase hex (`%2f` → `%2F`): an encoded `/` is never a separator;
 * - runs of `/` merge into one (nginx `merge_slashes on`);
 * - `.` and `..` segments are removed (RFC 3986 §5.2.4), after the decoding
 *   above, so `%2e%2e` is `..`;
 * - raw characters that RFC 3986 does not allow in a path but HTTP parsers
 *   pass through (`"` `<` `>` `^` `` ` `` `{` `|` `}` `#`) are percent-encoded;
 * - refused (400 `bad_path`): a backslash, `%00`, a `%` not followed by two
 *   hex digits, a raw control, space or non-ASCII character, a path not
 *   starting with `/`, and `..` climbing above the root.
 *
 * The result is a fixed point of both this function and the WHATWG URL
 * parser, which the proxy uses to build the upstream URL.
 *
 * @module
 */

import { GatewayError } from "../errors.ts";

const SLASH = 0x2f;
const DOT = 0x2e;
const PERCENT = 0x25;
const HEX = "0123456789ABCDEF";

/** Per ASCII code: 0 kept as is, 1 percent-encoded, 2 refused, 3 needs the slow path. */
const CLASS = new Uint8Array(128).fill(2);
for (let code = 0x21; code < 0x7f; code++) CLASS[code] = 0;
for (const char of `"<>^\`{|}#`) CLASS[char.charCodeAt(0)] = 1;
CLASS[0x5c] = 2; // backslash
CLASS[PERCENT] = 3;
CLASS[SLASH] = 3;

/** `A-Z a-z 0-9 - . _ ~`: the characters whose escapes are decoded. */
function isUnreserved(code: number): boolean {
  return (code >= 0x41 && code <= 0x5a) || (code >= 0x61 && code <= 0x7a) ||
    (code >= 0x30 && code <= 0x39) || code === 0x2d || code === DOT || code === 0x5f ||
    code === 0x7e;
}

function hexValue(code: number): number {
  if (code >= 0x30 && code <= 0x39) return code - 0x30;
  const lower = code | 0x20;
  return lower >= 0x61 && lower <= 0x66 ? lower - 0x61 + 10 : -1;
}

function refuse(path: string, why: string): never {
  throw new GatewayError(400, "bad_path", `invalid request path ${JSON.stringify(path)}: ${why}`);
}

/** Whether `path` is already canonical; most request paths are, and skip the rebuild. */
function isCanonical(path: string): boolean {
  if (path.charCodeAt(0) !== SLASH) return false;
  for (let i = 0; i < path.length; i++) {
    const code = path.charCodeAt(i);
    if (code >= 128) return false;
    const kind = CLASS[code];
    if (kind === 0) continue;
    if (kind !== 3) return false;
    if (code === PERCENT) return false;
    const next = path.charCodeAt(i + 1);
    if (next === SLASH) return false;
    if (next === DOT) {
      const after = path.charCodeAt(i + 2);
      if (Number.isNaN(after) || after === SLASH) return false; // "/." at the end, or "/./"
      if (after === DOT) {
        const third = path.charCodeAt(i + 3);
        if (Number.isNaN(third) || third === SLASH) return false; // "/.." or "/../"
      }
    }
  }
  return true;
}

/** One segment with escapes normalised and unsafe raw characters encoded. */
function canonicalSegment(path: string, start: number, end: number): string {
  let out = "";
  for (let i = start; i < end; i++) {
    const code = path.charCodeAt(i);
    if (code >= 128) refuse(path, "raw non-ASCII character (percent-encode it)");
    const kind = CLASS[code];
    if (kind === 0) {
      out += path[i];
    } else if (kind === 1) {
      out += "%" + HEX[code >> 4] + HEX[code & 15];
    } else if (kind === 2) {
      refuse(path, code === 0x5c ? "backslash" : "raw control or space character");
    } else {
      const high = hexValue(path.charCodeAt(i + 1));
      const low = hexValue(path.charCodeAt(i + 2));
      if (high < 0 || low < 0) refuse(path, `"%" at ${i} is not followed by two hex digits`);
      const byte = high * 16 + low;
      if (byte === 0) refuse(path, "encoded NUL (%00)");
      out += isUnreserved(byte) ? String.fromCharCode(byte) : "%" + HEX[high] + HEX[low];
      i += 2;
    }
  }
  return out;
}

/**
 * The canonical form of the request path `path` (without its query); throws
 * a 400 {@link GatewayError} (`bad_path`) for a path the policy above refuses.
 *
 * @example
 * ```ts
 * import { canonicalPath } from "./canonical_path.ts";
 * canonicalPath("/api/./admin/users"); // "/api/admin/users"
 * canonicalPath("/api/x/../admin//users"); // "/api/admin/users"
 * canonicalPath("/api/%2e/admin/%7euser"); // "/api/admin/~user"
 * canonicalPath("/files/a%2fb"); // "/files/a%2Fb"
 * ```
 */
export function canonicalPath(path: string): string {
  if (isCanonical(path)) return path;
  if (path.charCodeAt(0) !== SLASH) refuse(path, "it does not start with /");
  const segments: string[] = [];
  let trailingSlash = false;
  let start = 1;
  while (start <= path.length) {
    let end = path.indexOf("/", start);
    if (end < 0) end = path.length;
    const segment = canonicalSegment(path, start, end);
    const last = end === path.length;
    if (segment === "..") {
      if (segments.length === 0) refuse(path, "'..' climbs above the root");
      segments.pop();
      trailingSlash = true;
    } else if (segment === "." || segment === "") {
      trailingSlash = trailingSlash || last || segment === ".";
    } else {
      segments.push(segment);
      trailingSlash = false;
    }
    start = end + 1;
  }
  const joined = "/" + segments.join("/");
  return trailingSlash && segments.length > 0 ? joined + "/" : joined;
}
