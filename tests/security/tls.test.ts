/**
 * Items 21 and 22 of the hardening issue, through the real gateway process:
 * a TCP connection to an HTTPS listener (or to the broker's TLS listener)
 * that never sends a ClientHello is closed after `handshakeTimeout` and
 * counts against `maxPerIp` meanwhile;
 * a certificate reload serves the new certificate to new connections at
 * once, with 0 failed HTTPS requests across it while clients are parked
 * mid-handshake.
 */

import { join } from "node:path";
import mqtt from "mqtt";
import { assert, assertEquals, assertStringIncludes } from "../helpers/assert.ts";
import { freePort, startGateway } from "../helpers/gateway.ts";
import { selfSignedCertificate } from "../helpers/tls.ts";

/** Generous: the deadline under test is 1 s; this only bounds a broken run. */
const CLOSED_WITHIN = 15_000;

/** Whether the peer closes `conn` within {@link CLOSED_WITHIN}. */
async function closedByPeer(conn: Deno.Conn): Promise<boolean> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  const open = new Promise<"open">((resolve) =>
    timer = setTimeout(() => resolve("open"), CLOSED_WITHIN)
  );
  const read = conn.read(new Uint8Array(1024)).catch(() => null);
  const result = await Promise.race([read, open]);
  clearTimeout(timer);
  return result === null;
}

/** One HTTPS request on a new connection; its body, or the error's message. */
async function probe(port: number, caCerts: string[]): Promise<string> {
  try {
    const conn = await Deno.connectTls({ hostname: "localhost", port, caCerts });
    try {
      await conn.write(
        new TextEncoder().encode("GET / HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n"),
      );
      const text = new TextDecoder().decode(await new Response(conn.readable).arrayBuffer());
      return text.slice(text.indexOf("\r\n\r\n") + 4);
    } catch (error) {
      conn.close();
      throw error;
    }
  } catch (error) {
    return `failed: ${(error as Error).message}`;
  }
}

Deno.test("a connection that never sends a ClientHello is closed after handshakeTimeout and counts per IP", async () => {
  const pem = await selfSignedCertificate();
  await using gw = await startGateway({
    listeners: {
      secure: {
        type: "http",
        host: "127.0.0.1",
        port: 0,
        tls: { cert: "tls/cert.pem", key: "tls/key.pem" },
        guard: { handshakeTimeout: 1000, maxPerIp: 2 },
      },
    },
    routes: [{ target: { respond: { body: "secure hello" } } }],
  }, { files: { "tls/cert.pem": pem.cert, "tls/key.pem": pem.key } });
  const port = await gw.port("secure");
  const silent = await Promise.all(
    [0, 1, 2].map(() => Deno.connect({ hostname: "127.0.0.1", port })),
  );
  try {
    for (const conn of silent) {
      assert(await closedByPeer(conn), "a silent TLS connection is closed");
    }
    const metrics = await (await gw.admin("/metrics")).text();
    assertStringIncludes(
      metrics,
      'gateway_connections_refused_total{listener="secure",reason="ip_limit"} 1',
      "the third silent connection was over maxPerIp 2",
    );
    assertEquals(await probe(port, [pem.cert]), "secure hello", "a real client is served");
  } finally {
    for (const conn of silent) conn.close();
  }
});

Deno.test("the broker's TLS listener closes silent connections after handshakeTimeout, at most maxPerIp at once", async () => {
  const pem = await selfSignedCertificate();
  const port = freePort();
  await using _gw = await startGateway({
    mqtt: {
      listeners: {
        secure: {
          port,
          maxPerIp: 2,
          tls: { cert: "tls/cert.pem", key: "tls/key.pem", handshakeTimeout: 1000 },
        },
      },
      allowAnonymous: true,
    },
  }, { files: { "tls/cert.pem": pem.cert, "tls/key.pem": pem.key } });
  const silent = await Promise.all(
    [0, 1].map(() => Deno.connect({ hostname: "127.0.0.1", port })),
  );
  try {
    const third = await Deno.connect({ hostname: "127.0.0.1", port });
    assert(await closedByPeer(third), "a third handshake from the address is refused");
    third.close();
    for (const conn of silent) {
      assert(await closedByPeer(conn), "a silent TLS connection is closed");
    }
    const client = await mqtt.connectAsync(`mqtts://localhost:${port}`, {
      ca: pem.cert,
      reconnectPeriod: 0,
      connectTimeout: CLOSED_WITHIN,
    });
    assert(client.connected, "a real client connects once the silent ones are gone");
    await client.endAsync();
  } finally {
    for (const conn of silent) conn.close();
  }
});

Deno.test("a certificate reload: new connections get the new certificate at once, 0 failed requests", async () => {
  const [first, second] = [await selfSignedCertificate(), await selfSignedCertificate()];
  // A fixed port, as in production: a port-0 listener would be bound anew beside the old one.
  const port = freePort();
  const config = {
    listeners: {
      secure: {
        type: "http",
        host: "127.0.0.1",
        port,
        tls: { cert: "tls/cert.pem", key: "tls/key.pem" },
        drainTimeout: 3000,
      },
    },
    routes: [{ target: { respond: { body: "secure hello" } } }],
  };
  await using gw = await startGateway(config, {
    files: { "tls/cert.pem": first.cert, "tls/key.pem": first.key },
  });
  assertEquals(await probe(port, [first.cert]), "secure hello");
  assert((await probe(port, [second.cert])).startsWith("failed"), "the second is not served yet");

  // Clients parked mid-handshake: connected, no ClientHello.
  const parked = await Promise.all(
    Array.from({ length: 20 }, () => Deno.connect({ hostname: "127.0.0.1", port })),
  );
  const results: string[] = [];
  let probing = true;
  const prober = (async () => {
    while (probing) results.push(await probe(port, [first.cert, second.cert]));
  })();
  try {
    while (results.length < 5) await new Promise((r) => setTimeout(r, 10));
    for (const part of ["cert", "key"] as const) {
      const file = join(gw.dir, "tls", `${part}.pem`);
      await Deno.writeTextFile(`${file}.tmp`, second[part]);
      await Deno.rename(`${file}.tmp`, file);
    }
    const reload = await gw.admin("/reload", { method: "POST" });
    assertEquals(reload.status, 200, await reload.clone().text());
    await reload.body?.cancel();
    // Right after the reload, a client that trusts only the new certificate is served.
    assertEquals(await probe(port, [second.cert]), "secure hello", "the new certificate");
    assert((await probe(port, [first.cert])).startsWith("failed"), "the old one is gone");
    const after = results.length;
    while (results.length < after + 5) await new Promise((r) => setTimeout(r, 10));
  } finally {
    probing = false;
    await prober;
    for (const conn of parked) conn.close();
  }
  const failed = results.filter((result) => result !== "secure hello");
  assertEquals(
    failed.length,
    0,
    `${failed.length} of ${results.length} HTTPS requests failed, first: ${failed.slice(0, 3)}`,
  );
  assert(gw.lines.some((line) => line.includes("config reloaded")));
});
