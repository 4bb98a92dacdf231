/**
 * The admin API's secrets: the token kept in the data directory, and the
 * redaction of secrets from the config document it shows and from URLs
 * (bridge URLs in logs, request URLs in the access log).
 *
 * @module
 */

import { join } from "node:path";
import { z } from "zod";
import { encodeHex } from "../util/hex.ts";

/**
 * The admin token kept in the data directory, created on first use (mode 0600).
 *
 * @example
 * ```ts
 * import { localAdminToken } from "./secrets.ts";
 * const token = await localAdminToken(await Deno.makeTempDir());
 * token.length; // 48
 * ```
 */
export async function localAdminToken(dataDir: string): Promise<string> {
  const file = join(dataDir, "admin.token");
  try {
    const token = (await Deno.readTextFile(file)).trim();
    if (token.length >= 16) return token;
  } catch (error) {
    if (!(error instanceof Deno.errors.NotFound)) throw error;
  }
  const token = encodeHex(crypto.getRandomValues(new Uint8Array(24)));
  await Deno.writeTextFile(file, `${token}\n`, { mode: 0o600 });
  return token;
}

/** The text a secret is replaced with. */
export const REDACTED = "[redacted]";

/** Keys whose values are secrets wherever they are, header names among them. */
const SECRET_KEY =
  /token|password|passphrase|secret|authorization|cookie|api[-_]?key|credential|private[-_]?key/i;

/** Query parameters the access log masks unless `log.redactQuery` says otherwise. */
export const DEFAULT_REDACT_QUERY: readonly string[] = [
  "access_token",
  "api_key",
  "api-key",
  "apikey",
  "auth",
  "code",
  "key",
  "password",
  "secret",
  "sig",
  "signature",
  "token",
];

const URL_USERINFO = /^([a-z][a-z0-9+.-]*:\/\/)([^/?#@\s]*)@/i;

/**
 * `text` with the secrets a URL can carry masked: the password of its
 * userinfo (all of it when it has no `:`), and the values of the query
 * parameters named in `query` (compared without case). Text that is not a
 * URL comes back as it is.
 *
 * @example
 * ```ts
 * import { redactUrl } from "./secrets.ts";
 * redactUrl("mqtts://bridge:hunter2@broker:8883"); // "mqtts://bridge:[redacted]@broker:8883"
 * redactUrl("http://h/p?api_key=abc&page=2"); // "http://h/p?api_key=[redacted]&page=2"
 * ```
 */
export function redactUrl(text: string, query: readonly string[] = DEFAULT_REDACT_QUERY): string {
  let shown = text.replace(URL_USERINFO, (_, scheme: string, userinfo: string) => {
    const colon = userinfo.indexOf(":");
    return `${scheme}${colon < 0 ? REDACTED : `${userinfo.slice(0, colon)}:${REDACTED}`}@`;
  });
  const queryStart = shown.indexOf("?");
  if (queryStart < 0 || query.length === 0) return shown;
  const names = new Set(query.map((name) => name.toLowerCase()));
  const hashStart = shown.indexOf("#", queryStart);
  const end = hashStart < 0 ? shown.length : hashStart;
  const params = shown.slice(queryStart + 1, end).split("&").map((param) => {
    const eq = param.indexOf("=");
    const name = eq < 0 ? param : param.slice(0, eq);
    return eq >= 0 && names.has(decodeName(name).toLowerCase()) ? `${name}=${REDACTED}` : param;
  });
  shown = `${shown.slice(0, queryStart + 1)}${params.join("&")}${shown.slice(end)}`;
  return shown;
}

function decodeName(name: string): string {
  try {
    return decodeURIComponent(name.replaceAll("+", " "));
  } catch {
    return name;
  }
}

/**
 * A copy of a config document with its secrets replaced by `[redacted]`:
 * every value under a field its zod `schema` marks `.meta({ secret: true })`
 * (all of an object's or record's values when the mark is on it), every
 * value of a secret-looking key (token, password, secret, authorization,
 * cookie, api key, credential, private key; header names included), and the
 * password in URLs' userinfo and secret query parameters in every other
 * string. `env:` references are kept: they name a variable, not its value.
 *
 * @example
 * ```ts
 * import { z } from "zod";
 * import { redactSecrets } from "./secrets.ts";
 * redactSecrets({ admin: { token: "s3cr3t-s3cr3t-s3cr3t" } }); // { admin: { token: "[redacted]" } }
 * redactSecrets({ admin: { token: "env:ADMIN_TOKEN" } }); // unchanged
 * const schema = z.object({ env: z.record(z.string(), z.string()).meta({ secret: true }) });
 * redactSecrets({ env: { DB: "postgres://u:p@db" } }, schema); // { env: { DB: "[redacted]" } }
 * ```
 */
export function redactSecrets(value: unknown, schema?: z.ZodType): unknown {
  return redact(value, schema, false);
}

function redact(value: unknown, schema: z.ZodType | undefined, secret: boolean): unknown {
  const field = unwrap(schema, value);
  const hidden = secret || field.secret;
  if (typeof value === "string") {
    if (value.startsWith("env:")) return value;
    return hidden ? REDACTED : redactUrl(value);
  }
  if (Array.isArray(value)) {
    return value.map((item, i) => redact(item, itemSchema(field.schema, i), hidden));
  }
  if (value && typeof value === "object") {
    return Object.fromEntries(
      Object.entries(value).map((
        [key, item],
      ) => [key, redact(item, entrySchema(field.schema, key), hidden || SECRET_KEY.test(key))]),
    );
  }
  return value;
}

/** The schema under the wrappers (optional, default, pipe, union...), and whether one is secret. */
function unwrap(
  schema: z.ZodType | undefined,
  value: unknown,
): { schema?: z.ZodType; secret: boolean } {
  let secret = false;
  for (let depth = 0; schema && depth < 32; depth++) {
    if (z.globalRegistry.get(schema)?.secret === true) secret = true;
    const def = schema._zod.def as unknown as Record<string, unknown>;
    switch (def.type) {
      case "optional":
      case "nullable":
      case "default":
      case "prefault":
      case "nonoptional":
      case "readonly":
      case "catch":
        schema = def.innerType as z.ZodType;
        continue;
      case "pipe":
        schema = def.in as z.ZodType;
        continue;
      case "lazy":
        schema = (def.getter as () => z.ZodType)();
        continue;
      case "union":
        // The option the value is valid for; none: the key names still apply.
        schema = (def.options as z.ZodType[]).find((option) => option.safeParse(value).success);
        continue;
    }
    break;
  }
  return { schema, secret };
}

function entrySchema(schema: z.ZodType | undefined, key: string): z.ZodType | undefined {
  const def = schema?._zod.def as unknown as Record<string, unknown> | undefined;
  if (def?.type === "object") {
    return (def.shape as Record<string, z.ZodType>)[key] ?? def.catchall as z.ZodType | undefined;
  }
  return def?.type === "record" ? def.valueType as z.ZodType : undefined;
}

function itemSchema(schema: z.ZodType | undefined, index: number): z.ZodType | undefined {
  const def = schema?._zod.def as unknown as Record<string, unknown> | undefined;
  if (def?.type === "array") return def.element as z.ZodType;
  if (def?.type === "tuple") {
    return (def.items as z.ZodType[])[index] ?? def.rest as z.ZodType | undefined;
  }
  return undefined;
}
