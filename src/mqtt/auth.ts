/**
 * Broker authentication: users from the config with PBKDF2-SHA256 password
 * hashes (`pbkdf2-sha256$<iterations>$<salt base64>$<hash base64>`), verified
 * with WebCrypto. A successful check is remembered per user (as a SHA-256 of
 * the password), so reconnecting clients do not pay the key derivation again.
 * The local user (`mqtt.localUser`) has a generated password kept in the data
 * directory ({@link localPassword}), like the admin token.
 *
 * @module
 */

import { Buffer } from "node:buffer";
import { join } from "node:path";
import { encodeHex } from "../util/hex.ts";
import { timingSafeEqual } from "../util/timing_safe_equal.ts";

/** The file in the data directory that holds the local user's password. */
const LOCAL_PASSWORD_FILE = "mqtt-local.password";

const encoder = new TextEncoder();
const DEFAULT_ITERATIONS = 210_000;
/** Verified against for unknown users, so they take as long as a wrong password (no user enumeration by timing). */
const DUMMY_HASH =
  "pbkdf2-sha256$210000$nONY7I8ifnfxJQQJo2QQsg==$4f+nrT1nkvO29Peu0hZ1lHZ8tRAjlfwpihxb4H3crL0=";

async function derive(password: Uint8Array, salt: Uint8Array, iterations: number) {
  const key = await crypto.subtle.importKey(
    "raw",
    password as Uint8Array<ArrayBuffer>,
    "PBKDF2",
    false,
    ["deriveBits"],
  );
  const bits = await crypto.subtle.deriveBits(
    { name: "PBKDF2", hash: "SHA-256", salt: salt as Uint8Array<ArrayBuffer>, iterations },
    key,
    256,
  );
  return new Uint8Array(bits);
}

/**
 * Hashes a password for the `mqtt.users` section of the config.
 *
 * @example
 * ```ts
 * import { hashPassword } from "./auth.ts";
 * const hash = await hashPassword("s3cret"); // "pbkdf2-sha256$210000$...$..."
 * ```
 */
export async function hashPassword(password: string, iterations = DEFAULT_ITERATIONS) {
  const salt = crypto.getRandomValues(new Uint8Array(16));
  const hash = await derive(encoder.encode(password), salt, iterations);
  return `pbkdf2-sha256$${iterations}$${Buffer.from(salt).toString("base64")}$${
    Buffer.from(hash).toString("base64")
  }`;
}

/**
 * Whether `password` matches a hash made by {@link hashPassword}; false for a
 * hash in another format. Compares in constant time.
 *
 * @example
 * ```ts
 * import { hashPassword, verifyPassword } from "./auth.ts";
 * const hash = await hashPassword("s3cret", 1000);
 * await verifyPassword(new TextEncoder().encode("s3cret"), hash); // true
 * ```
 */
export async function verifyPassword(password: Uint8Array, encoded: string): Promise<boolean> {
  const [scheme, iterations, salt, hash] = encoded.split("$");
  if (scheme !== "pbkdf2-sha256" || !/^\d+$/.test(iterations ?? "")) return false;
  const expected = Buffer.from(hash ?? "", "base64");
  const actual = await derive(password, Buffer.from(salt ?? "", "base64"), Number(iterations));
  return timingSafeEqual(actual, expected);
}

/**
 * The local user's password and the file that holds it, in `dataDir`;
 * generated (24 random bytes, hex) and written with mode 0600 on first use.
 *
 * @example
 * ```ts
 * import { localPassword } from "./auth.ts";
 * const { password, file } = await localPassword(await Deno.makeTempDir());
 * password.length; // 48
 * file.endsWith("mqtt-local.password"); // true
 * ```
 */
export async function localPassword(dataDir: string): Promise<{ password: string; file: string }> {
  const file = join(dataDir, LOCAL_PASSWORD_FILE);
  try {
    const password = (await Deno.readTextFile(file)).trim();
    if (password.length >= 16) return { password, file };
  } catch (error) {
    if (!(error instanceof Deno.errors.NotFound)) throw error;
  }
  const password = encodeHex(crypto.getRandomValues(new Uint8Array(24)));
  await Deno.writeTextFile(file, `${password}\n`, { mode: 0o600 });
  await Deno.chmod(file, 0o600);
  return { password, file };
}

/** A user whose password is given in plain (a generated one), not as a hash. */
export interface LocalUser {
  username: string;
  password: string;
}

/**
 * Checks a CONNECT's user name and password against the configured users.
 *
 * @example
 * ```ts
 * import { Authenticator, hashPassword } from "./auth.ts";
 * const auth = new Authenticator({ ada: { password: await hashPassword("pw", 1000) } }, false);
 * await auth.check("ada", new TextEncoder().encode("pw")); // true
 * await auth.check(undefined, undefined); // false: anonymous not allowed
 * const local = new Authenticator({}, false, { username: "local", password: "generated-0123456789" });
 * await local.check("local", new TextEncoder().encode("generated-0123456789")); // true
 * ```
 */
export class Authenticator {
  /** Per user: the SHA-256 (hex) of the last password that verified. */
  readonly #verified = new Map<string, string>();
  readonly #local?: { username: string; digest: Promise<Uint8Array> };

  constructor(
    readonly users: Readonly<Record<string, { password: string }>>,
    readonly allowAnonymous: boolean,
    local?: LocalUser,
  ) {
    if (local) {
      this.#local = { username: local.username, digest: sha256(encoder.encode(local.password)) };
    }
  }

  /**
   * True when the user exists and the password matches, or anonymous is
   * allowed and no user name was given. An unknown user costs a key derivation
   * with the default iterations too.
   */
  async check(username: string | undefined, password: Uint8Array | undefined): Promise<boolean> {
    if (username === undefined || username === "") return this.allowAnonymous;
    if (!password) return false;
    if (this.#local?.username === username) {
      return timingSafeEqual(await sha256(password), await this.#local.digest);
    }
    if (!Object.hasOwn(this.users, username)) {
      await verifyPassword(password, DUMMY_HASH);
      return false;
    }
    const user = this.users[username];
    const digest = encodeHex(
      await crypto.subtle.digest("SHA-256", password as Uint8Array<ArrayBuffer>),
    );
    if (this.#verified.get(username) === digest) return true;
    if (!await verifyPassword(password, user.password)) return false;
    this.#verified.set(username, digest);
    return true;
  }
}

async function sha256(bytes: Uint8Array): Promise<Uint8Array> {
  return new Uint8Array(await crypto.subtle.digest("SHA-256", bytes as Uint8Array<ArrayBuffer>));
}
