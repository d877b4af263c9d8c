import { test } from "node:test";
import assert from "node:assert/strict";
import {
  CheckpointError,
  type CheckpointState,
  decodeCheckpoint,
  describeCheckpoint,
  encodeCheckpoint,
  type SelectionState,
} from "../mod.ts";
import { chunk, concat, framed, message, prng, randInt, u32s } from "./_helpers.ts";

const empty = { lastSerial: 0, guestRequests: [] };

/** The host's announcement, framed: the outbound bytes of a checkpoint taken just after it. */
const announce = (caps: number) => framed(1, 6, u32s(1, caps));

/** A lossless state with every section. */
function full(): CheckpointState {
  return {
    mode: "lossless",
    hostCaps: [0x00020061],
    guestCaps: [0x00038de7, 0x2],
    selections: [
      { lastSerial: 7, hostOffer: [1, 2], guestRequests: [2], hostRequests: [] },
      {
        lastSerial: 0xffff_ffff,
        guestRequests: [],
        guestOffer: { serial: 3, types: [1, 99] },
        hostRequests: [1, 1],
      },
      { lastSerial: 1, guestRequests: [], guestOffer: { types: [4] }, hostRequests: [] },
    ],
    mouse: { x: 100, y: 200, buttons: 2, display: 1, sent: false },
    guestMaxClipboard: 1 << 20,
    wire: {
      // A message in progress: its header and 3 of its 10 payload bytes.
      inbound: chunk(1, message(4, new Uint8Array(10)).subarray(0, 23), 30),
      outbound: concat(announce(0x00020061), announce(0x00020061)),
      written: 3,
    },
  };
}

/** An independent, bit-at-a-time CRC-32, to seal hand-made checkpoints. */
function crc(bytes: Uint8Array): number {
  let c = 0xffff_ffff;
  for (const b of bytes) {
    c ^= b;
    for (let k = 0; k < 8; k++) c = (c >>> 1) ^ (0xedb8_8320 & -(c & 1));
  }
  return (c ^ 0xffff_ffff) >>> 0;
}

/** A hand-made checkpoint: header with flags, the given sections, length and CRC. */
function forge(sections: Uint8Array, flags = 0, major = 2, minor = 0): Uint8Array {
  const body = concat(
    new Uint8Array([0x56, 0x44, 0x43, 0x4b, major, minor, flags]),
    u32s(0),
    sections,
  );
  const out = concat(body, u32s(0));
  new DataView(out.buffer).setUint32(7, out.length, true);
  new DataView(out.buffer).setUint32(out.length - 4, crc(out.subarray(0, out.length - 4)), true);
  return out;
}

/** A section: tag, one-byte length, payload. */
function section(tag: number, payload: Uint8Array): Uint8Array {
  assert.ok(payload.length < 128);
  return concat(new Uint8Array([tag, payload.length]), payload);
}

/** The SESSION payload of a minimal checkpoint. */
const SESSION = concat(
  new Uint8Array([1]),
  u32s(0x20061),
  new Uint8Array([1]),
  u32s(0x38de7),
  new Uint8Array(9),
);

function rejects(bytes: Uint8Array, code: string, limits = {}): void {
  assert.throws(
    () => decodeCheckpoint(bytes, limits),
    (e) =>
      e instanceof CheckpointError && e.code === code &&
      e.message.startsWith("Cannot decode checkpoint"),
    code,
  );
}

test("decodeCheckpoint inverts encodeCheckpoint in both modes", () => {
  const state = full();
  assert.deepEqual(decodeCheckpoint(encodeCheckpoint(state)), state);
  const { mouse: _m, guestMaxClipboard: _g, wire: _w, ...seed } = state;
  const minimal = {
    ...seed,
    mode: "minimal" as const,
    selections: seed.selections.map(({ lastSerial, hostOffer, guestRequests }) =>
      hostOffer ? { lastSerial, hostOffer, guestRequests } : { lastSerial, guestRequests }
    ) as unknown as CheckpointState["selections"],
  };
  assert.deepEqual(decodeCheckpoint(encodeCheckpoint({ ...state, mode: "minimal" })), minimal);
  // The decoded bytes are copies: the input can be reused.
  const bytes = encodeCheckpoint(state);
  const decoded = decodeCheckpoint(bytes);
  bytes.fill(0);
  assert.deepEqual(decoded.wire, state.wire);
});

test("decodeCheckpoint inverts encodeCheckpoint for random states", () => {
  const rand = prng(3);
  const types = () => Array.from({ length: randInt(rand, 1, 6) }, () => randInt(rand, 1, 31));
  const set = (t: number[]) => [...new Set(t)].sort((a, b) => a - b);
  for (let i = 0; i < 300; i++) {
    const lossless = rand() < 0.5;
    // Both sides have CLIPBOARD_SELECTION (bit 6), or the guest has not
    // announced yet: only then may PRIMARY and SECONDARY hold state.
    const guest = rand() < 0.8;
    const selection = () => ({
      lastSerial: randInt(rand, 0, 2 ** 32 - 1),
      ...(rand() < 0.5 ? { hostOffer: set(types()) } : {}),
      guestRequests: guest && rand() < 0.5 ? set(types()) : [],
      ...(guest && lossless && rand() < 0.5
        ? { guestOffer: { serial: randInt(rand, 0, 9), types: types() } }
        : {}),
      ...(lossless ? { hostRequests: guest && rand() < 0.5 ? types() : [] } : {}),
    });
    const state: CheckpointState = {
      mode: lossless ? "lossless" : "minimal",
      hostCaps: [(randInt(rand, 0, 2 ** 32 - 1) | 0x40) >>> 0],
      ...(guest
        ? {
          guestCaps: Array.from(
            { length: randInt(rand, 1, 16) },
            (_, i) => randInt(rand, 0, 99) | (i === 0 ? 0x40 : 0),
          ),
        }
        : {}),
      selections: [selection(), selection(), selection()],
      ...(lossless && rand() < 0.5
        ? { mouse: { x: randInt(rand, 0, 9999), y: 3, buttons: 8, display: 0, sent: rand() < 0.5 } }
        : {}),
    };
    if (lossless && rand() < 0.5) {
      const n = randInt(rand, 0, 3);
      const outbound = concat(...Array.from({ length: n }, () => announce(state.hostCaps[0]!)));
      state.wire = {
        inbound: new Uint8Array(0),
        outbound,
        ...(n > 0 && rand() < 0.5 ? { written: randInt(rand, 1, 27) } : {}),
      };
    }
    assert.deepEqual(decodeCheckpoint(encodeCheckpoint(state)), state, `state ${i}`);
  }
});

test("encodeCheckpoint writes sections over 127 bytes, outgrows its first buffer, and returns fresh bytes", () => {
  const types = Array.from({ length: 64 }, (_, i) => i + 1);
  const selection = (lastSerial: number) => ({
    lastSerial,
    guestRequests: [],
    guestOffer: { serial: lastSerial, types },
    hostRequests: Array.from({ length: 16 }, (_, i) => (i % 6) + 1),
  });
  const state: CheckpointState = {
    mode: "lossless",
    hostCaps: [0x40],
    guestCaps: [0x40],
    selections: [selection(1), selection(200), selection(0xffff_ffff)],
    wire: { inbound: new Uint8Array(0), outbound: concat(...Array(180).fill(announce(0x40))) },
  };
  const big = encodeCheckpoint(state);
  assert.deepEqual(decodeCheckpoint(big), state);
  const small = full();
  const first = encodeCheckpoint(small);
  const copy = first.slice();
  encodeCheckpoint({ ...small, selections: [empty, empty, empty] });
  assert.deepEqual(first, copy);
  assert.equal(first.length, first.buffer.byteLength);
});

test("decodeCheckpoint refuses clipboard state on PRIMARY or SECONDARY without CLIPBOARD_SELECTION", () => {
  // Found by the fuzzer: restoring it made the session lay out a release for
  // selection 1 without the selection prefix, and createHostPipeline threw
  // a RangeError.
  const empty: SelectionState = { lastSerial: 0, guestRequests: [] };
  const withRequest: SelectionState = { lastSerial: 0, guestRequests: [1] };
  const state = (guestCaps: number[], s1: SelectionState) =>
    encodeCheckpoint({
      mode: "minimal",
      hostCaps: [0x40],
      guestCaps,
      selections: [empty, s1, empty],
    });
  assert.throws(
    () => decodeCheckpoint(state([0], withRequest)),
    (e) =>
      e instanceof CheckpointError && e.code === "MALFORMED" &&
      e.message ===
        "Cannot decode checkpoint: selection 1 has clipboard state, but CLIPBOARD_SELECTION is not negotiated",
  );
  assert.throws(
    () => decodeCheckpoint(state([0], { ...empty, hostOffer: [1] })),
    CheckpointError,
  );
  assert.equal(decodeCheckpoint(state([0x40], withRequest)).selections[1].guestRequests[0], 1);
  // A host offer made before the guest announced itself is a real state.
  const early = encodeCheckpoint({
    mode: "minimal",
    hostCaps: [0x40],
    selections: [empty, { ...empty, hostOffer: [1] }, empty],
  });
  assert.deepEqual(decodeCheckpoint(early).selections[1].hostOffer, [1]);
});

test("encodeCheckpoint keeps a minimal checkpoint within 64 bytes", () => {
  // The largest minimal state with one caps word per side and the seven
  // clipboard types: every serial at its widest, every type owned and pending.
  const all = [1, 2, 3, 4, 5, 6];
  const widest = { lastSerial: 0xffff_ffff, hostOffer: all, guestRequests: all };
  const bytes = encodeCheckpoint({
    mode: "minimal",
    hostCaps: [0xffff_ffff],
    guestCaps: [0xffff_ffff],
    selections: [widest, widest, widest],
  });
  assert.ok(bytes.length <= 64, `${bytes.length} bytes`);
});

test("decodeCheckpoint rejects every single-bit flip and every truncation", () => {
  for (const state of [full(), { ...full(), mode: "minimal" as const }]) {
    const bytes = encodeCheckpoint(state);
    for (let bit = 0; bit < bytes.length * 8; bit++) {
      const flipped = bytes.slice();
      flipped[bit >> 3]! ^= 1 << (bit & 7);
      assert.throws(() => decodeCheckpoint(flipped), CheckpointError, `bit ${bit}`);
    }
    for (let length = 0; length < bytes.length; length++) {
      assert.throws(
        () => decodeCheckpoint(bytes.subarray(0, length)),
        CheckpointError,
        `length ${length}`,
      );
    }
  }
});

test("decodeCheckpoint skips an unknown optional section and refuses an unknown required one", () => {
  const base = section(0x01, SESSION);
  const withOptional = forge(concat(base, section(0xfe, new Uint8Array([1, 2, 3]))));
  assert.deepEqual(decodeCheckpoint(withOptional).guestCaps, [0x38de7]);
  rejects(forge(concat(base, section(0x7e, new Uint8Array([1])))), "UNKNOWN_SECTION");
});

test("decodeCheckpoint refuses another major version clearly, and reads a newer minor", () => {
  const sections = section(0x01, SESSION);
  assert.throws(
    () => decodeCheckpoint(forge(sections, 0, 3)),
    (e) =>
      e instanceof CheckpointError && e.code === "UNSUPPORTED_VERSION" &&
      /format version 3\.0 is not 2\.x/.test(e.message),
  );
  // Version 1's outbound bytes could start inside a chunk, unchecked: not read any more.
  rejects(forge(sections, 0, 1), "UNSUPPORTED_VERSION");
  rejects(forge(sections, 0, 0), "UNSUPPORTED_VERSION");
  assert.equal(decodeCheckpoint(forge(sections, 0, 2, 9)).mode, "minimal");
});

test("decodeCheckpoint rejects hostile checkpoints with a stable code before allocating", () => {
  const base = section(0x01, SESSION);
  // Huge lengths.
  const huge = forge(base);
  new DataView(huge.buffer).setUint32(7, 0xffff_ffff, true);
  rejects(huge, "TOO_LARGE");
  rejects(forge(concat(base, new Uint8Array([0x81, 0xff, 0xff, 0xff, 0xff, 0x0f]))), "MALFORMED");
  rejects(forge(concat(base, new Uint8Array([0x81, 0xff, 0xff, 0xff, 0xff, 0x7f]))), "MALFORMED");
  rejects(encodeCheckpoint(full()), "TOO_LARGE", { maxSize: 40 });
  // Selection 3 and up.
  rejects(forge(concat(base, section(0x82, new Uint8Array([3, 1]))), 2), "MALFORMED");
  rejects(forge(concat(base, section(0x81, new Uint8Array([7, 0, 1, 1]))), 2), "MALFORMED");
  // Capability words: 10 000 of them, declared.
  const caps = concat(new Uint8Array([0x90, 0x4e]), new Uint8Array(64));
  rejects(forge(concat(new Uint8Array([0x01, caps.length]), caps)), "TOO_LARGE");
  // Too many sections, a section twice, none at all.
  const many = Array.from({ length: 70 }, () => section(0xf0, new Uint8Array(0)));
  rejects(forge(concat(base, ...many)), "TOO_LARGE");
  rejects(forge(concat(base, base)), "DUPLICATE_SECTION");
  rejects(forge(new Uint8Array(0)), "MISSING_SECTION");
  // Fields out of range, sections where they do not belong.
  rejects(forge(section(0x01, concat(SESSION, new Uint8Array([1])))), "MALFORMED");
  rejects(
    forge(
      section(0x01, concat(SESSION.subarray(0, 11), new Uint8Array([0, 1, 0, 0, 0, 0, 0, 0, 0]))),
    ),
    "MALFORMED",
  );
  rejects(forge(concat(base, section(0x02, new Uint8Array(0))), 0), "MALFORMED");
  rejects(forge(concat(base, section(0x83, new Uint8Array(14))), 0), "MALFORMED");
  rejects(forge(base, 0x80), "MALFORMED");
  // Inbound bytes that do not parse, or that hold a whole message.
  const wire = (inbound: Uint8Array) => forge(concat(base, section(0x02, inbound)), 3);
  rejects(wire(u32s(3, 1)), "MALFORMED");
  rejects(wire(chunk(1, message(13, new Uint8Array(0), { protocol: 7 }))), "MALFORMED");
  assert.equal(
    decodeCheckpoint(wire(chunk(1, message(13, new Uint8Array(0))))).wire?.inbound.length,
    28,
  );
  assert.equal(
    decodeCheckpoint(wire(u32s(1))).wire?.inbound.length,
    4,
    "a partial chunk header is fine",
  );
  // Not a checkpoint at all, and a few bytes of one.
  rejects(new TextEncoder().encode("VDCX"), "BAD_MAGIC");
  rejects(new Uint8Array([0x56, 0x44, 0x43, 0x4b, 2]), "TRUNCATED");
  assert.throws(() => decodeCheckpoint("VDCK" as unknown as Uint8Array), TypeError);
});

test("encodeCheckpoint rejects states it cannot encode with RangeError or TypeError", () => {
  const state = full();
  const bad: [Partial<CheckpointState>, ErrorConstructor | RangeErrorConstructor][] = [
    [{ mode: "full" as "lossless" }, TypeError],
    [{ hostCaps: [] }, RangeError],
    [{ hostCaps: [-1] }, RangeError],
    [{ selections: [] as unknown as CheckpointState["selections"] }, TypeError],
    [{ selections: [{ ...empty, hostOffer: [32] }, empty, empty] }, RangeError],
    [{ selections: [{ ...empty, hostOffer: [] }, empty, empty] }, RangeError],
    [{ selections: [{ ...empty, guestRequests: [0] }, empty, empty] }, RangeError],
    [{ mouse: { x: 0, y: 0, buttons: 0, display: 256, sent: true } }, RangeError],
    [{ guestMaxClipboard: -1 }, RangeError],
  ];
  for (const [i, [patch, kind]] of bad.entries()) {
    assert.throws(() => encodeCheckpoint({ ...state, ...patch }), kind, `case ${i}`);
  }
});

test("describeCheckpoint shows a checkpoint as plain JSON", () => {
  const view = describeCheckpoint(encodeCheckpoint(full()));
  assert.deepEqual(JSON.parse(JSON.stringify(view)), {
    format: "2.0",
    size: view.size,
    mode: "lossless",
    hostCaps: ["0x00020061"],
    guestCaps: ["0x00038de7", "0x00000002"],
    selections: [
      {
        selection: "CLIPBOARD",
        lastSerial: 7,
        hostOffer: ["UTF8_TEXT", "IMAGE_PNG"],
        guestRequests: ["IMAGE_PNG"],
        hostRequests: [],
      },
      {
        selection: "PRIMARY",
        lastSerial: 0xffff_ffff,
        guestRequests: [],
        guestOffer: { serial: 3, types: ["UTF8_TEXT", "TYPE_99"] },
        hostRequests: ["UTF8_TEXT", "UTF8_TEXT"],
      },
      {
        selection: "SECONDARY",
        lastSerial: 1,
        guestRequests: [],
        guestOffer: { types: ["IMAGE_TIFF"] },
        hostRequests: [],
      },
    ],
    mouse: { x: 100, y: 200, buttons: 2, display: 1, sent: false },
    guestMaxClipboard: 1 << 20,
    wire: { inboundBytes: 31, outboundBytes: 72, outboundWritten: 3 },
  });
});

test("decodeCheckpoint reads back DRAINED and what was owed (OWED), in both modes, and refuses a bad OWED", () => {
  const state: CheckpointState = {
    mode: "lossless",
    hostCaps: [0x00020061],
    guestCaps: [0x00038de7],
    selections: [
      { lastSerial: 2, hostOffer: [1], hostOfferSent: false, guestRequests: [], hostRequests: [] },
      { ...empty, hostRequests: [] },
      { ...empty, hostRequests: [] },
    ],
    awaiting: "probe",
    drained: true,
  };
  assert.deepEqual(decodeCheckpoint(encodeCheckpoint(state)), state);
  const minimal = decodeCheckpoint(encodeCheckpoint({ ...state, mode: "minimal" }));
  assert.equal(minimal.drained, true);
  assert.equal(minimal.awaiting, "probe");
  assert.equal(minimal.selections[0].hostOfferSent, false);
  assert.equal(encodeCheckpoint({ ...state, mode: "minimal" })[6], 0b100, "only DRAINED");
  // OWED naming a selection the host does not own, or waiting for something unknown.
  rejects(
    forge(concat(section(0x01, SESSION), section(0x85, new Uint8Array([1, 0])))),
    "MALFORMED",
  );
  const owns = concat(new Uint8Array([1]), u32s(0x20061), new Uint8Array([1]), u32s(0x38de7));
  const session = concat(owns, new Uint8Array([0, 2, 0, 0, 0, 0, 0, 0, 0])); // owns CLIPBOARD
  assert.equal(
    decodeCheckpoint(forge(concat(section(0x01, session), section(0x85, new Uint8Array([1, 1])))))
      .awaiting,
    "caps",
  );
  rejects(
    forge(concat(section(0x01, session), section(0x85, new Uint8Array([1, 3])))),
    "MALFORMED",
  );
  rejects(
    forge(concat(section(0x01, session), section(0x85, new Uint8Array([8, 0])))),
    "MALFORMED",
  );
  rejects(forge(concat(section(0x01, session), section(0x85, new Uint8Array([1])))), "MALFORMED");
});
