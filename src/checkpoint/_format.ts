// This module is browser compatible.

import { getU32, putU32 } from "../wire/_bytes.ts";
import { CheckpointError } from "./checkpoint_error.ts";

/** "VDCK". */
export const MAGIC = [0x56, 0x44, 0x43, 0x4b] as const;
/** The format version this library writes; it reads any 2.x. */
export const MAJOR = 2;
export const MINOR = 0;
/** Magic, major, minor, flags and total length. */
export const HEADER_SIZE = 11;
export const CRC_SIZE = 4;

/** Header flags. */
export const FLAG_WIRE = 1 << 0;
export const FLAG_LOSSLESS = 1 << 1;
export const FLAG_DRAINED = 1 << 2;
/** A 32-byte HMAC-SHA-256 comes before the CRC; see `sealCheckpoint`. */
export const FLAG_MAC = 1 << 3;
export const KNOWN_FLAGS = FLAG_WIRE | FLAG_LOSSLESS | FLAG_DRAINED | FLAG_MAC;
export const MAC_SIZE = 32;

/** Section tags; bit 7 marks a section a reader may skip if it does not know it. */
export const OPTIONAL = 0x80;
export const Section = {
  SESSION: 0x01,
  INBOUND: 0x02,
  OUTBOUND: 0x03,
  GUEST_OFFERS: 0x81,
  HOST_REQUESTS: 0x82,
  MOUSE: 0x83,
  GUEST_MAX: 0x84,
  OWED: 0x85,
} as const;

/** Clipboard types in the SESSION section are bits of a mask: 1 to 31. */
export const MAX_MASK_TYPE = 31;

export const DEFAULT_MAX_CHECKPOINT_SIZE = 256 * 1024 * 1024;
export const DEFAULT_MAX_SECTIONS = 64;

/** The buffer small checkpoints are written into, then copied out of once. */
const scratch = new Uint8Array(4096);

/**
 * Appends bytes to one growing buffer; `finish` returns them. A section's
 * length is patched in when it closes, so nothing is written twice unless a
 * section outgrows the one byte reserved for its length. Allocating a typed
 * array costs Deno about 0.4 µs whatever its size, so a small checkpoint is
 * written into a shared scratch buffer and costs one allocation.
 */
export class ByteWriter {
  #buf: Uint8Array;
  #at = 0;

  /** `capacity`: the bytes expected, so that the buffer rarely grows. */
  constructor(capacity: number) {
    this.#buf = capacity <= scratch.length ? scratch : new Uint8Array(capacity);
  }

  get length(): number {
    return this.#at;
  }

  u8(v: number): void {
    this.#room(1);
    this.#buf[this.#at++] = v;
  }

  u32(v: number): void {
    this.#room(4);
    putU32(this.#buf, this.#at, v);
    this.#at += 4;
  }

  /** LEB128, at most 5 bytes for a u32. */
  varint(v: number): void {
    this.#room(5);
    let x = v >>> 0;
    while (x >= 0x80) {
      this.#buf[this.#at++] = (x & 0x7f) | 0x80;
      x >>>= 7;
    }
    this.#buf[this.#at++] = x;
  }

  bytes(b: Uint8Array): void {
    this.#room(b.length);
    this.#buf.set(b, this.#at);
    this.#at += b.length;
  }

  /** Starts a section: writes its tag and reserves a byte for its length. */
  open(tag: number): number {
    this.u8(tag);
    this.u8(0);
    return this.#at;
  }

  /** Ends the section `open` started at `start`, or drops it if it is empty and `optional`. */
  close(start: number, optional = false): void {
    const length = this.#at - start;
    if (length === 0 && optional) {
      this.#at = start - 2;
      return;
    }
    let extra = 0;
    for (let x = length >>> 7; x > 0; x >>>= 7) extra++;
    if (extra > 0) {
      this.#room(extra);
      this.#buf.copyWithin(start + extra, start, this.#at);
      this.#at += extra;
    }
    let at = start - 1;
    let x = length;
    for (; x >= 0x80; x >>>= 7) this.#buf[at++] = (x & 0x7f) | 0x80;
    this.#buf[at] = x;
  }

  /** The bytes written: the buffer itself when it is exactly full, a copy otherwise. */
  finish(): Uint8Array {
    const buf = this.#buf;
    return this.#at === buf.length && buf !== scratch ? buf : buf.slice(0, this.#at);
  }

  #room(n: number): void {
    if (this.#at + n <= this.#buf.length) return;
    const grown = new Uint8Array(Math.max(this.#buf.length * 2, this.#at + n));
    grown.set(this.#buf.subarray(0, this.#at));
    this.#buf = grown;
  }
}

/** Reads fields of one section; any overrun is a `MALFORMED` checkpoint. */
export class ByteReader {
  readonly #bytes: Uint8Array;
  readonly #what: string;
  #at = 0;

  constructor(bytes: Uint8Array, what: string) {
    this.#bytes = bytes;
    this.#what = what;
  }

  get done(): boolean {
    return this.#at === this.#bytes.length;
  }

  u8(): number {
    this.#need(1);
    return this.#bytes[this.#at++]!;
  }

  u32(): number {
    this.#need(4);
    const at = this.#at;
    this.#at += 4;
    return getU32(this.#bytes, at);
  }

  varint(): number {
    let value = 0;
    for (let shift = 0; shift < 35; shift += 7) {
      const byte = this.u8();
      value += (byte & 0x7f) * 2 ** shift;
      if ((byte & 0x80) === 0) {
        if (value > 0xffff_ffff) break;
        return value;
      }
    }
    throw malformed(`${this.#what} has a number over 32 bits`);
  }

  bytes(n: number): Uint8Array {
    this.#need(n);
    const out = this.#bytes.subarray(this.#at, this.#at + n);
    this.#at += n;
    return out;
  }

  end(): void {
    if (!this.done) {
      throw malformed(`${this.#what} has ${this.#bytes.length - this.#at} bytes too many`);
    }
  }

  #need(n: number): void {
    if (this.#bytes.length - this.#at < n) throw malformed(`${this.#what} ends too early`);
  }
}

/** A `MALFORMED` error. */
export function malformed(detail: string): CheckpointError {
  return new CheckpointError("MALFORMED", `Cannot decode checkpoint: ${detail}`);
}
