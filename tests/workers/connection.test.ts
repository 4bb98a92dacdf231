import { join } from "node:path";
import { WorkerConnection } from "../../src/workers/connection.ts";
import { encodeFrame, FrameDecoder, type FrameMessage } from "../../src/workers/frame.ts";
import { assertEquals } from "../helpers/assert.ts";

/** A worker connection and the socket of the "worker" at its other end. */
async function connected(
  maxFrame: number,
): Promise<{ connection: WorkerConnection; worker: Deno.UnixConn } & AsyncDisposable> {
  const dir = await Deno.makeTempDir({ prefix: "workers-connection-" });
  const listener = Deno.listen({ transport: "unix", path: join(dir, "workers.sock") });
  const worker = await Deno.connect({ transport: "unix", path: listener.addr.path });
  const connection = new WorkerConnection(await listener.accept(), maxFrame);
  listener.close();
  return {
    connection,
    worker,
    async [Symbol.asyncDispose]() {
      connection.close("test over");
      try {
        worker.close();
      } catch { /* closed by the test */ }
      await Deno.remove(dir, { recursive: true });
    },
  };
}

/** Everything the worker end reads until the gateway closes the connection. */
async function readAll(worker: Deno.UnixConn): Promise<FrameMessage[]> {
  const decoder = new FrameDecoder(1024);
  const messages: FrameMessage[] = [];
  const buffer = new Uint8Array(4096);
  for (let n; (n = await worker.read(buffer)) !== null;) {
    messages.push(...decoder.push(buffer.subarray(0, n)).map((frame) => frame.message));
  }
  return messages;
}

Deno.test("messages reach the handler in order; a failing one is named by its frame's offset", async () => {
  await using pair = await connected(1024);
  const received: string[] = [];
  pair.connection.handler = (message) => {
    if (message.type === "launch") throw new Error(`unknown message type "launch"`);
    received.push(message.type);
  };
  const first = encodeFrame({ type: "ping", id: 1 });
  const second = encodeFrame({ type: "pong", id: 1 });
  await pair.worker.write(new Uint8Array([...first, ...second]));
  await pair.worker.write(encodeFrame({ type: "launch" }));
  const closed = await pair.connection.closed;
  assertEquals(received, ["ping", "pong"]);
  assertEquals(closed, {
    reason: `frame at byte offset ${first.length + second.length}: unknown message type "launch"`,
    byPeer: false,
  });
  assertEquals(pair.connection.open, false);
});

Deno.test("a frame over the maximum closes the connection with its offset", async () => {
  await using pair = await connected(64);
  const first = encodeFrame({ type: "ping", id: 1 });
  pair.connection.maxFrame = 16;
  await pair.worker.write(new Uint8Array([...first]));
  const { reason } = await pair.connection.closed;
  assertEquals(
    reason,
    `frame at byte offset 0: length field announces a frame of ${
      first.length - 4
    } bytes, over the maximum of 16`,
  );
});

Deno.test("the worker closing in the middle of a frame is told apart from a clean close", async () => {
  await using pair = await connected(1024);
  await pair.worker.write(encodeFrame({ type: "ping", id: 1 }).subarray(0, 6));
  pair.worker.close();
  assertEquals(await pair.connection.closed, {
    reason: "the worker closed the connection in the middle of a frame",
    byPeer: true,
  });
});

Deno.test("end writes what is queued, in order, before it closes", async () => {
  await using pair = await connected(1024);
  const reading = readAll(pair.worker);
  for (let id = 1; id <= 50; id++) pair.connection.send({ type: "ping", id });
  pair.connection.send({ type: "error", message: "bye" });
  pair.connection.end("refused");
  const messages = await reading;
  assertEquals(messages.length, 51);
  assertEquals(messages.slice(0, 3), [
    { type: "ping", id: 1 },
    { type: "ping", id: 2 },
    { type: "ping", id: 3 },
  ]);
  assertEquals(messages.at(-1), { type: "error", message: "bye" });
  assertEquals((await pair.connection.closed).reason, "refused");
  assertEquals(pair.connection.buffered, 0);
});
