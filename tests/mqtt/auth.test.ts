import { assert, assertEquals, assertMatch } from "../helpers/assert.ts";
import { Authenticator, hashPassword, verifyPassword } from "../../src/mqtt/auth.ts";
import { MqttUserConfig } from "../../src/mqtt/config.ts";

const encode = (text: string) => new TextEncoder().encode(text);

Deno.test("hashPassword makes a PBKDF2-SHA256 hash the config accepts and verifyPassword checks", async () => {
  const hash = await hashPassword("correct horse", 1000);
  assertMatch(hash, /^pbkdf2-sha256\$1000\$[A-Za-z0-9+/=]+\$[A-Za-z0-9+/=]+$/);
  assert(MqttUserConfig.safeParse({ password: hash }).success);
  assert(await verifyPassword(encode("correct horse"), hash));
  assert(!await verifyPassword(encode("correct horsf"), hash));
  assert(!await verifyPassword(encode("correct horse"), hash.replace("$1000$", "$1001$")));
  assert(!await verifyPassword(encode("x"), "sha1$1$abc$def"));
});

Deno.test("the PBKDF2-HMAC-SHA256 test vector of RFC 7914 §11 verifies", async () => {
  // PBKDF2-HMAC-SHA256("passwd", "salt", 1, 32): RFC 7914 section 11, first 32 bytes.
  const salt = btoa("salt");
  const hash = btoa(String.fromCharCode(
    ...[
      0x55,
      0xac,
      0x04,
      0x6e,
      0x56,
      0xe3,
      0x08,
      0x9f,
      0xec,
      0x16,
      0x91,
      0xc2,
      0x25,
      0x44,
      0xb6,
      0x05,
      0xf9,
      0x41,
      0x85,
      0x21,
      0x6d,
      0xde,
      0x04,
      0x65,
      0xe6,
      0x8b,
      0x9d,
      0x57,
      0xc2,
      0x0d,
      0xac,
      0xbc,
    ],
  ));
  assert(await verifyPassword(encode("passwd"), `pbkdf2-sha256$1$${salt}$${hash}`));
});

Deno.test("Authenticator: users, wrong passwords, anonymous", async () => {
  const users = { ada: { password: await hashPassword("pw", 1000) } };
  const strict = new Authenticator(users, false);
  assertEquals(await strict.check("ada", encode("pw")), true);
  assertEquals(await strict.check("ada", encode("pw")), true);
  assertEquals(await strict.check("ada", encode("bad")), false);
  assertEquals(await strict.check("bob", encode("pw")), false);
  assertEquals(await strict.check("ada", undefined), false);
  assertEquals(await strict.check(undefined, undefined), false);
  assertEquals(await new Authenticator(users, true).check(undefined, undefined), true);
});

Deno.test("Authenticator: an unknown user pays a PBKDF2 derivation with the default iterations", async () => {
  const derive = crypto.subtle.deriveBits;
  const iterations: number[] = [];
  crypto.subtle.deriveBits = function (algorithm, key, length) {
    iterations.push((algorithm as Pbkdf2Params).iterations);
    return derive.call(this, algorithm, key, length);
  };
  try {
    const auth = new Authenticator({ ada: { password: await hashPassword("pw", 1000) } }, false);
    iterations.length = 0;
    assertEquals(await auth.check("nosuchuser", encode("pw")), false);
    assertEquals(iterations, [210_000]);
    assertEquals(await auth.check("ada", encode("bad")), false);
    assertEquals(iterations, [210_000, 1000]);
  } finally {
    crypto.subtle.deriveBits = derive;
  }
});
