// The fuzzer's input: a string of decision bytes. Every choice a fuzz target
// makes (which message, which call, where to cut, which byte to flip) reads
// the next bytes, so an input replays exactly, a mutated input is a nearby
// program, and deleting bytes shrinks the program (the minimizer's lever).

/**
 * Reads decisions from `bytes`; past their end it draws them from `rand` and
 * records them, or, without `rand`, returns zeros and reports `exhausted`
 * (programs stop at the first `more()` then).
 */
export class Source {
  readonly #bytes: Uint8Array;
  readonly #rand: (() => number) | undefined;
  #at = 0;
  #out: number[] = [];
  #exhausted = false;

  constructor(bytes: Uint8Array, rand?: () => number) {
    this.#bytes = bytes;
    this.#rand = rand;
  }

  /** The decisions read so far: replaying them alone runs the same program. */
  recorded(): Uint8Array {
    return Uint8Array.from(this.#out);
  }

  /** Whether a decision was asked for past the end, without `rand`. */
  get exhausted(): boolean {
    return this.#exhausted;
  }

  /** One decision byte. */
  u8(): number {
    let v: number;
    if (this.#at < this.#bytes.length) {
      v = this.#bytes[this.#at++]!;
    } else if (this.#rand !== undefined) {
      v = Math.floor(this.#rand() * 256);
    } else {
      this.#exhausted = true;
      return 0;
    }
    this.#out.push(v);
    return v;
  }

  /** An integer in [0, max], from as few bytes as `max` needs. */
  int(max: number): number {
    if (max <= 0) return 0;
    let v = 0;
    for (let span = max; span > 0; span = Math.floor(span / 256)) v = v * 256 + this.u8();
    return v % (max + 1);
  }

  /** An integer in [min, max]. */
  range(min: number, max: number): number {
    return min + this.int(max - min);
  }

  /** True with probability about `p`. */
  chance(p: number): boolean {
    return this.u8() < Math.round(p * 256);
  }

  /** One of `items`. */
  pick<T>(items: readonly T[]): T {
    return items[this.int(items.length - 1)]!;
  }

  /** A u32, biased to the edges and small values. */
  u32(): number {
    switch (this.int(7)) {
      case 0:
        return 0;
      case 1:
        return 0xffff_ffff;
      case 2:
        return this.int(16);
      case 3:
        return 0x7fff_ffff + this.int(2);
      default:
        return (this.u8() | this.u8() << 8 | this.u8() << 16 | this.u8() << 24) >>> 0;
    }
  }

  /** A seed for bulk randomness (contents, read sizes) that is not worth a byte each. */
  seed(): number {
    return (this.u8() | this.u8() << 8 | this.u8() << 16 | this.u8() << 24) >>> 0;
  }

  /**
   * Whether the program goes on: false past the end of a replayed input, and
   * otherwise with probability about `stop`.
   */
  more(stop = 1 / 16): boolean {
    const v = this.u8();
    return !this.#exhausted && v >= Math.round(stop * 256);
  }
}

/** Hex, for printing inputs. */
export function hex(bytes: Uint8Array): string {
  return Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
}

/** Parses `hex`. */
export function fromHex(text: string): Uint8Array {
  const out = new Uint8Array(text.length / 2);
  for (let i = 0; i < out.length; i++) out[i] = parseInt(text.slice(2 * i, 2 * i + 2), 16);
  return out;
}
