/**
 * The session store's write timing: queuing a message resolves at once (so
 * that publishes are handed over in order), and `durable()` resolves once
 * every write so far is on disk, where a second handle on the file sees it.
 */

import { Buffer } from "node:buffer";
import { join } from "node:path";
import { assertEquals } from "../helpers/assert.ts";
import { MqttSessionsConfig } from "../../src/mqtt/config.ts";
import { KvPersistence, type SessionPacket } from "../../src/mqtt/persistence.ts";
import { StorageLimits, StorageRefusals } from "../../src/mqtt/storage_limits.ts";

const publish = (i: number): SessionPacket => ({
  cmd: "publish",
  topic: "t",
  payload: Buffer.from(String(i)),
  qos: 1,
  retain: false,
  dup: false,
  brokerId: "b",
  brokerCounter: i + 1,
});

Deno.test("persistence: queuing resolves before the commit; durable() after it, with every write before it", async () => {
  const dir = await Deno.makeTempDir({ prefix: "mqtt-persistence-test-" });
  const path = join(dir, "sessions.sqlite3");
  const kv = await Deno.openKv(path);
  const other = await Deno.openKv(path);
  const limits = new StorageLimits(
    { maxSubscriptions: 100, anonymous: true },
    new StorageRefusals(),
  );
  const persistence = new KvPersistence(kv, MqttSessionsConfig.parse({}), limits);
  try {
    await persistence.setup({ id: "b", counter: 0, clients: {} });
    const stored = async () => (await Array.fromAsync(other.list({ prefix: ["o"] }))).length;
    const subscribers = [{ clientId: "p1" }, { clientId: "p2" }];
    await persistence.outgoingEnqueueCombi(subscribers, publish(0));
    let committed = false;
    const durable = persistence.durable().then(() => committed = true);
    for (let i = 1; i < 100; i++) {
      await persistence.outgoingEnqueueCombi(subscribers, publish(i));
    }
    assertEquals(committed, false);
    await durable;
    await persistence.durable();
    assertEquals(await stored(), 200);
    // Writes made while a commit runs are covered by the next durable().
    await persistence.outgoingEnqueueCombi(subscribers, publish(100));
    const first = persistence.durable();
    await persistence.outgoingEnqueueCombi(subscribers, publish(101));
    await Promise.all([first, persistence.durable()]);
    assertEquals(await stored(), 204);
    await persistence.durable(); // nothing pending: resolves at once
  } finally {
    other.close();
    await persistence.close();
    await Deno.remove(dir, { recursive: true });
  }
});
