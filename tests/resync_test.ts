// A reconnected stream that starts inside a message: the first plausible message start.
import { test } from "node:test";
import assert from "node:assert/strict";
import {
  ClipboardType,
  createHostPipeline,
  encodeCheckpoint,
  encodeMessage,
  type SessionDiagnostic,
} from "../mod.ts";
import { findMessageStart, START_SIZE } from "../src/wire/_resync.ts";
import { BOTH, LINUX_CAPS } from "./_session.ts";
import { concat, cut, fixture, framed, prng, randBytes, until } from "./_helpers.ts";

const TEXT = ClipboardType.UTF8_TEXT;
const MAX = 64 << 20;

/** Where each message of a framed stream starts (Linux agent: one chunk per message). */
function starts(wire: Uint8Array): number[] {
  const view = new DataView(wire.buffer, wire.byteOffset);
  const out: number[] = [];
  for (let at = 0; at < wire.length; at += 8 + view.getUint32(at + 4, true)) out.push(at);
  return out;
}

test("findMessageStart finds the next message of the Linux agent's capture from every offset near a start and along its payloads", async () => {
  const wire = await fixture("linux-agent-0.22.1/guest-to-host.bin");
  const boundaries = starts(wire);
  // Every offset within 64 bytes of a message start (headers cut at every byte), and a prime
  // stride through the 1 MiB payloads.
  const near = (at: number) => boundaries.some((b) => Math.abs(at - b) <= 64);
  for (let from = 0; from < wire.length; from++) {
    if (!near(from) && from % 4099 !== 0) continue;
    const next = boundaries.find((b) => b >= from);
    const expected = next !== undefined && next + START_SIZE <= wire.length ? next : -1;
    assert.equal(
      findMessageStart(wire, from, wire.length, MAX + 20, MAX),
      expected,
      `from ${from}`,
    );
  }
});

test("findMessageStart refuses what only looks like a start", () => {
  // A chunk of 32 bytes on port 1 holding a CLIPBOARD_GRAB of 12 payload bytes.
  const valid =
    () => [1, 0, 0, 0, 32, 0, 0, 0, 1, 0, 0, 0, 7, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 12, 0, 0, 0];
  const at = (bytes: number[]) =>
    findMessageStart(new Uint8Array(bytes), 0, bytes.length, 2068, MAX);
  assert.equal(at(valid()), 0);
  const broken: [string, (b: number[]) => void][] = [
    ["port 3", (b) => b[0] = 3],
    ["port over 8 bits", (b) => b[1] = 1],
    ["a chunk shorter than a message header", (b) => b[4] = 19],
    ["a chunk over the limit", (b) => (b[4] = 0x15, b[5] = 0x08)],
    ["protocol 2", (b) => b[8] = 2],
    ["type 0", (b) => b[12] = 0],
    ["type 17", (b) => b[12] = 17],
    ["a chunk longer than its message", (b) => b[24] = 11],
    ["a message over the limit", (b) => b[27] = 0x10],
  ];
  for (const [what, breakIt] of broken) {
    const bytes = valid();
    breakIt(bytes);
    assert.equal(at(bytes), -1, what);
  }
});

test("createHostPipeline resumed reconnected skips the rest of a message the old connection had begun, split anywhere", async () => {
  // The tail of a 300 KiB guest paste the old relay was reading, then a grab.
  const big = encodeMessage(
    { kind: "clipboard", selection: 0, type: TEXT, data: randBytes(prng(3), 300_000) },
    BOTH,
  );
  const grab = encodeMessage(
    { kind: "clipboard_grab", selection: 1, serial: 5, types: [TEXT] },
    BOTH,
  );
  const wire = concat(oneChunk(big), oneChunk(grab));
  const checkpoint = encodeCheckpoint({
    mode: "lossless",
    hostCaps: [0x00020061],
    guestCaps: LINUX_CAPS,
    selections: [
      { lastSerial: 0, guestRequests: [] },
      { lastSerial: 4, guestRequests: [] },
      { lastSerial: 0, guestRequests: [] },
    ],
    drained: true,
  });
  const tailStart = 100_000;
  for (const size of [1, 7, 4093, 65536]) {
    const diagnostics: SessionDiagnostic[] = [];
    const offers: number[] = [];
    const reads = cut(wire.subarray(tailStart), [size]);
    const relay = createHostPipeline({
      readable: ReadableStream.from(reads),
      writable: new WritableStream(),
    }, {
      restore: checkpoint,
      resume: "reconnected",
      retryInterval: 0,
      onDiagnostic: (d) => void diagnostics.push(d),
      clipboard: { onGuestGrab: (s) => void offers.push(s) },
    });
    await until(() => offers.length > 0, `the grab, reads of ${size}`);
    assert.deepEqual(offers, [1]);
    assert.equal(relay.session.guestOffer(1)?.serial, 5);
    assert.deepEqual(diagnostics.map((d) => d.code), ["RESYNC"]);
    assert.match(
      diagnostics[0]!.message,
      new RegExp(`Skipped ${wire.length - tailStart - oneChunk(grab).length} bytes`),
    );
    await relay.done;
  }
});

/** One message in one chunk, as the Linux agent sends it. */
const oneChunk = (m: { type: number; data: Uint8Array }) => framed(1, m.type, m.data, 1 << 30);
