// What the fuzz targets feed the library: mutated captures of the real
// Linux agent, structure-aware messages of every type in every layout,
// random bytes, and huge messages streamed from one buffer. Wire bytes are
// built with the independent encoder of `_helpers.ts`.
import {
  Capability,
  capabilityWords,
  encodeMessage,
  MessageType,
  type PayloadOptions,
} from "../mod.ts";
import { crc32 } from "../src/checkpoint/_crc32.ts";
import { chunk, concat, fixture, message, prng, randBytes, u32s } from "./_helpers.ts";
import { KINDS, LAYOUTS, randomPayload } from "./_payloads.ts";
import type { Source } from "./_fuzz_source.ts";

/** The real agent's captures, and where each of their chunks starts. */
export interface Captures {
  g2h: Uint8Array;
  h2g: Uint8Array;
  g2hChunks: number[];
  h2gChunks: number[];
}

let captures: Promise<Captures> | undefined;

/** Loads the captures of `tests/fixtures/linux-agent-0.22.1/` once. */
export function loadCaptures(): Promise<Captures> {
  captures ??= (async () => {
    const g2h = await fixture("linux-agent-0.22.1/guest-to-host.bin");
    const h2g = await fixture("linux-agent-0.22.1/host-to-guest.bin");
    return { g2h, h2g, g2hChunks: chunkStarts(g2h), h2gChunks: chunkStarts(h2g) };
  })();
  return captures;
}

function chunkStarts(wire: Uint8Array): number[] {
  const view = new DataView(wire.buffer, wire.byteOffset, wire.byteLength);
  const out: number[] = [];
  for (let at = 0; at + 8 <= wire.length; at += 8 + view.getUint32(at + 4, true)) out.push(at);
  return out;
}

/** A slice of a capture: whole chunks, or from and to anywhere. */
export function captureSlice(
  src: Source,
  wire: Uint8Array,
  starts: number[],
  aligned = src.chance(0.7),
): Uint8Array {
  if (aligned) {
    const first = src.int(starts.length - 1);
    const last = Math.min(starts.length, first + src.range(1, 8));
    return wire.slice(starts[first], starts[last] ?? wire.length);
  }
  const from = src.int(wire.length - 1);
  const to = src.chance(0.5) ? wire.length : Math.min(wire.length, from + src.range(1, 4096));
  return wire.slice(from, to);
}

const INTERESTING_U32 = [
  0,
  1,
  2,
  3,
  8,
  19,
  20,
  21,
  2047,
  2048,
  2049,
  0x7fff_ffff,
  0x8000_0000,
  0xffff_fffe,
  0xffff_ffff,
];

/** Applies up to `max` random mutations; returns new bytes. */
export function mutate(src: Source, input: Uint8Array, max = 8): Uint8Array {
  let bytes: Uint8Array = input.slice();
  const n = src.int(max);
  for (let i = 0; i < n; i++) {
    const at = bytes.length === 0 ? 0 : src.int(bytes.length - 1);
    switch (src.int(7)) {
      case 0: // flip a bit
        if (bytes.length > 0) bytes[at]! ^= 1 << src.int(7);
        break;
      case 1: // set a byte
        if (bytes.length > 0) bytes[at] = src.pick([0, 1, 0x7f, 0x80, 0xff, src.u8()]);
        break;
      case 2: { // set a u32 field, aligned to the chunk/message header grid or not
        const v = src.chance(0.7) ? src.pick(INTERESTING_U32) : src.u32();
        const p = src.chance(0.5) ? at - (at % 4) : at;
        for (let k = 0; k < 4 && p + k < bytes.length; k++) bytes[p + k] = (v >>> (8 * k)) & 0xff;
        break;
      }
      case 3: // insert random bytes
        bytes = concat(
          bytes.subarray(0, at),
          randBytes(prng(src.seed()), src.range(1, 32)),
          bytes.subarray(at),
        );
        break;
      case 4: // delete a range
        bytes = concat(bytes.subarray(0, at), bytes.subarray(at + src.range(1, 64)));
        break;
      case 5: { // duplicate a range
        const end = Math.min(bytes.length, at + src.range(1, 256));
        bytes = concat(bytes.subarray(0, end), bytes.subarray(at, end), bytes.subarray(end));
        break;
      }
      case 6: // truncate
        bytes = bytes.slice(0, at);
        break;
      default: { // add or subtract a little from a u32
        if (bytes.length < at + 4) break;
        const view = new DataView(bytes.buffer, bytes.byteOffset);
        view.setUint32(at, view.getUint32(at, true) + src.range(-4, 4) >>> 0, true);
      }
    }
  }
  return bytes;
}

/**
 * Cuts bytes into reads: whole, a fixed size, or random sizes, in at most
 * about `maxReads` reads (sizes grow to fit). Views, not copies.
 */
export function cutReads(src: Source, bytes: Uint8Array, maxReads: number): Uint8Array[] {
  const style = src.int(5);
  const out: Uint8Array[] = [];
  if (style === 0 || bytes.length === 0) return bytes.length === 0 ? [] : [bytes];
  const least = Math.ceil(bytes.length / maxReads);
  const fixed = Math.max(least, src.pick([1, 2, 7, 19, 20, 21, 28, 2056, 4093, 65536]));
  const rand = prng(src.seed());
  const max = Math.max(2 * least, src.pick([3, 64, 2100, 70_000]));
  for (let at = 0; at < bytes.length;) {
    const n = style === 1 ? fixed : 1 + Math.floor(rand() * max);
    out.push(bytes.subarray(at, at + n));
    at += n;
  }
  return out;
}

/** Frames a message: as one chunk, in chunks of at most 2048, or cut anywhere; port 1 mostly. */
export function frame(src: Source, type: number, payload: Uint8Array, port = 1): Uint8Array {
  const m = message(type, payload);
  const style = src.int(3);
  if (style === 0 || style === 3) return chunk(port, m);
  const parts: Uint8Array[] = [];
  const rand = prng(src.seed());
  const size = style === 1 ? 2048 : 0;
  for (let at = 0; at < m.length;) {
    const n = size || 1 + Math.floor(rand() * 64);
    parts.push(chunk(port, m.subarray(at, at + n)));
    at += n;
  }
  return concat(...parts);
}

/** The Linux agent's capabilities and QEMU's. */
export const LINUX_CAPS = 0x00038de7;
export const QEMU_CAPS = capabilityWords([
  Capability.MOUSE_STATE,
  Capability.CLIPBOARD_BY_DEMAND,
  Capability.CLIPBOARD_SELECTION,
  Capability.CLIPBOARD_GRAB_SERIAL,
])[0]!;

/** What a generator believes the peer negotiated, and its serials. */
export interface PeerModel {
  layout: PayloadOptions;
  serials: number[];
  /** What the session offers the peer now: the peer pastes these mostly. */
  offers?: () => [selection: number, types: readonly number[]][];
  /** The session's requests waiting for the peer: the peer answers these mostly. */
  waiting?: () => [selection: number, type: number][];
}

function capsWords(src: Source, usual: number): number[] {
  switch (src.int(9)) {
    case 0:
      return [];
    case 1:
      return Array.from({ length: src.range(2, 20) }, () => src.u32());
    case 2:
      return [src.u32()];
    case 3:
      return [0x6b7]; // the Windows agent: no SELECTION, no GRAB_SERIAL
    default:
      return [usual];
  }
}

const TYPES = [1, 1, 1, 2, 3, 4, 5, 6, 0, 7, 0xffff_ffff];

/** A clipboard message payload as a peer lays it out under `layout`. */
function clipboardPayload(src: Source, kind: number, model: PeerModel): [number, Uint8Array] {
  const layout = model.layout;
  let sel = src.chance(0.9) ? src.int(2) : src.u8();
  let chosen: number | undefined;
  if (kind === 1 || kind === 2) {
    // Paste what the session offers; answer what it asked for.
    const live = kind === 1
      ? (model.offers?.() ?? []).map(([s, types]) => [s, src.pick(types)] as const)
      : model.waiting?.() ?? [];
    if (live.length > 0 && src.chance(0.8)) [sel, chosen] = src.pick(live);
  }
  const prefix = layout.selection ? u32s(sel) : new Uint8Array(0);
  switch (kind) {
    case 0: { // grab
      const s = sel % 3;
      const last = model.serials[s] ?? 0;
      const serial = src.pick([last, last, last + 1, last - 1 >>> 0, src.u32()]);
      if (serial === last) model.serials[s] = last + 1 >>> 0;
      const types = Array.from(
        { length: src.chance(0.95) ? src.range(1, 4) : src.int(100) },
        () => src.pick(TYPES),
      );
      return [
        MessageType.CLIPBOARD_GRAB,
        concat(prefix, layout.grabSerial ? u32s(serial) : new Uint8Array(0), u32s(...types)),
      ];
    }
    case 1: // request
      return [MessageType.CLIPBOARD_REQUEST, concat(prefix, u32s(chosen ?? src.pick(TYPES)))];
    case 2: { // data, sometimes large
      const n = src.chance(0.9) ? src.int(300) : src.int(100_000);
      return [
        MessageType.CLIPBOARD,
        concat(prefix, u32s(chosen ?? src.pick(TYPES)), randBytes(prng(src.seed()), n)),
      ];
    }
    case 3: // release
      return [MessageType.CLIPBOARD_RELEASE, prefix];
    default: // the Linux agent's 1-byte release
      return [MessageType.CLIPBOARD_RELEASE, new Uint8Array([sel])];
  }
}

/**
 * A message whose header declares another size than it carries: over the
 * limits, past its chunk, or short of it, with a body cut anywhere.
 */
export function lyingMessage(src: Source, maxMessageSize: number): Uint8Array {
  const body = randBytes(prng(src.seed()), src.int(src.chance(0.8) ? 40 : 3000));
  const size = src.pick([
    maxMessageSize,
    maxMessageSize + 1,
    0xffff_ffff,
    0xffff_ffff - 20,
    0x8000_0000,
    body.length + src.range(1, 5000),
    src.u32(),
  ]);
  const type = src.chance(0.7) ? src.range(1, 16) : src.u32();
  const m = message(type, body, { size });
  const cut = src.chance(0.5) ? m.length : src.range(1, m.length);
  const port = src.chance(0.9) ? 1 : 2;
  return concat(
    chunk(port, m.subarray(0, cut)),
    cut < m.length ? chunk(port, m.subarray(cut)) : m.subarray(0, 0),
  );
}

/** A clipboard message from a peer, framed: 0 grab, 1 request, 2 data, 3 release. */
export function clipboardMessage(src: Source, model: PeerModel, kind: number): Uint8Array {
  const [type, payload] = clipboardPayload(src, kind, model);
  return frame(src, type, payload);
}

/** A message from a peer, framed: clipboard traffic mostly, anything sometimes. */
export function peerMessage(src: Source, model: PeerModel, usualCaps: number): Uint8Array {
  const port = src.chance(0.95) ? 1 : 2;
  const r = src.int(31);
  if (r === 0) {
    const words = capsWords(src, usualCaps);
    const request = src.chance(0.5) ? 1 : src.pick([0, 2, 0xffff_ffff]);
    if (words.length === 1) {
      const has = (bit: number) => (words[0]! & (1 << bit)) !== 0;
      model.layout = {
        selection: has(Capability.CLIPBOARD_SELECTION),
        grabSerial: has(Capability.CLIPBOARD_GRAB_SERIAL),
      };
      if (request) model.serials = [0, 0, 0];
    }
    return frame(src, MessageType.ANNOUNCE_CAPABILITIES, u32s(request, ...words), port);
  }
  if (r < 22) {
    // Grabs, pastes and data mostly; releases now and then.
    const kind = src.pick([0, 0, 0, 1, 1, 1, 1, 2, 2, 2, 3, 4]);
    const [type, payload] = clipboardPayload(src, kind, model);
    return frame(src, type, payload, port);
  }
  if (r < 26) {
    // Any type in any layout, from the seeded payload generator.
    const layout = src.pick(LAYOUTS);
    const m = encodeMessage(randomPayload(prng(src.seed()), layout, src.pick(KINDS)), layout);
    return frame(src, m.type, m.data.slice(), port);
  }
  if (r < 28) {
    // A known type with a payload of the wrong size.
    return frame(src, src.range(1, 16), randBytes(prng(src.seed()), src.int(40)), port);
  }
  return frame(src, src.u32(), randBytes(prng(src.seed()), src.int(64)), port);
}

/**
 * A huge message of `type` declaring `size` payload bytes, in chunks of
 * `chunkSize` (or one chunk), as reads of about 64 KiB that are views of one
 * buffer of zeros with chunk headers: nothing proportional to `size` is made.
 */
export function hugeReads(type: number, size: number, chunkSize: number): Uint8Array[] {
  // (chunks larger than 64 KiB are sent as one chunk)
  const total = 20 + size;
  if (chunkSize >= total || chunkSize > 65536) {
    // One chunk: its header, the message header, then zeros.
    const reads = [concat(u32s(1, total), message(type, new Uint8Array(0), { size }))];
    const zeros = new Uint8Array(65536);
    for (let left = size; left > 0; left -= zeros.length) {
      reads.push(left >= zeros.length ? zeros : zeros.subarray(0, left));
    }
    return reads;
  }
  const per = Math.min(chunkSize, total);
  const perRead = Math.max(1, Math.floor(65536 / (8 + per)));
  const pattern = new Uint8Array(perRead * (8 + per));
  for (let at = 0; at < pattern.length; at += 8 + per) pattern.set(u32s(1, per), at);
  const reads: Uint8Array[] = [];
  const first = chunk(1, message(type, new Uint8Array(Math.max(0, per - 20)), { size }));
  reads.push(first);
  let left = total - per;
  while (left >= per * perRead) {
    reads.push(pattern);
    left -= per * perRead;
  }
  while (left >= per) {
    reads.push(pattern.subarray(0, 8 + per));
    left -= per;
  }
  if (left > 0) reads.push(concat(u32s(1, left), new Uint8Array(left)));
  return reads;
}

/** Types with a finite `maxPayloadSize`. */
export const BOUNDED = [1, 3, 5, 6, 7, 8, 9, 11, 13, 14];

/** Mutates a checkpoint, and mostly fixes its CRC so the mutation reaches the parser. */
export function mutateCheckpoint(src: Source, bytes: Uint8Array): Uint8Array {
  const out = mutate(src, bytes, 4);
  if (out.length >= 15 && src.chance(0.8)) {
    const view = new DataView(out.buffer, out.byteOffset, out.byteLength);
    if (src.chance(0.8)) view.setUint32(7, out.length, true); // the length field
    view.setUint32(out.length - 4, crc32(out.subarray(0, out.length - 4)), true);
  }
  return out;
}
