/**
 * The output gate behind the broker's acknowledgements: what is written
 * after a hold leaves only once the hold settles, in order; a failed hold
 * destroys the stream with what it held.
 */

import { PassThrough } from "node:stream";
import { assertEquals } from "../helpers/assert.ts";
import { AckGate } from "../../src/mqtt/ack_gate.ts";

/** Lets queued promise callbacks and stream events run. */
const settle = () => new Promise((resolve) => setTimeout(resolve, 0));

Deno.test("ack gate: each write waits for the holds taken before it", async () => {
  const stream = new PassThrough();
  const out: string[] = [];
  stream.on("data", (chunk) => out.push(String(chunk)));
  const gate = new AckGate(stream);
  stream.write("0");
  const first = Promise.withResolvers<void>();
  const second = Promise.withResolvers<void>();
  gate.holdUntil(first.promise);
  stream.write("1");
  gate.holdUntil(second.promise);
  stream.write("2");
  await settle();
  assertEquals(out.join(""), "0");
  first.resolve();
  await settle();
  assertEquals(out.join(""), "01");
  second.resolve();
  await settle();
  assertEquals(out.join(""), "012");
  stream.write("3");
  await settle();
  assertEquals(out.join(""), "0123");
});

Deno.test("ack gate: a hold that fails destroys the stream without writing what it held", async () => {
  const stream = new PassThrough();
  const out: string[] = [];
  stream.on("data", (chunk) => out.push(String(chunk)));
  stream.on("error", () => {});
  const gate = new AckGate(stream);
  const failed = Promise.withResolvers<void>();
  gate.holdUntil(failed.promise);
  stream.write("puback");
  failed.reject(new Error("the KV transaction was not committed"));
  await settle();
  assertEquals(stream.destroyed, true);
  assertEquals(out, []);
});
