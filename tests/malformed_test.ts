// The malformed corpus: framing errors end the stream with a stable code;
// bad payloads are delivered flagged invalid with a stable code.
import { test } from "node:test";
import assert from "node:assert/strict";
import {
  ChunkDeframer,
  decodeMessage,
  MessageAssembler,
  type PayloadOptions,
  VdagentProtocolError,
  type VdagentProtocolErrorCode,
} from "../mod.ts";
import { ChunkReader } from "../src/wire/_chunk_reader.ts";
import { MessageReader } from "../src/wire/_message_reader.ts";
import { chunk, collect, concat, message, u32s } from "./_helpers.ts";

interface FramingCase {
  name: string;
  wire: Uint8Array;
  code: VdagentProtocolErrorCode;
  offset: number;
  port?: number;
  type?: number;
}

const ok = chunk(1, message(9, u32s(0))); // a valid 32-byte release, to shift offsets
const framing: FramingCase[] = [
  {
    name: "chunk size 0xFFFFFFFF",
    wire: u32s(1, 0xffff_ffff),
    code: "CHUNK_TOO_LARGE",
    offset: 0,
    port: 1,
  },
  {
    name: "message size 0xFFFFFFFF",
    wire: chunk(1, message(4, new Uint8Array(0), { size: 0xffff_ffff })),
    code: "MESSAGE_TOO_LARGE",
    offset: 8,
    port: 1,
    type: 4,
  },
  {
    name: "port 0",
    wire: chunk(0, message(13, new Uint8Array(0))),
    code: "UNKNOWN_PORT",
    offset: 0,
    port: 0,
  },
  {
    name: "port 3",
    wire: concat(ok, chunk(3, message(13, new Uint8Array(0)))),
    code: "UNKNOWN_PORT",
    offset: 32,
    port: 3,
  },
  { name: "port 0xFFFFFFFF", wire: u32s(0xffff_ffff, 1), code: "UNKNOWN_PORT", offset: 0 },
  {
    name: "zero-length chunk",
    wire: concat(ok, u32s(1, 0)),
    code: "EMPTY_CHUNK",
    offset: 32,
    port: 1,
  },
  {
    name: "protocol 0",
    wire: chunk(1, message(6, u32s(1, 1), { protocol: 0 })),
    code: "BAD_PROTOCOL",
    offset: 8,
    type: 6,
  },
  {
    name: "protocol 2",
    wire: concat(ok, chunk(2, message(6, u32s(1, 1), { protocol: 2 }))),
    code: "BAD_PROTOCOL",
    offset: 40,
    port: 2,
  },
  {
    name: "chunk longer than its message",
    wire: chunk(1, concat(message(9, u32s(0)), new Uint8Array(1))),
    code: "CHUNK_OVERRUN",
    offset: 0,
    type: 9,
  },
  {
    name: "second chunk longer than the rest of its message",
    wire: concat(
      chunk(1, message(4, new Uint8Array(10)).subarray(0, 24)),
      chunk(1, new Uint8Array(7)),
    ),
    code: "CHUNK_OVERRUN",
    offset: 32,
    type: 4,
  },
  {
    name: "chunk that carries the start of a second message",
    wire: chunk(1, concat(message(13, new Uint8Array(0)), message(13, new Uint8Array(0)))),
    code: "CHUNK_OVERRUN",
    offset: 0,
    type: 13,
  },
  {
    name: "header split over chunks, then too long",
    wire: concat(
      chunk(1, message(9, u32s(0)).subarray(0, 10)),
      chunk(1, concat(message(9, u32s(0)).subarray(10), new Uint8Array(3))),
    ),
    code: "CHUNK_OVERRUN",
    offset: 18,
    type: 9,
  },
  {
    name: "input ends inside a chunk header",
    wire: concat(ok, u32s(1).subarray(0, 3)),
    code: "TRUNCATED",
    offset: 32,
  },
  {
    name: "input ends inside a chunk",
    wire: chunk(1, message(9, u32s(0))).subarray(0, 20),
    code: "TRUNCATED",
    offset: 20,
  },
  {
    name: "input ends between chunks of a message",
    wire: chunk(1, message(4, new Uint8Array(100)).subarray(0, 60)),
    code: "TRUNCATED",
    offset: 68,
    port: 1,
    type: 4,
  },
  {
    name: "input ends inside a split message header",
    wire: chunk(2, message(4, u32s(1)).subarray(0, 7)),
    code: "TRUNCATED",
    offset: 15,
    port: 2,
  },
];

function checkError(e: unknown, c: FramingCase): true {
  assert.ok(e instanceof VdagentProtocolError, `${c.name}: got ${e}`);
  assert.equal(e.name, "VdagentProtocolError");
  assert.equal(e.code, c.code, c.name);
  assert.equal(e.offset, c.offset, `${c.name}: offset`);
  if (c.port !== undefined) assert.equal(e.port, c.port, `${c.name}: port`);
  if (c.type !== undefined) assert.equal(e.type, c.type, `${c.name}: type`);
  assert.match(e.message, /^Cannot (deframe chunk|assemble message): /);
  return true;
}

test("ChunkDeframer and MessageAssembler end the stream with a stable code on each framing error", async () => {
  for (const c of framing) {
    await assert.rejects(
      ReadableStream.from([c.wire]).pipeThrough(new ChunkDeframer())
        .pipeThrough(new MessageAssembler()).pipeTo(new WritableStream()),
      (e) => checkError(e, c),
    );
  }
});

test("ChunkReader and MessageReader raise the same errors fed byte by byte", () => {
  for (const c of framing) {
    const messages = new MessageReader(() => {}, { maxMessageSize: 64 << 20, copy: false });
    const chunks = new ChunkReader(messages, { maxChunkSize: (64 << 20) + 20 });
    assert.throws(() => {
      for (let i = 0; i < c.wire.length; i++) chunks.push(c.wire.subarray(i, i + 1));
      chunks.finish();
      messages.finish(chunks.offset);
    }, (e) => checkError(e, c));
  }
});

interface PayloadCase {
  name: string;
  type: number;
  data: Uint8Array;
  layout?: PayloadOptions;
  code: "PAYLOAD_SIZE" | "TOO_MANY_TYPES" | "TOO_MANY_CAPS";
}

const both = { selection: true, grabSerial: true };
const payloads: PayloadCase[] = [
  { name: "caps payload of 4 bytes", type: 6, data: u32s(1), code: "PAYLOAD_SIZE" },
  {
    name: "caps of 17 words",
    type: 6,
    data: u32s(1, ...new Array(17).fill(0)),
    code: "TOO_MANY_CAPS",
  },
  { name: "grab with 0 types", type: 7, data: u32s(0, 5), layout: both, code: "PAYLOAD_SIZE" },
  { name: "grab with 0 types, no caps", type: 7, data: new Uint8Array(0), code: "PAYLOAD_SIZE" },
  {
    name: "grab with 10 000 types",
    type: 7,
    data: u32s(0, 5, ...new Array(10_000).fill(1)),
    layout: both,
    code: "TOO_MANY_TYPES",
  },
  {
    name: "request of 3 bytes",
    type: 8,
    data: new Uint8Array(3),
    layout: both,
    code: "PAYLOAD_SIZE",
  },
  { name: "request of 8 bytes without selection", type: 8, data: u32s(0, 1), code: "PAYLOAD_SIZE" },
  {
    name: "release of 1 byte with selection",
    type: 9,
    data: new Uint8Array([1]),
    layout: both,
    code: "PAYLOAD_SIZE",
  },
  {
    name: "clipboard of 7 bytes with selection",
    type: 4,
    data: new Uint8Array(7),
    layout: both,
    code: "PAYLOAD_SIZE",
  },
  { name: "mouse of 12 bytes", type: 1, data: new Uint8Array(12), code: "PAYLOAD_SIZE" },
  { name: "mouse of 14 bytes", type: 1, data: new Uint8Array(14), code: "PAYLOAD_SIZE" },
  { name: "reply of 7 bytes", type: 3, data: new Uint8Array(7), code: "PAYLOAD_SIZE" },
  { name: "display config of 9 bytes", type: 5, data: new Uint8Array(9), code: "PAYLOAD_SIZE" },
  { name: "max clipboard of 5 bytes", type: 14, data: new Uint8Array(5), code: "PAYLOAD_SIZE" },
  {
    name: "client disconnected with a byte",
    type: 13,
    data: new Uint8Array(1),
    code: "PAYLOAD_SIZE",
  },
  { name: "file xfer status of 9 bytes", type: 11, data: new Uint8Array(9), code: "PAYLOAD_SIZE" },
  {
    name: "file xfer data shorter than declared",
    type: 12,
    data: concat(u32s(1, 10, 0), new Uint8Array(9)),
    code: "PAYLOAD_SIZE",
  },
  {
    name: "monitors config with 2 monitors in the room of 1",
    type: 2,
    data: concat(u32s(2, 0), new Uint8Array(20)),
    code: "PAYLOAD_SIZE",
  },
  {
    name: "monitors config claiming 0xFFFFFFFF monitors",
    type: 2,
    data: u32s(0xffff_ffff, 0),
    code: "PAYLOAD_SIZE",
  },
  {
    name: "graphics device info whose address overruns",
    type: 16,
    data: u32s(1, 0, 0, 0, 100),
    code: "PAYLOAD_SIZE",
  },
  {
    name: "audio volume with 4 channels and 2 volumes",
    type: 15,
    data: new Uint8Array([1, 0, 4, 0, 0, 0, 0]),
    code: "PAYLOAD_SIZE",
  },
];

test("decodeMessage flags each bad payload invalid with a stable code, without throwing", () => {
  for (const c of payloads) {
    const decoded = decodeMessage({ type: c.type, data: c.data }, c.layout);
    assert.equal(decoded.kind, "invalid", c.name);
    if (decoded.kind !== "invalid") continue;
    assert.equal(decoded.code, c.code, c.name);
    assert.equal(decoded.type, c.type, c.name);
    assert.equal(decoded.data, c.data, c.name);
    assert.ok(decoded.reason.length > 0);
  }
});

test("MessageAssembler delivers a message with a bad payload, and the stream goes on", async () => {
  const wire = concat(
    chunk(1, message(8, new Uint8Array(3))),
    chunk(1, message(8, u32s(0, 1))),
  );
  const messages = (await collect(
    ReadableStream.from([wire]).pipeThrough(new ChunkDeframer()).pipeThrough(
      new MessageAssembler(),
    ),
  )).flat();
  assert.deepEqual(messages.map((m) => decodeMessage(m, both).kind), [
    "invalid",
    "clipboard_request",
  ]);
});

test("decodeMessage costs nothing proportional to a grab's declared types when it refuses them", () => {
  // 10 million types: refused from the size alone, no array is built.
  const data = new Uint8Array(8 + 4 * 10_000_000);
  const decoded = decodeMessage({ type: 7, data }, both);
  assert.equal(decoded.kind, "invalid");
  assert.equal(decoded.kind === "invalid" && decoded.code, "TOO_MANY_TYPES");
});
