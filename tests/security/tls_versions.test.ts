/**
 * An HTTPS listener refuses TLS 1.0 and 1.1 and weak cipher suites (CBC,
 * static RSA key exchange, NULL), and accepts TLS 1.2 with an AEAD ECDHE
 * suite and TLS 1.3 (the hardening issue's "Tests and checks").
 * `openssl s_client` offers each, at security level 0 so that it really does;
 * a refusal counts only when the gateway's alert came back, and an offer
 * openssl cannot make fails the test. 3DES and RC4 are not offered: Debian's
 * openssl 3 cannot (they are gone from its default provider), and the
 * listener's TLS library (rustls) implements neither. Through the real
 * gateway process.
 */

import { assert } from "../helpers/assert.ts";
import { startGateway } from "../helpers/gateway.ts";
import { selfSignedCertificate } from "../helpers/tls.ts";

/** Runs openssl (a test package, installed by `deno task test`). */
async function openssl(args: string[]): Promise<{ ok: boolean; output: string }> {
  const result = await new Deno.Command("openssl", {
    args,
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  }).output();
  const decoder = new TextDecoder();
  return {
    ok: result.success,
    output: decoder.decode(result.stdout) + decoder.decode(result.stderr),
  };
}

/** Offers that the listener must refuse with an alert: [name, s_client arguments]. */
const REFUSED: [string, string[]][] = [
  ["TLS 1.0", ["-tls1", "-cipher", "ALL:@SECLEVEL=0"]],
  ["TLS 1.1", ["-tls1_1", "-cipher", "ALL:@SECLEVEL=0"]],
  ["TLS 1.2 AES128-SHA (CBC, RSA key exchange)", ["-tls1_2", "-cipher", "AES128-SHA:@SECLEVEL=0"]],
  ["TLS 1.2 ECDHE-RSA-AES128-SHA (CBC)", ["-tls1_2", "-cipher", "ECDHE-RSA-AES128-SHA"]],
  ["TLS 1.2 AES128-GCM-SHA256 (RSA key exchange)", ["-tls1_2", "-cipher", "AES128-GCM-SHA256"]],
  ["TLS 1.2 NULL-SHA256", ["-tls1_2", "-cipher", "NULL-SHA256:@SECLEVEL=0"]],
];

/** Offers that must succeed, so that the refusals above are the listener's choice. */
const ACCEPTED: [string, string[]][] = [
  ["TLS 1.2 ECDHE-RSA-AES128-GCM-SHA256", ["-tls1_2", "-cipher", "ECDHE-RSA-AES128-GCM-SHA256"]],
  ["TLS 1.3", ["-tls1_3"]],
];

Deno.test("an HTTPS listener refuses TLS 1.0, 1.1 and weak cipher suites", async (t) => {
  const { cert, key } = await selfSignedCertificate("rsa");
  await using gw = await startGateway({
    listeners: {
      secure: {
        type: "http",
        host: "127.0.0.1",
        port: 0,
        tls: { cert: "cert.pem", key: "key.pem" },
      },
    },
    routes: [{ target: { respond: { body: "hi" } } }],
  }, { files: { "cert.pem": cert, "key.pem": key } });
  const connect = ["s_client", "-connect", `127.0.0.1:${await gw.port("secure")}`];

  for (const [name, args] of ACCEPTED) {
    const result = await openssl([...connect, ...args]);
    assert(
      result.ok && /Cipher is (?!\(NONE\))/.test(result.output),
      `${name}: ${result.output}`,
    );
  }
  for (const [name, args] of REFUSED) {
    const result = await openssl([...connect, ...args]);
    await t.step(name, () => {
      assert(
        !/no cipher match|no ciphers available|no protocols available/.test(result.output),
        `openssl could not offer ${name}, so the listener was never asked: ${result.output}`,
      );
      assert(!result.ok, `${name} was accepted: ${result.output}`);
      // The listener's alert came back: it refused what the client offered.
      assert(/alert (handshake failure|protocol version)/.test(result.output), result.output);
    });
  }
});
