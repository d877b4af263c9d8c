// A checkpoint comes from a store that may be written by someone else: what it carries in flight
// must be what the session could have sent and could take in, under the restoring pipeline's
// limits, or nothing of it is applied.
import { test } from "node:test";
import assert from "node:assert/strict";
import {
  CheckpointError,
  type CheckpointState,
  ClipboardType,
  createGuestPipeline,
  createHostPipeline,
  decodeCheckpoint,
  encodeCheckpoint,
  encodeMessage,
  MessageType,
  openCheckpoint,
  type PayloadOptions,
  sealCheckpoint,
  StateCheckpoint,
} from "../mod.ts";
import { concat, framed, u32s, until } from "./_helpers.ts";

const TEXT = ClipboardType.UTF8_TEXT;
const BOTH: PayloadOptions = { selection: true, grabSerial: true };
const frame = (payload: Parameters<typeof encodeMessage>[0], layout = BOTH) => {
  const m = encodeMessage(payload, layout);
  return framed(1, m.type, m.data);
};

/** A real lossless state: a relay that negotiated, grabbed CLIPBOARD and moved the mouse. */
async function realState(): Promise<CheckpointState> {
  const toGuest = new TransformStream<Uint8Array, Uint8Array>();
  const toHost = new TransformStream<Uint8Array, Uint8Array>();
  const guest = createGuestPipeline({ readable: toGuest.readable, writable: toHost.writable });
  const relay = createHostPipeline({ readable: toHost.readable, writable: toGuest.writable });
  await until(() => relay.session.guestCaps !== undefined, "caps");
  relay.session.grab(0, [TEXT]);
  relay.session.mouse({ x: 10, y: 20 });
  await until(() => guest.session.hostOffer(0) !== undefined, "the grab");
  const state = decodeCheckpoint(await relay.checkpoint());
  await toGuest.writable.close();
  await guest.done;
  return state;
}

const withOutbound = (state: CheckpointState, outbound: Uint8Array, written = 0) =>
  encodeCheckpoint({ ...state, wire: { inbound: new Uint8Array(0), outbound, written } });

function refused(bytes: Uint8Array, code: string, what: string, limits = {}): void {
  assert.throws(
    () => decodeCheckpoint(bytes, limits),
    (e) => e instanceof CheckpointError && e.code === code,
    what,
  );
}

test("createHostPipeline refuses a forged checkpoint whose outbound bytes would drive the guest, and writes nothing", async () => {
  // The reproduction: a real state re-encoded with a file transfer and two clicks in flight.
  const state = await realState();
  const forged = withOutbound(
    state,
    concat(
      framed(1, MessageType.FILE_XFER_START, concat(u32s(1), new TextEncoder().encode("x\0"))),
      framed(1, MessageType.FILE_XFER_DATA, concat(u32s(1, 4, 0), new Uint8Array(4))),
      frame({ kind: "mouse_state", x: 123, y: 456, buttons: 2, display: 0 }),
      frame({ kind: "mouse_state", x: 123, y: 456, buttons: 0, display: 0 }),
    ),
  );
  const written: Uint8Array[] = [];
  assert.throws(
    () =>
      createHostPipeline({
        readable: new ReadableStream(),
        writable: new WritableStream({ write: (b) => void written.push(b) }),
      }, { restore: forged, resume: "continued" }),
    (e) =>
      e instanceof CheckpointError && e.code === "FORBIDDEN_MESSAGE" &&
      /FILE_XFER_START|file_xfer_start/.test(e.message),
  );
  await new Promise((r) => setTimeout(r, 10));
  assert.deepEqual(written, [], "nothing reached the guest");
});

test("decodeCheckpoint accepts outbound bytes only as the host's messages its state allows", async () => {
  const state = await realState();
  // What the session sends is accepted, from any written offset inside the first message.
  const grab = frame({ kind: "clipboard_grab", selection: 0, serial: 0, types: [TEXT] });
  const ok = concat(
    grab,
    frame({ kind: "clipboard", selection: 0, type: TEXT, data: new Uint8Array(3000) }),
    frame({ kind: "clipboard_request", selection: 2, type: 0 }), // the probe
    frame({ kind: "clipboard_release", selection: 1 }),
    frame({ kind: "mouse_state", x: 10, y: 20, buttons: 0, display: 0 }),
  );
  for (let written = 0; written < grab.length; written++) {
    assert.equal(
      decodeCheckpoint(withOutbound(state, ok, written)).wire?.written,
      written || undefined,
    );
  }
  const cases: [string, Uint8Array, string, number?][] = [
    ["a written offset past the first message", ok, "MALFORMED", grab.length],
    ["a MONITORS_CONFIG", framed(1, MessageType.MONITORS_CONFIG, u32s(0, 0)), "FORBIDDEN_MESSAGE"],
    [
      "a CLIENT_DISCONNECTED",
      framed(1, MessageType.CLIENT_DISCONNECTED, new Uint8Array(0)),
      "FORBIDDEN_MESSAGE",
    ],
    ["an unknown type", framed(1, 99, new Uint8Array(4)), "FORBIDDEN_MESSAGE"],
    [
      "other capabilities",
      frame({ kind: "announce_capabilities", request: true, caps: [0xffff] }),
      "FORBIDDEN_MESSAGE",
    ],
    [
      "data of a type the host does not offer",
      frame({ kind: "clipboard", selection: 0, type: 2, data: new Uint8Array(1) }),
      "FORBIDDEN_MESSAGE",
    ],
    [
      "data of type NONE",
      frame({ kind: "clipboard", selection: 0, type: 0, data: new Uint8Array(0) }),
      "FORBIDDEN_MESSAGE",
    ],
    [
      "a grab of selection 3",
      frame({ kind: "clipboard_grab", selection: 3, serial: 0, types: [TEXT] }),
      "FORBIDDEN_MESSAGE",
    ],
    [
      "a mouse state other than the session's",
      frame({ kind: "mouse_state", x: 1, y: 1, buttons: 2, display: 0 }),
      "FORBIDDEN_MESSAGE",
    ],
    ["a message on port 2", framed(2, MessageType.CLIPBOARD_RELEASE, u32s(0)), "FORBIDDEN_MESSAGE"],
    [
      "a chunk over 2048 bytes",
      framed(1, MessageType.CLIPBOARD, concat(u32s(0, TEXT), new Uint8Array(3000)), 4096),
      "MALFORMED",
    ],
    ["bytes that do not parse", new Uint8Array(40).fill(0xff), "MALFORMED"],
    ["a message cut short", grab.subarray(0, 30), "MALFORMED"],
  ];
  for (const [what, outbound, code, written] of cases) {
    refused(withOutbound(state, outbound, written), code, what);
  }
});

test("decodeCheckpoint bounds the bytes in flight by the restoring pipeline's limits, before allocating", async () => {
  const state = await realState();
  // 200 MiB of 0xff as outbound bytes: refused on their size.
  refused(withOutbound(state, new Uint8Array(200 << 20).fill(0xff)), "TOO_LARGE", "200 MiB");
  // Inbound: a message header declaring 2 MiB is fine for 64 MiB pipelines, not for 1 MiB ones.
  const header = concat(u32s(1, 2048), u32s(1, MessageType.CLIPBOARD, 0, 0, 2 << 20));
  const bytes = encodeCheckpoint({
    ...state,
    wire: { inbound: header, outbound: new Uint8Array(0) },
  });
  assert.equal(decodeCheckpoint(bytes).wire?.inbound.length, header.length);
  refused(bytes, "MALFORMED", "a message over maxMessageSize", { maxMessageSize: 1 << 20 });
  assert.throws(
    () =>
      createHostPipeline({ readable: new ReadableStream(), writable: new WritableStream() }, {
        restore: bytes,
        resume: "continued",
        maxMessageSize: 1 << 20,
      }),
    (e) => e instanceof CheckpointError && e.code === "MALFORMED",
  );
});

/** Recomputes the CRC-32, as anyone who can write the store can. */
function fixCrc(bytes: Uint8Array): Uint8Array {
  let c = 0xffff_ffff;
  for (const b of bytes.subarray(0, bytes.length - 4)) {
    c ^= b;
    for (let k = 0; k < 8; k++) c = (c >>> 1) ^ (0xedb8_8320 & -(c & 1));
  }
  new DataView(bytes.buffer, bytes.byteOffset).setUint32(bytes.length - 4, (c ^ -1) >>> 0, true);
  return bytes;
}

test("openCheckpoint refuses a sealed checkpoint with any bit flipped, its MAC stripped, or another key", async () => {
  const key = crypto.getRandomValues(new Uint8Array(32));
  const sealed = await sealCheckpoint(encodeCheckpoint(await realState()), key);
  assert.deepEqual((await openCheckpoint(sealed, key)).guestCaps, [0x00038de7]);
  for (let bit = 0; bit < (sealed.length - 4) * 8; bit++) {
    const flipped = sealed.slice();
    flipped[bit >> 3]! ^= 1 << (bit & 7);
    fixCrc(flipped); // the CRC is no defence: the MAC is
    await assert.rejects(openCheckpoint(flipped, key), CheckpointError, `bit ${bit}`);
  }
  // The MAC stripped: the flag cleared, the 32 bytes removed, the length and CRC fixed.
  const stripped = concat(sealed.subarray(0, sealed.length - 36), new Uint8Array(4));
  stripped[6] = stripped[6]! & ~8;
  new DataView(stripped.buffer).setUint32(7, stripped.length, true);
  fixCrc(stripped);
  assert.equal(
    decodeCheckpoint(stripped).guestCaps?.[0],
    0x00038de7,
    "a valid checkpoint otherwise",
  );
  await assert.rejects(
    openCheckpoint(stripped, key),
    (e) => e instanceof CheckpointError && e.code === "UNAUTHENTICATED",
  );
  await assert.rejects(
    openCheckpoint(sealed, crypto.getRandomValues(new Uint8Array(32))),
    (e) => e instanceof CheckpointError && e.code === "BAD_MAC",
  );
  await assert.rejects(openCheckpoint(sealed, new Uint8Array(16)), RangeError);
});

test("HostPipeline.checkpoint and StateCheckpoint seal with a key, and createHostPipeline restores only what was opened", async () => {
  const key = crypto.getRandomValues(new Uint8Array(32));
  const toGuest = new TransformStream<Uint8Array, Uint8Array>();
  const toHost = new TransformStream<Uint8Array, Uint8Array>();
  const transport = { readable: toHost.readable, writable: toGuest.writable };
  const guest = createGuestPipeline({ readable: toGuest.readable, writable: toHost.writable });
  const checkpoints = new StateCheckpoint({ continuous: true, key });
  const a = createHostPipeline(transport, { checkpoints });
  await until(() => a.session.guestCaps !== undefined, "caps");
  const reader = checkpoints.readable.getReader();
  const continuous = (await reader.read()).value!;
  assert.equal(continuous[6]! & 8, 8, "continuous checkpoints are sealed");
  await openCheckpoint(continuous, key);
  reader.releaseLock();
  const handOff = await a.checkpoint();
  assert.equal(handOff[6]! & 8, 8, "so is the hand-off");
  assert.throws(
    () => createHostPipeline(transport, { restore: handOff, resume: "continued" }),
    (e) => e instanceof CheckpointError && e.code === "UNAUTHENTICATED",
  );
  const b = createHostPipeline(transport, {
    restore: await openCheckpoint(handOff, key),
    resume: "continued",
  });
  assert.deepEqual(b.session.guestCaps, [0x00038de7]);
  await b.close();
  await guest.done;
});
