/**
 * Certificates for the TLS tests, made by openssl (a test package: see
 * `TEST_PACKAGES` in build.ts).
 *
 * @module
 */

import { join } from "node:path";

/**
 * A self-signed certificate for `localhost` and `127.0.0.1`, valid two days,
 * with a P-256 key (`ec`) or an RSA 2048 one (`rsa`, for RSA cipher suites).
 * Throws with openssl's message when it fails.
 *
 * @example
 * ```ts
 * import { selfSignedCertificate } from "./tls.ts";
 * const { cert, key } = await selfSignedCertificate();
 * ```
 */
export async function selfSignedCertificate(
  keyType: "ec" | "rsa" = "ec",
): Promise<{ cert: string; key: string }> {
  const dir = await Deno.makeTempDir();
  try {
    const newKey = keyType === "ec"
      ? ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1"]
      : ["-newkey", "rsa:2048"];
    const made = await new Deno.Command("openssl", {
      args: [
        ...["req", "-x509", ...newKey, "-nodes", "-days", "2"],
        ...["-keyout", join(dir, "key.pem"), "-out", join(dir, "cert.pem")],
        ...["-subj", "/CN=localhost", "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1"],
        ...["-addext", "basicConstraints=critical,CA:FALSE"],
      ],
      stdout: "null",
      stderr: "piped",
    }).output();
    if (!made.success) throw new Error(`openssl: ${new TextDecoder().decode(made.stderr)}`);
    return {
      cert: await Deno.readTextFile(join(dir, "cert.pem")),
      key: await Deno.readTextFile(join(dir, "key.pem")),
    };
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}
