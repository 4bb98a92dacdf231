/**
 * The commit guard: a participant whose commit throws during a reload
 * leaves the old config serving, and the listeners the new config bound are
 * closed again (none leaks). Runs a real Gateway in this process with one
 * fault-injecting module added to the built-in ones.
 */

import { join } from "node:path";
import { Gateway } from "../../src/gateway.ts";
import type { GatewayModule } from "../../src/module.ts";
import { assert, assertEquals, assertStringIncludes } from "../helpers/assert.ts";

/** A module whose commits throw while `armed`; counts what the gateway asked of it. */
function faultyModule() {
  const calls = { prepared: 0, committed: 0, aborted: 0 };
  let armed = false;
  const module: GatewayModule = {
    name: "faulty",
    sections: [],
    prepare: () => {
      calls.prepared++;
      return Promise.resolve({
        commit() {
          if (armed) throw new Error("injected commit failure");
          calls.committed++;
        },
        abort() {
          calls.aborted++;
        },
      });
    },
    stop: () => Promise.resolve(),
    status: () => calls,
  };
  return { module, calls, arm: (on: boolean) => armed = on };
}

function config(body: string, extraSocket?: string) {
  return {
    admin: { enabled: false },
    log: { level: "error", access: false },
    listeners: {
      web: { type: "http", port: 0 },
      ...(extraSocket ? { extra: { type: "unix", path: extraSocket } } : {}),
    },
    routes: [{ listeners: ["web"], target: { respond: { body } } }],
  };
}

async function canConnect(path: string): Promise<boolean> {
  try {
    const conn = await Deno.connect({ transport: "unix", path });
    conn.close();
    return true;
  } catch {
    return false;
  }
}

Deno.test("a throwing commit leaves the old config serving and no new listener bound", async () => {
  const dir = await Deno.makeTempDir({ prefix: "gateway-commit-" });
  const file = join(dir, "config.json");
  const socket = join(dir, "extra.sock");
  const faulty = faultyModule();
  await Deno.writeTextFile(file, JSON.stringify(config("v1")));
  const gateway = new Gateway(file, { modules: [faulty.module] });
  try {
    await gateway.start();
    const listeners = gateway.status().listeners as { name: string; url?: string }[];
    const url = listeners.find((l) => l.name === "web")!.url!;
    const get = async () => await (await fetch(url)).text();
    assertEquals(await get(), "v1");

    faulty.arm(true);
    await Deno.writeTextFile(file, JSON.stringify(config("v2", socket)));
    const refused = await gateway.reload().then(() => undefined, (error: Error) => error);
    assertStringIncludes(String(refused?.message), "injected commit failure");
    assertEquals(await get(), "v1", "the old route table still serves");
    assert(!await canConnect(socket), "the listener the failed reload bound is closed");
    assertEquals(
      (gateway.status().listeners as { name: string }[]).map((l) => l.name),
      ["web"],
    );
    assert(faulty.calls.aborted === 0, "a participant whose commit threw is not aborted too");

    faulty.arm(false);
    await gateway.reload();
    assertEquals(await get(), "v2", "a good reload after the failure applies");
    assert(await canConnect(socket), "and binds the new listener");
  } finally {
    await gateway.stop();
    await Deno.remove(dir, { recursive: true });
  }
});
