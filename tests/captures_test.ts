// Golden replays of the real Linux agent's traffic (tests/fixtures/linux-agent-0.22.1).
import { test } from "node:test";
import assert from "node:assert/strict";
import {
  type AgentMessage,
  ChunkDeframer,
  decodeMessage,
  MessageAssembler,
  type MessagePayload,
} from "../mod.ts";
import { ChunkReader } from "../src/wire/_chunk_reader.ts";
import { MessageReader } from "../src/wire/_message_reader.ts";
import { collect, cut, fixture, fixtureJson, sameMessages, withView } from "./_helpers.ts";

const DIR = "linux-agent-0.22.1";
const LAYOUT = { selection: true, grabSerial: true };
const text = new TextEncoder();

interface LogEntry {
  dir?: "g2h" | "h2g";
  bytes?: number;
}

/** Read sizes of one direction, in order, as the host saw them. */
async function readSizes(dir: "g2h" | "h2g"): Promise<number[]> {
  const log = await fixtureJson<LogEntry[]>(`${DIR}/log.json`);
  return log.filter((e) => e.dir === dir).map((e) => e.bytes!);
}

/** Decodes messages by driving the synchronous cores directly. */
function decodeWithCores(reads: Iterable<Uint8Array>): AgentMessage[] {
  const out: AgentMessage[] = [];
  const messages = new MessageReader(
    withView((port, type, opaque, data) => out.push({ port, type, opaque, data })),
    { maxMessageSize: 64 << 20, copy: false },
  );
  const chunks = new ChunkReader(messages, { maxChunkSize: (64 << 20) + 20 });
  for (const read of reads) chunks.push(read);
  chunks.finish();
  messages.finish(chunks.offset);
  return out;
}

/** Expected guest → host messages, from the capture's notes. */
function expectedGuestToHost(wire: Uint8Array): MessagePayload[] {
  // The 300 000-byte text and the PNG are checked against the capture's own
  // bytes at their known offsets: 36+36+40+53+40 bytes precede the big chunk.
  const big = 36 + 36 + 40 + 53 + 40 + 8 + 20 + 8;
  const pngAt = big + 300_000 + 40 + 48 + 40 + 8 + 20 + 8;
  return [
    { kind: "announce_capabilities", request: true, caps: [0x00038de7] },
    { kind: "announce_capabilities", request: false, caps: [0x00038de7] },
    { kind: "clipboard_grab", selection: 0, serial: 0, types: [1] },
    { kind: "clipboard", selection: 0, type: 1, data: text.encode("héllo wörld ✓") },
    { kind: "clipboard_grab", selection: 0, serial: 1, types: [1] },
    { kind: "clipboard", selection: 0, type: 1, data: wire.subarray(big, big + 300_000) },
    { kind: "clipboard_grab", selection: 1, serial: 0, types: [1] },
    { kind: "clipboard", selection: 1, type: 1, data: text.encode("primary text") },
    { kind: "clipboard_grab", selection: 0, serial: 2, types: [2] },
    { kind: "clipboard", selection: 0, type: 2, data: wire.subarray(pngAt, pngAt + 75) },
    { kind: "clipboard_request", selection: 0, type: 1 },
  ];
}

const expectedHostToGuest: MessagePayload[] = [
  { kind: "announce_capabilities", request: true, caps: [0x00020061] },
  { kind: "clipboard_request", selection: 0, type: 1 },
  { kind: "clipboard_request", selection: 0, type: 1 },
  { kind: "clipboard_request", selection: 1, type: 1 },
  { kind: "clipboard_request", selection: 0, type: 2 },
  { kind: "clipboard_grab", selection: 0, serial: 2, types: [1] },
  { kind: "clipboard", selection: 0, type: 1, data: new Uint8Array(5000).fill(0x78) },
];

function decodeAll(messages: AgentMessage[]): MessagePayload[] {
  for (const m of messages) {
    assert.equal(m.port, 1);
    assert.equal(m.opaque, 0n);
  }
  return messages.map((m) => decodeMessage(m, LAYOUT));
}

test("ChunkDeframer and MessageAssembler replay the guest capture with its real read sizes", async () => {
  const wire = await fixture(`${DIR}/guest-to-host.bin`);
  const sizes = await readSizes("g2h");
  assert.equal(sizes.reduce((a, b) => a + b, 0), wire.length);
  const reads = cut(wire, sizes);
  const batches = await collect(
    ReadableStream.from(reads).pipeThrough(new ChunkDeframer()).pipeThrough(new MessageAssembler()),
  );
  const payloads = decodeAll(batches.flat());
  assert.deepEqual(payloads, expectedGuestToHost(wire));
  const png = payloads[9] as { data: Uint8Array };
  assert.deepEqual([...png.data.subarray(0, 4)], [0x89, 0x50, 0x4e, 0x47]);
});

test("ChunkDeframer and MessageAssembler replay the host capture, a message in three chunks", async () => {
  const wire = await fixture(`${DIR}/host-to-guest.bin`);
  const sizes = await readSizes("h2g");
  assert.equal(sizes.reduce((a, b) => a + b, 0) + 5052, wire.length);
  const chunks = (await collect(
    ReadableStream.from([wire]).pipeThrough(new ChunkDeframer()),
  )).flat();
  assert.deepEqual(chunks.slice(-3).map((c) => c.data.length), [2048, 2048, 932]);
  const messages = (await collect(
    ReadableStream.from([chunks]).pipeThrough(new MessageAssembler()),
  )).flat();
  assert.deepEqual(decodeAll(messages), expectedHostToGuest);
});

test("MessageReader splits the captures at every offset and byte by byte", async () => {
  for (const name of ["guest-to-host.bin", "host-to-guest.bin"]) {
    const wire = await fixture(`${DIR}/${name}`);
    const whole = decodeWithCores([wire]);
    assert.equal(whole.length, name.startsWith("guest") ? 11 : 7);
    assert.ok(sameMessages(decodeWithCores(cut(wire, [1])), whole), "byte by byte");
    // Every two-way split. Inside the 300 000-byte payload every split costs a
    // copy of the whole message, so there the split points step by 251 (a prime, so they fall at every
    // alignment).
    for (let at = 1; at < wire.length; at += at > 400 && at < wire.length - 400 ? 251 : 1) {
      assert.ok(
        sameMessages(decodeWithCores([wire.subarray(0, at), wire.subarray(at)]), whole),
        `split at ${at}`,
      );
    }
  }
});

test("ChunkDeframer and MessageAssembler split the host capture at every offset", async () => {
  const wire = await fixture(`${DIR}/host-to-guest.bin`);
  for (let at = 0; at <= wire.length; at++) {
    const batches = await collect(
      ReadableStream.from([wire.subarray(0, at), wire.subarray(at)])
        .pipeThrough(new ChunkDeframer()).pipeThrough(new MessageAssembler()),
    );
    assert.deepEqual(decodeAll(batches.flat()), expectedHostToGuest, `split at ${at}`);
  }
});
