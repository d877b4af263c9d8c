// Instruments for `deno task demo`: an in-memory byte link between the guest and whichever
// relay holds it, which logs who read and wrote every byte, and a parser of the vdagent
// framing written apart from the library's, so that the demo's transcript and its count of
// lost messages do not take the library's word for anything.

/** One message parsed from a byte stream. */
export interface TappedMessage {
  port: number;
  type: number;
  opaque: bigint;
  data: Uint8Array;
  /** How many chunks carried it. */
  chunks: number;
}

/**
 * Splits a byte stream into chunks (port u32, size u32, payload) and reassembles messages
 * (protocol u32, type u32, opaque u64, size u32, payload) per port. Little-endian throughout.
 */
export class WireTap {
  #buffer = new Uint8Array(0);
  readonly #partial = new Map<number, { parts: Uint8Array[]; have: number; chunks: number }>();
  /** Bytes pushed so far. */
  offset = 0;

  /** Feeds bytes; returns the messages they complete. Throws on bytes that cannot be framing. */
  push(bytes: Uint8Array): TappedMessage[] {
    const buffer = new Uint8Array(this.#buffer.length + bytes.length);
    buffer.set(this.#buffer);
    buffer.set(bytes, this.#buffer.length);
    this.offset += bytes.length;
    const view = new DataView(buffer.buffer);
    const out: TappedMessage[] = [];
    let at = 0;
    while (buffer.length - at >= 8) {
      const port = view.getUint32(at, true);
      const size = view.getUint32(at + 4, true);
      if ((port !== 1 && port !== 2) || size === 0 || size > 0x0fff_ffff) {
        throw new Error(`not vdagent framing at byte ${this.offset - buffer.length + at}`);
      }
      if (buffer.length - at - 8 < size) break;
      this.#chunk(port, buffer.slice(at + 8, at + 8 + size), out);
      at += 8 + size;
    }
    this.#buffer = buffer.slice(at);
    return out;
  }

  /** Whether the stream so far ends on a message boundary. */
  get atBoundary(): boolean {
    return this.#buffer.length === 0 && [...this.#partial.values()].every((p) => p.have === 0);
  }

  #chunk(port: number, data: Uint8Array, out: TappedMessage[]): void {
    const partial = this.#partial.get(port) ?? { parts: [], have: 0, chunks: 0 };
    this.#partial.set(port, partial);
    partial.parts.push(data);
    partial.have += data.length;
    partial.chunks++;
    for (;;) {
      if (partial.have < 20) return;
      const head = join(partial.parts, 20);
      const header = new DataView(head.buffer, head.byteOffset, 20);
      const size = header.getUint32(16, true);
      if (partial.have < 20 + size) return;
      const all = join(partial.parts, partial.have);
      out.push({
        port,
        type: header.getUint32(4, true),
        opaque: header.getBigUint64(8, true),
        data: all.slice(20, 20 + size),
        chunks: partial.chunks,
      });
      const rest = all.subarray(20 + size);
      partial.parts = rest.length > 0 ? [rest] : [];
      partial.have = rest.length;
      partial.chunks = rest.length > 0 ? 1 : 0;
    }
  }
}

function join(parts: Uint8Array[], length: number): Uint8Array {
  if (parts.length === 1 || parts[0]!.length >= length) return parts[0]!.subarray(0, length);
  const out = new Uint8Array(length);
  let at = 0;
  for (const part of parts) {
    if (at >= length) break;
    const n = Math.min(part.length, length - at);
    out.set(part.subarray(0, n), at);
    at += n;
  }
  return out;
}

/** Who moved which bytes over a link. */
export interface LinkRecord {
  by: string;
  bytes: Uint8Array;
}

/** One party's end of a link. */
export interface LinkEnd {
  readable: ReadableStream<Uint8Array>;
  writable: WritableStream<Uint8Array>;
  /** Lets go of the link: a read this end has pending takes nothing. */
  detach(): void;
}

/**
 * A one-way byte link, as a socket held open by a proxy: whatever end is attached reads what
 * was written, and bytes nobody read wait for the next reader. Reads are at most 64 KiB, and
 * pause at `stopAt` while `onStop` runs (the demo hands the relay off there).
 */
export class Link {
  readonly reads: LinkRecord[] = [];
  readonly writes: LinkRecord[] = [];
  written = 0;
  read = 0;
  stopAt: number | undefined;
  onStop: (() => Promise<void>) | undefined;
  /** Called with every read, before the reader gets the bytes. */
  onRead: ((bytes: Uint8Array, by: string) => void) | undefined;
  readonly #pending: Uint8Array[] = [];
  #wake: (() => void) | undefined;
  #closed = false;

  /** An end for `by`, which names it in the records. */
  end(by: string): LinkEnd {
    let detached = false;
    const readable = new ReadableStream<Uint8Array>({
      pull: async (controller) => {
        const bytes = await this.#take(by, () => detached);
        if (bytes === undefined) controller.close();
        else if (bytes !== null) controller.enqueue(bytes);
      },
    }, { highWaterMark: 0 });
    const writable = new WritableStream<Uint8Array>({
      write: (bytes) => {
        const copy = bytes.slice();
        this.writes.push({ by, bytes: copy });
        this.written += copy.length;
        this.#pending.push(copy);
        this.#wake?.();
      },
      close: () => {
        this.#closed = true;
        this.#wake?.();
      },
    });
    return {
      readable,
      writable,
      detach: () => {
        detached = true;
        this.#wake?.();
      },
    };
  }

  /** Bytes for `by`; `undefined` at the end; `null` once detached (nothing taken). */
  async #take(by: string, detached: () => boolean): Promise<Uint8Array | undefined | null> {
    for (;;) {
      if (detached()) return null;
      if (this.stopAt !== undefined && this.read >= this.stopAt && this.onStop !== undefined) {
        const onStop = this.onStop;
        this.onStop = undefined;
        await onStop();
        continue;
      }
      const head = this.#pending[0];
      if (head !== undefined) {
        const limit = Math.min(64 * 1024, (this.stopAt ?? Infinity) - this.read);
        const n = Math.min(head.length, limit > 0 ? limit : head.length);
        if (n === head.length) this.#pending.shift();
        else this.#pending[0] = head.subarray(n);
        const bytes = head.subarray(0, n);
        this.read += n;
        this.reads.push({ by, bytes });
        this.onRead?.(bytes, by);
        return bytes;
      }
      if (this.#closed) return undefined;
      await new Promise<void>((resolve) => this.#wake = resolve);
    }
  }

  /** The bytes `by` read (or wrote), in order, as one array. */
  bytesOf(records: LinkRecord[], by?: string): Uint8Array {
    const mine = records.filter((r) => by === undefined || r.by === by);
    const out = new Uint8Array(mine.reduce((n, r) => n + r.bytes.length, 0));
    let at = 0;
    for (const r of mine) {
      out.set(r.bytes, at);
      at += r.bytes.length;
    }
    return out;
  }
}

/** ANSI styles, or none for NO_COLOR and anything that is not a terminal. */
export function palette(color: boolean) {
  const style = (open: number, close: number) => (text: string) =>
    color ? `\x1b[${open}m${text}\x1b[${close}m` : text;
  return {
    bold: style(1, 22),
    dim: style(2, 22),
    red: style(31, 39),
    green: style(32, 39),
    yellow: style(33, 39),
    blue: style(34, 39),
    magenta: style(35, 39),
    cyan: style(36, 39),
  };
}
