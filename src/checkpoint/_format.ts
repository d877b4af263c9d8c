// This module is browser compatible.

import { CheckpointError } from "./checkpoint_error.ts";

/** "VDCK". */
export const MAGIC = [0x56, 0x44, 0x43, 0x4b] as const;
/** The format version this library writes; it reads any 1.x. */
export const MAJOR = 1;
export const MINOR = 0;
/** Magic, major, minor, flags and total length. */
export const HEADER_SIZE = 11;
export const CRC_SIZE = 4;

/** Header flags. */
export const FLAG_WIRE = 1 << 0;
export const FLAG_LOSSLESS = 1 << 1;
export const KNOWN_FLAGS = FLAG_WIRE | FLAG_LOSSLESS;

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
} as const;

/** Clipboard types in the SESSION section are bits of a mask: 1 to 31. */
export const MAX_MASK_TYPE = 31;

export const DEFAULT_MAX_CHECKPOINT_SIZE = 256 * 1024 * 1024;
export const DEFAULT_MAX_SECTIONS = 64;

/** Appends bytes; `finish` returns them as one array. */
export class ByteWriter {
  #parts: Uint8Array[] = [];
  #small: number[] = [];
  #length = 0;

  get length(): number {
    return this.#length + this.#small.length;
  }

  u8(v: number): void {
    this.#small.push(v & 0xff);
  }

  u32(v: number): void {
    this.#small.push(v & 0xff, (v >>> 8) & 0xff, (v >>> 16) & 0xff, (v >>> 24) & 0xff);
  }

  /** LEB128, at most 5 bytes for a u32. */
  varint(v: number): void {
    let x = v >>> 0;
    while (x >= 0x80) {
      this.#small.push((x & 0x7f) | 0x80);
      x >>>= 7;
    }
    this.#small.push(x);
  }

  bytes(b: Uint8Array): void {
    this.#spill();
    this.#parts.push(b);
    this.#length += b.length;
  }

  finish(): Uint8Array {
    this.#spill();
    const out = new Uint8Array(this.#length);
    let at = 0;
    for (const part of this.#parts) {
      out.set(part, at);
      at += part.length;
    }
    return out;
  }

  #spill(): void {
    if (this.#small.length === 0) return;
    this.#parts.push(Uint8Array.from(this.#small));
    this.#length += this.#small.length;
    this.#small = [];
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
    const b = this.#bytes;
    const at = this.#at;
    this.#at += 4;
    return (b[at]! | b[at + 1]! << 8 | b[at + 2]! << 16 | b[at + 3]! << 24) >>> 0;
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
