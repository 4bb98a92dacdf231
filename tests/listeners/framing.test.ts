import { assert, assertEquals, assertStringIncludes } from "../helpers/assert.ts";
import { FramingConfig } from "../../src/listeners/config.ts";
import { createFrameCodec, type FrameDecoder, FrameError } from "../../src/listeners/framing.ts";
import { seededRandom } from "../helpers/random.ts";

const text = (value: string) => new TextEncoder().encode(value);
const framing = (input: Record<string, unknown>) => FramingConfig.parse(input);

function concat(parts: Uint8Array[]): Uint8Array {
  const out = new Uint8Array(parts.reduce((sum, part) => sum + part.length, 0));
  let at = 0;
  for (const part of parts) {
    out.set(part, at);
    at += part.length;
  }
  return out;
}

/** What a decoder makes of `stream` pushed in `chunks`: its frames, and the FrameError if one came. */
function decodeChunks(
  decoder: FrameDecoder,
  chunks: Uint8Array[],
): { frames: Uint8Array[]; error?: FrameError } {
  const frames: Uint8Array[] = [];
  try {
    for (const chunk of chunks) frames.push(...decoder.push(chunk));
  } catch (error) {
    if (!(error instanceof FrameError)) throw error;
    return { frames: [...frames, ...error.frames], error };
  }
  return { frames };
}

/** One config per framing mode and variant, with payloads it can carry. */
const CASES: { name: string; config: FramingConfig; payloads: Uint8Array[] }[] = [
  {
    name: "line",
    config: framing({ type: "line" }),
    payloads: [text("hello"), text(""), text("wörld"), text("a\rb")],
  },
  {
    name: "line with \\r\\n delimiter",
    config: framing({ type: "line", delimiter: "\r\n" }),
    payloads: [text("one"), text("two\nlines"), text("")],
  },
  {
    name: "delimiter hex:0d0a",
    config: framing({ type: "delimiter", delimiter: "hex:0d0a" }),
    payloads: [text("a\rb"), text("c\nd"), text("")],
  },
  {
    name: "delimiter ||",
    config: framing({ type: "delimiter", delimiter: "||" }),
    payloads: [text("x|y"), text("|z"), text("")],
  },
  {
    name: "length 2 big",
    config: framing({ type: "length" }),
    payloads: [text("abc"), text(""), new Uint8Array(300).fill(7)],
  },
  {
    name: "length 4 little, header 3, length includes header",
    config: framing({
      type: "length",
      bytes: 4,
      endian: "little",
      headerOffset: 3,
      lengthIncludesHeader: true,
    }),
    payloads: [text("HDRbody"), text("HDR"), text("xyz12345")],
  },
  {
    name: "length 1",
    config: framing({ type: "length", bytes: 1 }),
    payloads: [text("a"), new Uint8Array(255).fill(1)],
  },
  {
    name: "fixed 4",
    config: framing({ type: "fixed", size: 4 }),
    payloads: [text("abcd"), text("\n\n\n\n"), new Uint8Array(4)],
  },
];

Deno.test("each framing round-trips, coalesced in one read and split at every boundary", () => {
  for (const { name, config, payloads } of CASES) {
    const codec = createFrameCodec(config);
    const stream = concat(payloads.map((payload) => codec.encode(payload)));
    assertEquals(decodeChunks(codec.decoder(), [stream]).frames, payloads, `${name}, one read`);
    for (let split = 0; split <= stream.length; split++) {
      const chunks = [stream.subarray(0, split), stream.subarray(split)];
      assertEquals(
        decodeChunks(codec.decoder(), chunks).frames,
        payloads,
        `${name}, split at ${split}`,
      );
    }
    const bytes = [...stream].map((byte) => new Uint8Array([byte]));
    assertEquals(decodeChunks(codec.decoder(), bytes).frames, payloads, `${name}, byte by byte`);
  }
});

Deno.test("raw framing yields chunks as they come, cut at maxLength", () => {
  const codec = createFrameCodec(framing({ type: "raw", maxLength: 4 }));
  const decoder = codec.decoder();
  assertEquals(decoder.push(text("abc")), [text("abc")]);
  assertEquals(decoder.push(text("0123456789")), [text("0123"), text("4567"), text("89")]);
  assertEquals(decoder.push(new Uint8Array()), []);
  assertEquals(codec.encode(text("anything")), text("anything"));
});

Deno.test("line framing strips \\r before \\n and frames replies with \\n", () => {
  const codec = createFrameCodec(framing({ type: "line" }));
  assertEquals(codec.decoder().push(text("a\r\nb\n\r\n")), [text("a"), text("b"), text("")]);
  assertEquals(codec.encode(text("ok")), text("ok\n"));
});

Deno.test("frames stay intact: the decoder never writes to memory it returned", () => {
  const decoder = createFrameCodec(framing({ type: "line" })).decoder();
  const frames = [
    ...decoder.push(text("ab")),
    ...decoder.push(text("c\nx")),
    ...decoder.push(text("yz\n1")),
    ...decoder.push(text("23\n")),
  ];
  assertEquals(frames, [text("abc"), text("xyz"), text("123")]);
});

Deno.test("length framing keeps the header and drops the length field", () => {
  const codec = createFrameCodec(framing({ type: "length", headerOffset: 2, bytes: 2 }));
  // Header "TX", length 3 (big-endian), body "abc".
  const wire = new Uint8Array([0x54, 0x58, 0, 3, 0x61, 0x62, 0x63]);
  assertEquals(codec.decoder().push(wire), [text("TXabc")]);
  assertEquals(codec.encode(text("TXabc")), wire);
});

Deno.test("a line over maxLength is a FrameError at its start + maxLength, however it is split", () => {
  const codec = createFrameCodec(framing({ type: "line", maxLength: 10 }));
  const stream = text(`ok\n${"x".repeat(11)}\nmore\n`);
  for (let split = 0; split <= stream.length; split++) {
    const { frames, error } = decodeChunks(codec.decoder(), [
      stream.subarray(0, split),
      stream.subarray(split),
    ]);
    assert(error, `split at ${split}: expected a FrameError`);
    assertEquals(error.offset, 13, `split at ${split}`);
    assertStringIncludes(error.message, "maximum of 10 bytes");
    assertEquals(frames.length <= 1, true);
  }
  // A line that never ends is caught once it cannot fit any more.
  const endless = decodeChunks(codec.decoder(), [text("ok\n"), text("y".repeat(50))]);
  assertEquals(endless.frames, [text("ok")]);
  assertEquals(endless.error?.offset, 13);
  // Exactly maxLength, with or without \r, is fine.
  const fits = decodeChunks(codec.decoder(), [text(`${"z".repeat(10)}\r\n${"z".repeat(10)}\n`)]);
  assertEquals(fits, { frames: [text("z".repeat(10)), text("z".repeat(10))] });
});

Deno.test("a multi-byte delimiter frame over maxLength fails at the same offset split or not", () => {
  const codec = createFrameCodec(
    framing({ type: "delimiter", delimiter: "hex:0d0a", maxLength: 4 }),
  );
  const stream = text("abcd\r\nabcde\r\n");
  for (let split = 0; split <= stream.length; split++) {
    const { frames, error } = decodeChunks(codec.decoder(), [
      stream.subarray(0, split),
      stream.subarray(split),
    ]);
    assertEquals(frames, [text("abcd")], `split at ${split}`);
    assertEquals(error?.offset, 10, `split at ${split}`);
  }
});

Deno.test("length framing rejects a length over maxLength and one smaller than its header", () => {
  const codec = createFrameCodec(framing({ type: "length", bytes: 2, maxLength: 100 }));
  const tooLong = decodeChunks(codec.decoder(), [new Uint8Array([0, 1, 0x61, 0, 101])]);
  assertEquals(tooLong.frames, [text("a")]);
  assertEquals(tooLong.error?.offset, 3);
  assertStringIncludes(tooLong.error!.message, "101 bytes, over the maximum of 100");

  const counted = createFrameCodec(
    framing({ type: "length", bytes: 2, headerOffset: 1, lengthIncludesHeader: true }),
  );
  const short = decodeChunks(counted.decoder(), [new Uint8Array([9, 0, 2])]);
  assertEquals(short.error?.offset, 1);
  assertStringIncludes(short.error!.message, "fewer than the 3 bytes");
});

Deno.test("a decoder's maxLength starts at the config's and can change between pushes", () => {
  const length = createFrameCodec(framing({ type: "length", bytes: 2, maxLength: 4 })).decoder();
  assertEquals(length.maxLength, 4);
  assertEquals(length.push(new Uint8Array([0, 2, 0x61, 0x62, 0])), [text("ab")]);
  // Checked when the length field is complete: against the limit at that time.
  length.maxLength = 6;
  assertEquals(length.push(new Uint8Array([6, ...text("abcdef")])), [text("abcdef")]);
  length.maxLength = 1;
  const refused = decodeChunks(length, [new Uint8Array([0, 2, 0x61, 0x62])]);
  assertEquals(refused.error?.offset, 12);
  assertStringIncludes(refused.error!.message, "2 bytes, over the maximum of 1");

  const line = createFrameCodec(framing({ type: "line", maxLength: 3 })).decoder();
  line.maxLength = 5;
  assertEquals(line.push(text("abcde\n")), [text("abcde")]);
  assertEquals(decodeChunks(line, [text("abcdefg")]).error?.offset, 11);
  const fixed = createFrameCodec(framing({ type: "fixed", size: 3 })).decoder();
  assertEquals(fixed.maxLength, 3);
  const raw = createFrameCodec(framing({ type: "raw", maxLength: 4 })).decoder();
  raw.maxLength = 2;
  assertEquals(raw.push(text("abcde")), [text("ab"), text("cd"), text("e")]);
});

Deno.test("encode refuses payloads its framing cannot carry", () => {
  const throwsRange = (encode: () => unknown, part: string) => {
    try {
      encode();
    } catch (error) {
      assert(error instanceof RangeError, `expected a RangeError, got ${error}`);
      assertStringIncludes(error.message, part);
      return;
    }
    throw new Error(`expected a RangeError including ${part}`);
  };
  throwsRange(() => createFrameCodec(framing({ type: "line" })).encode(text("a\nb")), "delimiter");
  throwsRange(
    () => createFrameCodec(framing({ type: "fixed", size: 3 })).encode(text("ab")),
    "3 bytes",
  );
  throwsRange(
    () => createFrameCodec(framing({ type: "length", bytes: 1 })).encode(new Uint8Array(256)),
    "does not fit",
  );
  throwsRange(
    () => createFrameCodec(framing({ type: "length", headerOffset: 4 })).encode(text("ab")),
    "4-byte header",
  );
});

Deno.test("an invalid hex delimiter is refused when the codec is made", () => {
  try {
    createFrameCodec(framing({ type: "delimiter", delimiter: "hex:0g" }));
  } catch (error) {
    assertStringIncludes((error as Error).message, 'invalid delimiter "hex:0g"');
    return;
  }
  throw new Error("expected an error");
});

// ---------------------------------------------------------------------------------------------
// Fuzzing

const FUZZ_STREAMS = 100_000;

/** Fuzzed framings use small limits so that oversized frames come up often. */
const FUZZ_CASES: { name: string; config: FramingConfig }[] = [
  { name: "line", config: framing({ type: "line", maxLength: 64 }) },
  {
    name: "delimiter",
    config: framing({ type: "delimiter", delimiter: "hex:0d0a", maxLength: 64 }),
  },
  { name: "length 2 big", config: framing({ type: "length", maxLength: 64 }) },
  {
    name: "length 4 little, header 2, includes header",
    config: framing({
      type: "length",
      bytes: 4,
      endian: "little",
      headerOffset: 2,
      lengthIncludesHeader: true,
      maxLength: 64,
    }),
  },
  { name: "length 1, header 1", config: framing({ type: "length", bytes: 1, headerOffset: 1 }) },
  { name: "fixed", config: framing({ type: "fixed", size: 5 }) },
  { name: "raw", config: framing({ type: "raw", maxLength: 16 }) },
];

/** A payload the framing can carry. */
function validPayload(config: FramingConfig, random: () => number): Uint8Array {
  const bytes = (length: number) =>
    Uint8Array.from({ length }, () => [0x0a, 0x0d, 0][Math.floor(random() * 6)] ?? random() * 256);
  switch (config.type) {
    case "fixed":
      return bytes(config.size);
    case "length":
      return bytes(config.headerOffset + Math.floor(random() * (65 - config.headerOffset)));
    default: {
      const payload = bytes(Math.floor(random() * 65));
      if (config.type === "raw") return payload;
      // Without a delimiter byte, a payload cannot contain the delimiter nor end in \r.
      return payload.filter((byte) => byte !== 0x0a && byte !== 0x0d);
    }
  }
}

/** `stream` with random bytes flipped, inserted, removed, or the end cut off. */
function mutate(stream: Uint8Array, random: () => number): Uint8Array {
  const bytes = [...stream];
  const edits = 1 + Math.floor(random() * 4);
  for (let i = 0; i < edits; i++) {
    const at = Math.floor(random() * (bytes.length + 1));
    const kind = random();
    if (kind < 0.4) bytes[at] = Math.floor(random() * 256);
    else if (kind < 0.6) bytes.splice(at, 0, Math.floor(random() * 256));
    else if (kind < 0.8) bytes.splice(at, 1);
    else bytes.length = at;
  }
  return Uint8Array.from(bytes);
}

/** `stream` cut at random points into chunks (empty ones included). */
function splitRandomly(stream: Uint8Array, random: () => number): Uint8Array[] {
  const chunks: Uint8Array[] = [];
  let at = 0;
  while (at < stream.length) {
    const size = Math.floor(random() * Math.min(stream.length - at + 1, 40));
    chunks.push(stream.subarray(at, at + size));
    at += size;
  }
  return chunks;
}

function sameFrames(a: Uint8Array[], b: Uint8Array[]): boolean {
  return a.length === b.length &&
    a.every((frame, i) => frame.length === b[i].length && frame.every((x, j) => x === b[i][j]));
}

for (const { name, config } of FUZZ_CASES) {
  Deno.test(`fuzz: ${name} decoder on random, valid and mutated streams`, () => {
    const random = seededRandom(0x5eed ^ name.length);
    const codec = createFrameCodec(config);
    let streams = 0;
    let errors = 0;
    for (; streams < FUZZ_STREAMS; streams++) {
      const kind = random();
      let stream: Uint8Array;
      let payloads: Uint8Array[] | undefined;
      if (kind < 0.25) {
        stream = Uint8Array.from({ length: Math.floor(random() * 200) }, () => random() * 256);
      } else {
        payloads = Array.from(
          { length: Math.floor(random() * 6) },
          () => validPayload(config, random),
        );
        stream = concat(payloads.map((payload) => codec.encode(payload)));
        if (kind < 0.6) {
          stream = mutate(stream, random);
          payloads = undefined;
        }
      }
      const whole = decodeChunks(codec.decoder(), [stream]);
      const split = decodeChunks(codec.decoder(), splitRandomly(stream, random));
      if (whole.error) errors++;
      // Raw framing keeps no boundaries: only its bytes, and its frame sizes, count.
      const comparable = (frames: Uint8Array[]) =>
        config.type === "raw" ? [concat(frames)] : frames;
      if (config.type === "raw") {
        assert(
          split.frames.every((frame) => frame.length <= config.maxLength),
          "raw frame too long",
        );
      }
      if (
        payloads && (whole.error || !sameFrames(comparable(whole.frames), comparable(payloads)))
      ) {
        assertEquals(whole, { frames: payloads }, `stream ${streams} does not round-trip`);
      }
      if (
        !sameFrames(comparable(whole.frames), comparable(split.frames)) ||
        whole.error?.offset !== split.error?.offset
      ) {
        assertEquals(split, whole, `stream ${streams} decodes differently when split`);
      }
    }
    console.log(`  ${name}: ${streams} streams, ${errors} rejected with a FrameError`);
  });
}
