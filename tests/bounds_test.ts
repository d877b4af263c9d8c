// Bounds on what a peer controls: per-type payload bounds known at the
// header (a grab of 10 million types is skipped unread), and the bytes held
// across both ports.
import { test } from "node:test";
import assert from "node:assert/strict";
import {
  type AgentMessage,
  ClipboardType,
  createHostPipeline,
  decodeMessage,
  type HostPipelineOptions,
  type InvalidPayload,
  maxPayloadSize,
  MessageAssembler,
  MessageType,
  type SessionDiagnostic,
  VdagentProtocolError,
} from "../mod.ts";
import { ChunkReader } from "../src/wire/_chunk_reader.ts";
import { inboundBytes } from "../src/wire/_inbound_state.ts";
import { MessageReader } from "../src/wire/_message_reader.ts";
import { countAllocations } from "./_alloc.ts";
import {
  chunk,
  concat,
  framed,
  message,
  prng,
  randBytes,
  through,
  u32s,
  withView,
} from "./_helpers.ts";
import { Link } from "./_link.ts";
import { LAYOUTS } from "./_payloads.ts";

const GRAB = MessageType.CLIPBOARD_GRAB;
const BOTH = { selection: true, grabSerial: true };
/** A grab of 10 million types with the selection prefix and a serial: 40 000 008 bytes. */
const HUGE = 8 + 4 * 10_000_000;

/**
 * The wire bytes of a HUGE grab from the guest, as the Linux agent cuts
 * messages (chunks of 2048), yielded in reads of about 64 KiB that are views
 * of buffers made once: the test itself allocates nothing proportional.
 */
function* hugeGrabReads(size = HUGE): Generator<Uint8Array> {
  const body = new Uint8Array(32 * (8 + 2048)); // 32 whole chunks of zeros
  for (let at = 0; at < body.length; at += 8 + 2048) body.set(u32s(1, 2048), at);
  const total = 20 + size;
  const head = concat(u32s(1, 2048), message(GRAB, new Uint8Array(2048 - 20), { size }));
  yield head;
  let left = total - 2048;
  while (left >= 2048 * 32) {
    yield body;
    left -= 2048 * 32;
  }
  while (left >= 2048) {
    yield body.subarray(0, 8 + 2048);
    left -= 2048;
  }
  if (left > 0) yield concat(u32s(1, left), new Uint8Array(left));
}

test("maxPayloadSize bounds every size decodeMessage accepts, in every layout, and is reached", () => {
  const rand = prng(9);
  for (let type = 0; type <= 17; type++) {
    const bound = maxPayloadSize(type);
    if (bound === Infinity) continue;
    let reached = false;
    for (const layout of LAYOUTS) {
      for (let size = 0; size <= bound + 12; size++) {
        for (let i = 0; i < 8; i++) {
          const data = randBytes(rand, size);
          // Zeros: valid counts and flags where any are; then a FILE_XFER_STATUS
          // result of NOT_ENOUGH_SPACE, the one that takes 16 bytes.
          if (i < 2) data.fill(0);
          if (i === 1 && size >= 8) data.set(u32s(4), 4);
          const kind = decodeMessage({ type, data }, layout).kind;
          if (size > bound) {
            assert.equal(kind, "invalid", `type ${type}, ${size} bytes over ${bound}`);
          } else if (size === bound && kind !== "invalid") {
            reached = true;
          }
        }
      }
    }
    assert.ok(reached, `some ${bound}-byte payload of type ${type} is valid`);
  }
  assert.equal(maxPayloadSize(GRAB, { maxGrabTypes: 2 }), 8 + 8 + 3);
  assert.equal(maxPayloadSize(MessageType.ANNOUNCE_CAPABILITIES, { maxCapsWords: 1 }), 4 + 4 + 3);
  assert.equal(maxPayloadSize(MessageType.CLIPBOARD), Infinity);
  assert.throws(() => maxPayloadSize(GRAB, { maxGrabTypes: 0 }), RangeError);
});

test("decodeMessage returns a skipped message as invalid, with the code its size earns", () => {
  const grab = decodeMessage({ type: GRAB, data: new Uint8Array(0), skipped: HUGE }, BOTH);
  assert.equal(grab.kind, "invalid");
  assert.equal((grab as InvalidPayload).code, "TOO_MANY_TYPES");
  assert.match((grab as InvalidPayload).reason, /^10000000 types exceed the maximum of 64; its/);
  const caps = decodeMessage({ type: 6, data: new Uint8Array(0), skipped: 4 + 4 * 100 });
  assert.equal((caps as InvalidPayload).code, "TOO_MANY_CAPS");
  const mouse = decodeMessage({ type: 1, data: new Uint8Array(0), skipped: 14 });
  assert.equal((mouse as InvalidPayload).code, "PAYLOAD_SIZE");
  // Skipped under a bound tighter than the decoder's limit: still invalid, never decoded.
  const small = decodeMessage({ type: GRAB, data: new Uint8Array(0), skipped: 12 }, BOTH);
  assert.equal((small as InvalidPayload).code, "PAYLOAD_SIZE");
});

test("MessageReader skips a grab of 10 million types without buffering it, and stays in sync", () => {
  const out: (Omit<AgentMessage, "skipped"> & { skipped: number | undefined })[] = [];
  const reader = new MessageReader(
    withView((port, type, opaque, data, skipped) =>
      out.push({ port, type, opaque, data, skipped })
    ),
    { maxMessageSize: 64 << 20, copy: false, maxSizeFor: (type) => maxPayloadSize(type) },
  );
  const chunks = new ChunkReader(reader, { maxChunkSize: 2048 });
  let held = 0;
  for (const read of hugeGrabReads()) {
    chunks.push(read);
    held = Math.max(held, reader.buffered);
  }
  chunks.push(chunk(1, message(GRAB, u32s(0, 0, ClipboardType.UTF8_TEXT))));
  chunks.finish();
  reader.finish(chunks.offset);
  assert.equal(held, 0, "no payload byte was held");
  assert.equal(out.length, 2);
  assert.deepEqual({ ...out[0]!, data: out[0]!.data.length }, {
    port: 1,
    type: GRAB,
    opaque: 0n,
    data: 0,
    skipped: HUGE,
  });
  assert.deepEqual(decodeMessage(out[1]!, BOTH), {
    kind: "clipboard_grab",
    selection: 0,
    serial: 0,
    types: [ClipboardType.UTF8_TEXT],
  });
});

test("MessageReader skips a message over its bound in one chunk too, and keeps one within it", () => {
  const seen: (number | undefined)[] = [];
  const reader = new MessageReader(
    withView((_p, _t, _o, data, skipped) => seen.push(skipped ?? -data.length)),
    {
      maxMessageSize: 4096,
      copy: false,
      maxSizeFor: (type) => type === GRAB ? 16 : Infinity,
    },
  );
  const chunks = new ChunkReader(reader, { maxChunkSize: 4096 });
  chunks.push(chunk(1, message(GRAB, new Uint8Array(17))));
  chunks.push(chunk(1, message(GRAB, new Uint8Array(16))));
  chunks.push(chunk(1, message(4, new Uint8Array(1000))));
  assert.deepEqual(seen, [17, -16, -1000]);
});

test("createHostPipeline skips a 10-million-type grab from the guest, allocating nothing proportional", async () => {
  const diagnostics: SessionDiagnostic[] = [];
  const grabs: (readonly number[])[] = [];
  const after = concat(
    framed(1, 6, u32s(1, 0x00038de7)), // the guest's caps
    framed(1, GRAB, u32s(0, 1, ClipboardType.UTF8_TEXT)),
  );
  const reads = [framed(1, 6, u32s(1, 0x00038de7)), ...hugeGrabReads(), after];
  const allocations = countAllocations();
  let largest: number;
  try {
    const relay = createHostPipeline({
      readable: ReadableStream.from(reads),
      writable: new WritableStream(),
    }, {
      onDiagnostic: (d) => void diagnostics.push(d),
      clipboard: { onGuestGrab: (_s, types) => void grabs.push(types) },
    });
    await relay.done;
  } finally {
    largest = allocations.stop().largest;
  }
  assert.ok(largest < 64 * 1024, `the largest allocation was ${largest} bytes`);
  const invalid = diagnostics.filter((d) => d.code === "INVALID_PAYLOAD");
  assert.equal(invalid.length, 1);
  assert.equal((invalid[0]!.payload as InvalidPayload).code, "TOO_MANY_TYPES");
  assert.deepEqual(grabs, [[ClipboardType.UTF8_TEXT]], "the grab after it is accepted");
});

test("A lossless checkpoint in the middle of a skipped message stays small, and the successor skips the rest", async () => {
  const g2h = new Link();
  const h2g = new Link();
  const transport = { readable: g2h.readable, writable: h2g.writable };
  const diagnostics: SessionDiagnostic[] = [];
  const grabs: (readonly number[])[] = [];
  const options: HostPipelineOptions = {
    onDiagnostic: (d) => void diagnostics.push(d),
    clipboard: { onGuestGrab: (_s, types) => void grabs.push(types) },
  };
  let relay = createHostPipeline(transport, options);
  let size = 0;
  const caps = framed(1, 6, u32s(1, 0x00038de7));
  g2h.stopAt = caps.length + 2_000_001; // inside the grab's payload, mid-chunk
  g2h.onStop = async () => {
    const checkpoint = await relay.checkpoint({ mode: "lossless" });
    size = checkpoint.length;
    relay = createHostPipeline(transport, { ...options, restore: checkpoint, resume: "continued" });
    g2h.stopAt = undefined;
  };
  const writer = g2h.writable.getWriter();
  await writer.write(caps);
  for (const read of hugeGrabReads(4 + 4 * 1_000_000)) await writer.write(read);
  await writer.write(framed(1, GRAB, u32s(0, 1, ClipboardType.UTF8_TEXT)));
  await writer.close();
  await relay.done;
  assert.ok(size > 0 && size < 1024, `a checkpoint of ${size} bytes`);
  const invalid = diagnostics.filter((d) => d.code === "INVALID_PAYLOAD");
  assert.equal(invalid.length, 1, "the successor skipped the rest of the grab");
  assert.equal((invalid[0]!.payload as InvalidPayload).code, "TOO_MANY_TYPES");
  assert.deepEqual(grabs, [[ClipboardType.UTF8_TEXT]], "the grab after it is accepted");
});

test("inboundBytes carries a skipped message at every cut, so the successor skips its rest", () => {
  const bound = (type: number) => type === GRAB ? 11 : Infinity;
  const wire = concat(
    framed(1, GRAB, new Uint8Array(300), 64), // skipped
    framed(2, 9, u32s(0), 64),
    framed(1, GRAB, u32s(0, 1), 64), // kept
  );
  for (let cut = 0; cut <= wire.length; cut++) {
    const seen: string[] = [];
    const log = withView((port, type, _o, data, skipped) =>
      seen.push(skipped === undefined ? `${port}/${type} [${data}]` : `${port}/${type} skipped`)
    );
    const a = new MessageReader(log, { maxMessageSize: 4096, copy: false, maxSizeFor: bound });
    const chunksA = new ChunkReader(a, { maxChunkSize: 4096 });
    chunksA.push(wire.subarray(0, cut));
    const carried = inboundBytes(chunksA, a);
    assert.ok(
      carried.length <= 2 * 28 + 20 + 12 + 8,
      `cut ${cut}: ${carried.length} bytes carried`,
    );
    const b = new MessageReader(log, { maxMessageSize: 4096, copy: false, maxSizeFor: bound });
    const chunksB = new ChunkReader(b, { maxChunkSize: 4096 });
    chunksB.push(carried);
    chunksB.push(wire.subarray(cut));
    chunksB.finish();
    b.finish(chunksB.offset);
    assert.deepEqual(seen, ["1/7 skipped", "2/9 [0,0,0,0]", "1/7 [0,0,0,0,1,0,0,0]"], `cut ${cut}`);
  }
});

test("MessageAssembler bounds the bytes held across both ports with maxBuffered", async () => {
  const a = message(4, new Uint8Array(600).fill(1));
  const b = message(4, new Uint8Array(400).fill(2));
  const interleaved = [
    { port: 1, data: a.subarray(0, 100) },
    { port: 2, data: b.subarray(0, 100) },
    { port: 1, data: a.subarray(100) },
    { port: 2, data: b.subarray(100) },
  ];
  const ok = (await through([interleaved], new MessageAssembler({ maxBuffered: 1000 }))).flat();
  assert.deepEqual(ok.map((m) => [m.port, m.data.length]), [[1, 600], [2, 400]]);
  await assert.rejects(
    through([interleaved], new MessageAssembler({ maxBuffered: 999 })),
    (e) =>
      e instanceof VdagentProtocolError && e.code === "BUFFER_FULL" && e.port === 2 &&
      e.type === 4 && e.offset === 8 + 100 + 8 &&
      e.message ===
        "Cannot assemble message: 400 more payload bytes on port 2 would hold 1000 across ports, over the maximum of 999",
  );
  // A message inside one chunk is a view: it holds nothing.
  const whole = (await through([[{ port: 1, data: a }]], new MessageAssembler({ maxBuffered: 1 })))
    .flat();
  assert.equal(whole[0]!.data.length, 600);
  assert.throws(() => new MessageAssembler({ maxBuffered: 0 }), RangeError);
  assert.throws(
    () => new MessageAssembler({ maxSizeFor: 5 as unknown as (type: number) => number }),
    TypeError,
  );
});

test("MessageAssembler with maxSizeFor emits an oversized message skipped, with empty data", async () => {
  const grab = message(GRAB, new Uint8Array(1000));
  const out = (await through(
    [[{ port: 1, data: grab.subarray(0, 500) }, { port: 1, data: grab.subarray(500) }]],
    new MessageAssembler({ maxSizeFor: (t) => maxPayloadSize(t), maxBuffered: 1 }),
  )).flat();
  assert.deepEqual(out, [{
    port: 1,
    type: GRAB,
    opaque: 0n,
    data: new Uint8Array(0),
    skipped: 1000,
  }]);
});

test("createHostPipeline fails with BUFFER_FULL when partial messages on both ports exceed maxBuffered", async () => {
  const a = message(4, new Uint8Array(3000));
  const wire = concat(
    chunk(1, a.subarray(0, 2000)),
    chunk(2, a.subarray(0, 2000)),
  );
  const relay = createHostPipeline({
    readable: ReadableStream.from([wire]),
    writable: new WritableStream(),
  }, { maxBuffered: 5999 });
  await assert.rejects(
    relay.done,
    (e) => e instanceof VdagentProtocolError && e.code === "BUFFER_FULL" && e.port === 2,
  );
  assert.throws(
    () =>
      createHostPipeline({ readable: new ReadableStream(), writable: new WritableStream() }, {
        maxBuffered: 0.5,
      }),
    RangeError,
  );
});
