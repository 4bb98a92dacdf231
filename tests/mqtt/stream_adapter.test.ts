import { Buffer } from "node:buffer";
import { Duplex } from "node:stream";
import { assertEquals } from "../helpers/assert.ts";
import { adaptStream } from "../../src/mqtt/stream_adapter.ts";

/** A Duplex that records each batch of writes it is handed. */
function recorder(): { stream: Duplex; batches: string[][] } {
  const batches: string[][] = [];
  const stream = new Duplex({
    read() {},
    write(chunk: Buffer, _encoding, callback) {
      batches.push([chunk.toString()]);
      callback();
    },
    writev(chunks, callback) {
      batches.push(chunks.map(({ chunk }) => String(chunk)));
      callback();
    },
  });
  return { stream, batches };
}

Deno.test("adaptStream: writes of one loop turn leave together, the next turn's separately", async () => {
  const { stream, batches } = recorder();
  adaptStream(stream);
  stream.write("a");
  await Promise.resolve();
  stream.write("b");
  await new Promise((resolve) => setImmediate(resolve));
  stream.write("c");
  await new Promise((resolve) => setImmediate(resolve));
  assertEquals(batches, [["a", "b"], ["c"]]);
});

Deno.test("adaptStream: read(null) returns everything buffered, not just the first chunk", () => {
  const { stream } = recorder();
  adaptStream(stream);
  stream.push(Buffer.from([1, 2]));
  stream.push(Buffer.from([3]));
  stream.push(Buffer.from([4, 5]));
  // aedes's call: `read(null)`, which the Node typings do not allow.
  const read = stream.read.bind(stream) as (size: number | null) => Buffer | null;
  assertEquals([...read(null)!], [1, 2, 3, 4, 5]);
  assertEquals(read(null), null);
});
