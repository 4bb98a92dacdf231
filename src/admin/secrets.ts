/**
 * The admin API's secrets: the token kept in the data directory, and the
 * redaction of secrets from the config document it shows.
 *
 * @module
 */

import { join } from "node:path";
import { encodeHex } from "../util/hex.ts";

const SECRET_KEY = /token|password|secret|authorization/i;

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

/**
 * A copy of a config document with the values of secret-looking keys
 * (token, password, secret, authorization) replaced, unless they are
 * `env:` references.
 *
 * @example
 * ```ts
 * import { redactSecrets } from "./secrets.ts";
 * redactSecrets({ admin: { token: "s3cr3t-s3cr3t-s3cr3t" } }); // { admin: { token: "[redacted]" } }
 * redactSecrets({ admin: { token: "env:ADMIN_TOKEN" } }); // unchanged
 * ```
 */
export function redactSecrets(value: unknown, key = ""): unknown {
  if (typeof value === "string") {
    return SECRET_KEY.test(key) && !value.startsWith("env:") ? "[redacted]" : value;
  }
  if (Array.isArray(value)) return value.map((item) => redactSecrets(item));
  if (value && typeof value === "object") {
    return Object.fromEntries(Object.entries(value).map(([k, v]) => [k, redactSecrets(v, k)]));
  }
  return value;
}
