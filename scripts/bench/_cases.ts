// The benchmark's cases. Each takes the prepared reads of one input and
// returns what it saw; with `verify` it also computes checksums (untimed).
import type * as Mod from "../../mod.ts";
import type { ChunkReader } from "../../src/wire/_chunk_reader.ts";
import type { MessageReader } from "../../src/wire/_message_reader.ts";
import type * as HostPort from "../../src/session/_session_cores.ts";
import { type Expected, fold, messageChecksum, T, UTF8_TEXT } from "./_inputs.ts";
import { NaiveDeframer } from "./naive_deframer.ts";

/** The library, passed in so that Deno can use the sources and Node the npm build. */
export interface BenchLibrary {
  /** Where the library came from, recorded with the results. */
  source: string;
  ChunkDeframer: typeof Mod.ChunkDeframer;
  MessageAssembler: typeof Mod.MessageAssembler;
  MessageFramer: typeof Mod.MessageFramer;
  HostSession: typeof Mod.HostSession;
  createHostPipeline: typeof Mod.createHostPipeline;
  /** The synchronous cores (src/wire/_chunk_reader.ts, _message_reader.ts). */
  ChunkReader: typeof ChunkReader;
  MessageReader: typeof MessageReader;
  encodeCheckpoint: typeof Mod.encodeCheckpoint;
  decodeCheckpoint: typeof Mod.decodeCheckpoint;
  /** The host session's snapshot and restore (src/session/_session_cores.ts). */
  hostPort: typeof HostPort;
}

/** What a case saw. Fields a case cannot see stay undefined. */
export interface Tally {
  /** Reads (R1/R2) or messages delivered. */
  items: number;
  bytes: number;
  checksum?: number;
  /** S and F: grabs the handler saw; clipboard bytes that arrived. */
  grabs?: number;
  clipboardBytes?: number;
  /** F: what the pipeline wrote back. */
  output?: OutputCheck;
}

export type CaseRun = (reads: readonly Uint8Array[], verify: boolean) => Promise<Tally>;

export interface CaseDef {
  id: string;
  title: string;
  run: CaseRun;
}

/** A source that enqueues the next prepared read whenever it is pulled. */
export function source(reads: readonly Uint8Array[]): ReadableStream<Uint8Array> {
  let i = 0;
  return new ReadableStream<Uint8Array>({
    pull(controller) {
      if (i < reads.length) controller.enqueue(reads[i++]!);
      else controller.close();
    },
  });
}

/** R0: memcpy of the same reads into one preallocated buffer as big as the input. */
export function memcpyCase(target: Uint8Array): CaseDef {
  return {
    id: "R0",
    title: "Uint8Array.set of each read into a reused buffer of the input's size",
    run(reads) {
      let at = 0;
      for (const read of reads) {
        target.set(read, at);
        at += read.length;
      }
      return Promise.resolve({ items: reads.length, bytes: at });
    },
  };
}

/**
 * R0a: memcpy into fresh buffers of `size` bytes, a new one whenever the last
 * is full: the copy a one-copy reader of messages of that size must make,
 * with the allocation of each message's buffer (zeroing, page faults, and
 * the garbage collector's freeing of the old ones) included.
 */
export function memcpyFreshCase(size: number): CaseDef {
  return {
    id: "R0a",
    title: `Uint8Array.set of each read into fresh ${size}-byte buffers`,
    run(reads) {
      let target = new Uint8Array(size);
      let at = 0;
      let bytes = 0;
      for (const read of reads) {
        for (let i = 0; i < read.length;) {
          if (at === size) {
            target = new Uint8Array(size);
            at = 0;
          }
          const n = Math.min(read.length - i, size - at);
          target.set(n === read.length ? read : read.subarray(i, i + n), at);
          at += n;
          i += n;
          bytes += n;
        }
      }
      return Promise.resolve({ items: reads.length, bytes });
    },
  };
}

function byteSink(t: Tally): WritableStream<Uint8Array> {
  return new WritableStream({
    write(read) {
      t.items++;
      t.bytes += read.length;
    },
  });
}

function batchSink(t: Tally, verify: boolean): WritableStream<Mod.AgentMessage[]> {
  return new WritableStream({
    write(batch) {
      t.items += batch.length;
      if (!verify) return;
      for (const m of batch) {
        t.bytes += m.data.length;
        t.checksum = fold(t.checksum!, messageChecksum(m.type, m.data));
      }
    },
  });
}

function tally(verify: boolean): Tally {
  return verify ? { items: 0, bytes: 0, checksum: 0 } : { items: 0, bytes: 0 };
}

export function cases(lib: BenchLibrary, expected: Expected): CaseDef[] {
  return [
    {
      id: "R1",
      title: "source.pipeTo(sink)",
      async run(reads) {
        const t = tally(false);
        await source(reads).pipeTo(byteSink(t));
        return t;
      },
    },
    {
      id: "R2",
      title: "source.pipeThrough(new TransformStream()).pipeTo(sink)",
      async run(reads) {
        const t = tally(false);
        await source(reads).pipeThrough(new TransformStream()).pipeTo(byteSink(t));
        return t;
      },
    },
    {
      id: "N",
      title: "naive reader (scripts/bench/naive_deframer.ts)",
      async run(reads, verify) {
        const t = tally(verify);
        await source(reads).pipeThrough(new NaiveDeframer()).pipeTo(
          new WritableStream({
            write(m) {
              t.items++;
              if (verify) {
                t.bytes += m.data.length;
                t.checksum = fold(t.checksum!, messageChecksum(m.type, m.data));
              }
            },
          }),
        );
        return t;
      },
    },
    {
      id: "D",
      title: "ChunkDeframer → MessageAssembler",
      async run(reads, verify) {
        const t = tally(verify);
        await source(reads)
          .pipeThrough(new lib.ChunkDeframer())
          .pipeThrough(new lib.MessageAssembler())
          .pipeTo(batchSink(t, verify));
        return t;
      },
    },
    {
      id: "S",
      title: "ChunkDeframer → MessageAssembler → HostSession (handler counts grabs)",
      async run(reads) {
        const t: Tally = { items: 0, bytes: 0, grabs: 0, clipboardBytes: 0 };
        const session = new lib.HostSession({
          clipboard: { onGuestGrab: () => t.grabs!++ },
          onDiagnostic(d) {
            // Data nobody asked for: the guest's CLIPBOARD messages in these inputs.
            if (d.code === "UNSOLICITED_DATA" && d.payload?.kind === "clipboard") {
              t.clipboardBytes! += d.payload.data.length;
            }
          },
        });
        await source(reads)
          .pipeThrough(new lib.ChunkDeframer())
          .pipeThrough(new lib.MessageAssembler())
          .pipeThrough(session)
          .pipeTo(batchSink(t, false));
        return t;
      },
    },
    {
      id: "F",
      title: "createHostPipeline over an in-memory transport; each grab answered with a request",
      async run(reads, verify) {
        const t: Tally = { items: 0, bytes: 0, grabs: 0, clipboardBytes: 0 };
        const out = verify ? new OutputCheck() : undefined;
        const failed = () => {};
        const pipeline = lib.createHostPipeline({
          readable: source(reads),
          writable: new WritableStream({
            write(bytes) {
              t.items++;
              t.bytes += bytes.length;
              out?.push(bytes);
            },
          }),
        }, {
          // Every grab gets a request on the wire. The inputs never answer
          // a grab's request except with the CLIPBOARD message that follows
          // it, so requests of the small input stay outstanding until the end.
          maxRequests: expected.grabs + 1,
          requestTimeout: 0,
          clipboard: {
            onGuestGrab(selection, types) {
              t.grabs!++;
              pipeline.session.request(selection, types[0]!).then(
                (data) => t.clipboardBytes! += data.length,
                failed,
              );
            },
          },
        });
        await pipeline.done;
        if (out) {
          out.finish();
          t.output = out;
        }
        return t;
      },
    },
    {
      id: "Fg",
      title: "createHostPipeline over an in-memory transport; the handler counts grabs (as S)",
      async run(reads, verify) {
        const t: Tally = { items: 0, bytes: 0, grabs: 0, clipboardBytes: 0 };
        const out = verify ? new OutputCheck() : undefined;
        const pipeline = lib.createHostPipeline({
          readable: source(reads),
          writable: new WritableStream({
            write(bytes) {
              t.items++;
              t.bytes += bytes.length;
              out?.push(bytes);
            },
          }),
        }, {
          clipboard: { onGuestGrab: () => t.grabs!++ },
          onDiagnostic(d) {
            if (d.code === "UNSOLICITED_DATA" && d.payload?.kind === "clipboard") {
              t.clipboardBytes! += d.payload.data.length;
            }
          },
        });
        await pipeline.done;
        if (out) {
          out.finish();
          t.output = out;
        }
        return t;
      },
    },
    {
      id: "C",
      title: "synchronous cores: ChunkReader + MessageReader",
      run(reads, verify) {
        const t = tally(verify);
        const messages = new lib.MessageReader(
          verify
            ? (_port, type, _opaque, bytes, start, end) => {
              t.items++;
              t.bytes += end - start;
              t.checksum = fold(t.checksum!, messageChecksum(type, bytes.subarray(start, end)));
            }
            : () => t.items++,
          { maxMessageSize: 64 * 1024 * 1024, copy: false },
        );
        const chunks = new lib.ChunkReader(messages, { maxChunkSize: 64 * 1024 * 1024 + 20 });
        for (const read of reads) chunks.push(read);
        chunks.finish();
        messages.finish(chunks.offset);
        return Promise.resolve(t);
      },
    },
  ];
}

/**
 * Checks the host pipeline's output independently of the library: the host's
 * two capability messages, then one CLIPBOARD_REQUEST (CLIPBOARD, UTF8_TEXT)
 * per grab, each a single chunk on port 1.
 */
export class OutputCheck {
  caps = 0;
  requests = 0;
  other = 0;
  #pending = new Uint8Array(0);

  push(bytes: Uint8Array): void {
    const all = new Uint8Array(this.#pending.length + bytes.length);
    all.set(this.#pending);
    all.set(bytes, this.#pending.length);
    const view = new DataView(all.buffer);
    let at = 0;
    while (all.length - at >= 8) {
      const size = view.getUint32(at + 4, true);
      if (all.length - at < 8 + size) break;
      const port = view.getUint32(at, true);
      const type = view.getUint32(at + 12, true);
      const length = view.getUint32(at + 24, true);
      if (port !== 1 || size !== 20 + length || view.getUint32(at + 8, true) !== 1) this.other++;
      else if (type === T.ANNOUNCE_CAPABILITIES) this.caps++;
      else if (
        type === T.CLIPBOARD_REQUEST && length === 8 && view.getUint32(at + 28, true) === 0 &&
        view.getUint32(at + 32, true) === UTF8_TEXT
      ) this.requests++;
      else this.other++;
      at += 8 + size;
    }
    this.#pending = all.slice(at);
  }

  finish(): void {
    if (this.#pending.length > 0) this.other++;
  }
}
