import { assert, assertEquals, assertStringIncludes } from "../helpers/assert.ts";
import { Bus } from "../../src/bus/bus.ts";
import { UnixListenerConfig } from "../../src/listeners/config.ts";
import { ConnectionManager } from "../../src/connections/manager.ts";
import { UnixFramedListener } from "../../src/listeners/unix_framed.ts";
import { MetricsRegistry } from "../../src/observability/metrics.ts";

const encoder = new TextEncoder();

/** A framed Unix listener on a socket in a fresh temporary directory, on a real bus and manager. */
function setup(config: Record<string, unknown> = {}) {
  const dir = Deno.makeTempDirSync({ prefix: "unix_framed_test_" });
  const path = `${dir}/gateway.sock`;
  const metrics = new MetricsRegistry();
  const bus = new Bus(metrics);
  const connections = new ConnectionManager(bus, metrics, { maxOpenFiles: 100_000 });
  const listener = new UnixFramedListener(
    "local",
    UnixListenerConfig.parse({ type: "unix", path, protocol: "framed", ...config }),
    { bus, connections },
  );
  const cleanup = async () => {
    await listener.stop();
    connections.stop();
    await Deno.remove(dir, { recursive: true });
  };
  return { bus, path, listener, cleanup };
}

/** Expects `promise` to reject with an error whose message includes `part`. */
async function rejectsWith(promise: Promise<unknown>, part: string): Promise<void> {
  try {
    await promise;
  } catch (error) {
    assertStringIncludes((error as Error).message, part);
    return;
  }
  throw new Error(`expected an error including ${part}`);
}

Deno.test("framed messages round-trip over a Unix socket with the configured mode", async () => {
  const { bus, path, listener, cleanup } = setup({
    mode: "600",
    framing: { type: "length", bytes: 4 },
  });
  try {
    await listener.start();
    assertEquals((await Deno.lstat(path)).mode! & 0o777, 0o600);
    const topics: string[] = [];
    bus.subscribe("unix/local/+", (message) => {
      topics.push(message.topic);
      message.reply?.(encoder.encode(`got ${message.payload.length}`));
    }, { owner: "test" });
    const client = await Deno.connect({ transport: "unix", path });
    try {
      await client.write(new Uint8Array([0, 0, 0, 3, 1, 2, 3]));
      const reply = new Uint8Array(9);
      for (let at = 0; at < reply.length;) {
        const n = await client.read(reply.subarray(at));
        assert(n !== null, "the reply arrives before the stream ends");
        at += n;
      }
      assertEquals(reply, new Uint8Array([0, 0, 0, 5, ...encoder.encode("got 3")]));
      assertEquals(topics.length, 1);
    } finally {
      client.close();
    }
  } finally {
    await cleanup();
  }
  await rejectsWith(Deno.lstat(path), "No such file");
});

Deno.test("a stale socket file is removed at start", async () => {
  const { path, listener, cleanup } = setup();
  try {
    // A process killed while listening leaves its socket file behind.
    const owner = new Deno.Command(Deno.execPath(), {
      args: [
        "eval",
        `Deno.listen({ transport: "unix", path: ${JSON.stringify(path)} }); console.log("ready");` +
        "setTimeout(() => {}, 60_000);",
      ],
      stdout: "piped",
    }).spawn();
    const ready = await owner.stdout.pipeThrough(new TextDecoderStream()).getReader().read();
    assertEquals(ready.value?.trim(), "ready");
    owner.kill("SIGKILL");
    await owner.status;
    await owner.stdout.cancel().catch(() => {});
    assert((await Deno.lstat(path)).isSocket, "the stale socket file is left behind");
    await listener.start();
    const client = await Deno.connect({ transport: "unix", path });
    client.close();
  } finally {
    await cleanup();
  }
});

Deno.test("a socket another process answers on, or a file that is no socket, is refused", async () => {
  const { path, listener, cleanup } = setup();
  try {
    const live = Deno.listen({ transport: "unix", path });
    try {
      await rejectsWith(
        listener.start(),
        `listener "local": another process is listening on ${path}`,
      );
    } finally {
      live.close();
    }
    await Deno.writeTextFile(path, "not a socket");
    await rejectsWith(listener.start(), "exists and is not a socket");
    assertEquals(await Deno.readTextFile(path), "not a socket");
  } finally {
    await cleanup();
  }
});
