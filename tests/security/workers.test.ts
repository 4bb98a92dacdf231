/**
 * Issue 12, item 5: the workers socket cannot be taken over. A local process
 * that connects before the real instance and says its `hello` (right worker
 * name and instance, no or a wrong secret) is refused, and the real instance
 * still says hello and serves its calls; the socket is in a 0700 directory
 * and has mode 0600.
 */

import { join } from "node:path";
import { assert, assertEquals, assertMatch } from "../helpers/assert.ts";
import { startGateway } from "../helpers/gateway.ts";
import { EXAMPLES } from "../workers/harness.ts";

/** Sends one length-prefixed JSON frame and reads the answer (null when the gateway closed). */
async function exchange(
  conn: Deno.Conn,
  frame: Record<string, unknown>,
): Promise<Record<string, unknown> | null> {
  const body = new TextEncoder().encode(JSON.stringify(frame));
  const header = new Uint8Array(4);
  new DataView(header.buffer).setUint32(0, body.length);
  await conn.write(header);
  await conn.write(body);
  const received: number[] = [];
  const chunk = new Uint8Array(4096);
  while (received.length < 4 || received.length < 4 + lengthOf(received)) {
    const n = await conn.read(chunk);
    if (n === null) return null;
    received.push(...chunk.subarray(0, n));
  }
  return JSON.parse(new TextDecoder().decode(new Uint8Array(received.slice(4))));
}

function lengthOf(bytes: number[]): number {
  return new DataView(new Uint8Array(bytes.slice(0, 4)).buffer).getUint32(0);
}

async function waitFor(what: string, check: () => Promise<boolean>): Promise<void> {
  for (let i = 0; i < 600; i++) {
    if (await check().catch(() => false)) return;
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
  throw new Error(`timed out waiting for ${what}`);
}

Deno.test("a forged hello without the instance's secret is refused; the real instance serves", async () => {
  const dir = await Deno.makeTempDir({ prefix: "gateway-security-workers-" });
  const go = join(dir, "go");
  const dataDir = join(dir, "data");
  // The real instance waits for the test before it connects, so the rogue comes first.
  const real = `while [ ! -e '${go}' ]; do sleep 0.05; done; exec ${EXAMPLES.python.join(" ")}`;
  await using gw = await startGateway({
    storage: { dataDir },
    listeners: { web: { type: "http", port: 0 } },
    routes: [{ match: { path: "/hello" }, target: { function: { name: "worker:python.hello" } } }],
    workers: [{ name: "python", command: ["sh", "-c", real] }],
  }, { noWait: true });
  const socket = join(dataDir, "sockets", "workers.sock");
  await waitFor("the workers socket", async () => (await Deno.lstat(socket)).isSocket === true);
  assertEquals((await Deno.stat(join(dataDir, "sockets"))).mode! & 0o777, 0o700);
  assertEquals((await Deno.stat(socket)).mode! & 0o777, 0o600);

  const forged = {
    type: "hello",
    protocol: 2,
    worker: "python",
    instance: 0,
    pid: 1,
    functions: ["hello"],
    concurrency: 1,
  };
  for (const secret of [undefined, "", "0".repeat(64)]) {
    using rogue = await Deno.connect({ transport: "unix", path: socket });
    const answer = await exchange(rogue, { ...forged, secret });
    assertEquals(answer?.type, "error", `secret ${secret}: ${JSON.stringify(answer)}`);
    assertMatch(String(answer?.message), /secret/);
  }
  await gw.waitForLine(/workers socket: refused a connection/);

  await Deno.writeTextFile(go, "");
  await waitFor("readiness", async () => {
    const ready = await gw.admin("/readyz");
    await ready.body?.cancel();
    return ready.ok;
  });
  const response = await fetch(`http://127.0.0.1:${await gw.port("web")}/hello?name=Ada`);
  assertEquals(response.status, 200);
  const body = await response.json();
  assertEquals(body.hello, "Ada");
  const [instance] = (await (await gw.admin("/workers/python")).json()).instances;
  assertMatch(body.from, new RegExp(`pid ${instance.pid}$`));
  assert(instance.pid !== 1);
  await Deno.remove(dir, { recursive: true });
});
