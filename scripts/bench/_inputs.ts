// Benchmark inputs, built once before timing with an encoder written here on
// purpose: it shares no code with the library's framer, so the benchmark
// checks the library against an independent reading of the wire format.

/** Message types used by the inputs (spice/vd_agent.h). */
export const T = {
  CLIPBOARD: 4,
  ANNOUNCE_CAPABILITIES: 6,
  CLIPBOARD_GRAB: 7,
  CLIPBOARD_REQUEST: 8,
} as const;

/** The Linux agent's capability word: SELECTION and GRAB_SERIAL among others. */
export const LINUX_CAPS = 0x00038de7;
/** `VD_AGENT_CLIPBOARD_UTF8_TEXT`. */
export const UTF8_TEXT = 1;

/** One message the guest sends, as the encoder lays it out. */
export interface Spec {
  type: number;
  payload: Uint8Array;
  /** Largest chunk payload; `Infinity` sends the message as one chunk, as the Linux agent does. */
  chunk: number;
}

/** What a correct reader of an input must find. */
export interface Expected {
  /** Messages in the input. */
  messages: number;
  /** {@linkcode messageChecksum} folded over every message, in order. */
  checksum: number;
  /** CLIPBOARD_GRAB messages (F answers each with a request). */
  grabs: number;
  /** CLIPBOARD messages and their payload bytes. */
  clipboards: number;
  clipboardBytes: number;
}

/** An input: its wire bytes and what they hold. */
export interface Input {
  name: string;
  description: string;
  wire: Uint8Array;
  expected: Expected;
  /**
   * Wire bytes of the prefix used for 7-byte reads (whole messages), and
   * what that prefix holds.
   */
  prefix: { bytes: number; expected: Expected };
}

/**
 * A checksum of one message that every case can compute from what it sees:
 * type, payload size and a cheap sum over the payload bytes. Order-sensitive
 * when folded with {@linkcode fold}.
 */
export function messageChecksum(type: number, data: Uint8Array): number {
  let sum = 0;
  for (let i = 0; i < data.length; i += 1) sum = (sum + data[i]! * ((i & 7) + 1)) | 0;
  return (Math.imul(type, 0x9e3779b1) ^ Math.imul(data.length, 0x85ebca6b) ^ sum) | 0;
}

/** Folds a message checksum into a running one. */
export function fold(running: number, message: number): number {
  return (Math.imul(running, 31) + message) | 0;
}

/** Wire bytes of `spec`: 8-byte chunk headers, one 20-byte message header. */
function wireSize(spec: Spec): number {
  const total = 20 + spec.payload.length;
  const chunks = spec.chunk === Infinity ? 1 : Math.ceil(total / spec.chunk);
  return total + 8 * chunks;
}

/**
 * Writes one message at `at`; returns the position after it. The 20-byte
 * message header always fits in the first chunk (chunks here are ≥ 2048).
 */
function writeMessage(out: Uint8Array, view: DataView, at: number, spec: Spec): number {
  const total = 20 + spec.payload.length;
  const max = spec.chunk === Infinity ? total : spec.chunk;
  if (max < 20) throw new RangeError("the reference encoder needs chunks of at least 20 bytes");
  for (let done = 0; done < total;) {
    const n = Math.min(max, total - done);
    view.setUint32(at, 1, true); // VDP_CLIENT_PORT
    view.setUint32(at + 4, n, true);
    at += 8;
    let from = done;
    if (done === 0) {
      view.setUint32(at, 1, true); // protocol
      view.setUint32(at + 4, spec.type, true);
      view.setUint32(at + 8, 0, true); // opaque, low and high halves: 0, as the real agents send
      view.setUint32(at + 12, 0, true);
      view.setUint32(at + 16, spec.payload.length, true);
      at += 20;
      from = 20;
    }
    // Payload bytes [from - 20, done + n - 20).
    out.set(spec.payload.subarray(from - 20, done + n - 20), at);
    at += done + n - from;
    done += n;
  }
  return at;
}

/** Builds wire bytes and the expected results for a list of messages. */
export function encode(specs: readonly Spec[]): { wire: Uint8Array; expected: Expected } {
  let size = 0;
  for (const s of specs) size += wireSize(s);
  const wire = new Uint8Array(size);
  const view = new DataView(wire.buffer);
  let at = 0;
  const expected = emptyExpected();
  for (const s of specs) {
    at = writeMessage(wire, view, at, s);
    account(expected, s.type, s.payload);
  }
  if (at !== size) throw new Error(`encoder wrote ${at} bytes, planned ${size}`);
  return { wire, expected };
}

export function emptyExpected(): Expected {
  return { messages: 0, checksum: 0, grabs: 0, clipboards: 0, clipboardBytes: 0 };
}

/** Adds one message to an expectation. */
export function account(e: Expected, type: number, payload: Uint8Array): void {
  e.messages++;
  e.checksum = fold(e.checksum, messageChecksum(type, payload));
  if (type === T.CLIPBOARD_GRAB) e.grabs++;
  if (type === T.CLIPBOARD) {
    e.clipboards++;
    e.clipboardBytes += payload.length - 8;
  }
}

function u32s(...words: number[]): Uint8Array {
  const out = new Uint8Array(4 * words.length);
  const v = new DataView(out.buffer);
  words.forEach((w, i) => v.setUint32(4 * i, w >>> 0, true));
  return out;
}

/** ANNOUNCE_CAPABILITIES request=1 with the Linux agent's word: 36 bytes on the wire. */
export function caps(): Spec {
  return { type: T.ANNOUNCE_CAPABILITIES, payload: u32s(1, LINUX_CAPS), chunk: 2048 };
}

/**
 * A guest CLIPBOARD_GRAB of selection CLIPBOARD with a serial and one type:
 * 8 chunk header + 20 message header + 12 payload = 40 bytes on the wire.
 */
export function grab(serial: number): Spec {
  return { type: T.CLIPBOARD_GRAB, payload: u32s(0, serial, UTF8_TEXT), chunk: 2048 };
}

/** A guest CLIPBOARD message of `size` payload bytes (selection, type, data). */
export function clipboard(size: number, seed: number, chunk: number): Spec {
  const payload = new Uint8Array(size);
  payload.set(u32s(0, UTF8_TEXT));
  fill(payload.subarray(8), seed);
  return { type: T.CLIPBOARD, payload, chunk };
}

/** Fills bytes with a xorshift32 sequence (fast, deterministic). */
export function fill(bytes: Uint8Array, seed: number): void {
  let x = seed | 1;
  const words = new Uint32Array(bytes.buffer, bytes.byteOffset, bytes.length >>> 2);
  for (let i = 0; i < words.length; i++) {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    words[i] = x;
  }
}

const MiB = 1024 * 1024;

/** Sizes of the inputs; `quick` shrinks them for a smoke run. */
export interface InputSizes {
  small: number;
  large: number;
  single: number;
  /** Approximate bytes of the 7-byte-read prefix. */
  prefix: number;
}

/**
 * The guest's 12-byte answer to a request: CLIPBOARD (selection, type, text),
 * 8 + 20 + 20 = 48 bytes on the wire.
 */
export function answer(serial: number): Spec {
  const payload = new Uint8Array(20);
  payload.set(u32s(0, UTF8_TEXT, serial, serial ^ 0x5a5a5a5a, 0x2a2a2a2a));
  return { type: T.CLIPBOARD, payload, chunk: 2048 };
}

export const FULL: InputSizes = { small: 1_000_000, large: 32, single: 8, prefix: MiB };
export const QUICK: InputSizes = { small: 2_000, large: 2, single: 2, prefix: 8 * 1024 };

/** The three inputs of the issue, each led by the guest's capabilities. */
export function buildInputs(sizes: InputSizes, messageSize = MiB): Input[] {
  const small: Spec[] = [caps()];
  for (let i = 0; i < sizes.small; i++) small.push(grab(i));
  // The same number of messages as a conversation: each grab answered.
  const conversation: Spec[] = [caps()];
  for (let i = 0; i < sizes.small / 2; i++) conversation.push(grab(i), answer(i));
  const multi: Spec[] = [caps()];
  const single: Spec[] = [caps()];
  for (let i = 0; i < sizes.large; i++) {
    multi.push(grab(i), clipboard(messageSize, i + 1, 2048));
  }
  for (let i = 0; i < sizes.single; i++) {
    single.push(grab(i), clipboard(messageSize, i + 1, Infinity));
  }
  const mib = messageSize / MiB;
  return [
    input(
      "small",
      `${sizes.small.toLocaleString("en")} guest CLIPBOARD_GRABs, 40 B each on the wire`,
      small,
      sizes.prefix,
    ),
    input(
      "small-rt",
      `${
        (sizes.small / 2).toLocaleString("en")
      } guest CLIPBOARD_GRABs (40 B), each followed by the guest's answer to the host's request (48 B)`,
      conversation,
      sizes.prefix,
    ),
    input(
      "multi",
      `${sizes.large} × ${mib} MiB CLIPBOARD messages in 2048-byte chunks, each after a grab`,
      multi,
      sizes.prefix,
    ),
    input(
      "single",
      `${sizes.single} × ${mib} MiB CLIPBOARD messages as single chunks, each after a grab`,
      single,
      sizes.prefix,
    ),
  ];
}

function input(name: string, description: string, specs: Spec[], prefixBytes: number): Input {
  const { wire, expected } = encode(specs);
  // The prefix: whole messages until at least `prefixBytes` wire bytes.
  const pe = emptyExpected();
  let bytes = 0;
  for (const s of specs) {
    if (bytes >= prefixBytes) break;
    bytes += wireSize(s);
    account(pe, s.type, s.payload);
  }
  return { name, description, wire, expected, prefix: { bytes, expected: pe } };
}

/** Cuts bytes into reads of `size` (views, not copies). */
export function cut(bytes: Uint8Array, size: number): Uint8Array[] {
  const out: Uint8Array[] = [];
  for (let at = 0; at < bytes.length; at += size) out.push(bytes.subarray(at, at + size));
  return out;
}
