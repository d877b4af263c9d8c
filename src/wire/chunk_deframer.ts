// This module is browser compatible.

import { ChunkReader, type ChunkSink } from "./_chunk_reader.ts";
import { checkLimit, DEFAULT_MAX_MESSAGE_SIZE } from "./_limits.ts";
import type { VdiChunk } from "./vdi_chunk.ts";
import { WireFormat } from "./wire_format.ts";

/** Options of {@linkcode ChunkDeframer}. */
export interface ChunkDeframerOptions {
  /**
   * Largest chunk payload accepted, checked before anything is allocated.
   * The Linux agent sends every message as one chunk, so the default is the
   * default message limit plus a header: 64 MiB + 20.
   */
  maxChunkSize?: number;
  /**
   * Copy every chunk, instead of handing out views of the input for chunks
   * that lie inside one read. Set it when the source reuses its buffers.
   * Default `false`.
   */
  copy?: boolean;
}

/** Collects chunk events into whole chunks. */
class WholeChunks implements ChunkSink {
  out: VdiChunk[] = [];
  readonly #copy: boolean;
  #port = 0;
  #size = 0;
  #buffer: Uint8Array | undefined;
  #fill = 0;

  constructor(copy: boolean) {
    this.#copy = copy;
  }

  chunkStart(port: number, size: number): void {
    this.#port = port;
    this.#size = size;
  }

  chunkData(bytes: Uint8Array, start: number, end: number): void {
    if (this.#buffer === undefined && end - start === this.#size) {
      const data = this.#copy ? bytes.slice(start, end) : bytes.subarray(start, end);
      this.out.push({ port: this.#port, data });
      return;
    }
    this.#buffer ??= new Uint8Array(this.#size);
    this.#buffer.set(bytes.subarray(start, end), this.#fill);
    this.#fill += end - start;
    if (this.#fill === this.#size) {
      this.out.push({ port: this.#port, data: this.#buffer });
      this.#buffer = undefined;
      this.#fill = 0;
    }
  }
}

/**
 * Splits a vdagent byte stream into chunks (`VDIChunkHeader` + payload).
 *
 * Each read of the readable side is the batch of chunks that one write
 * completed, so a 64 KiB read of small messages costs one `enqueue`, not
 * hundreds. A chunk inside one input is a view of it (see `copy`); a chunk
 * that spans inputs is copied once into a buffer of its exact size.
 *
 * Framing errors error the stream with a `VdagentProtocolError`: a port other
 * than 1 or 2 (`UNKNOWN_PORT`), a chunk of 0 bytes (`EMPTY_CHUNK`), a chunk
 * over `maxChunkSize` (`CHUNK_TOO_LARGE`), and input that ends inside a chunk
 * (`TRUNCATED`). The byte stream has no resync marker, so none is recoverable.
 *
 * @example Deframing bytes split at an awkward place
 * ```ts
 * import { ChunkDeframer } from "@vdagent/streams";
 * import assert from "node:assert/strict";
 *
 * const wire = new Uint8Array([1, 0, 0, 0, 3, 0, 0, 0, 7, 8, 9, 2, 0, 0, 0, 1, 0, 0, 0, 5]);
 * const reads = [wire.subarray(0, 5), wire.subarray(5, 13), wire.subarray(13)];
 * const chunks = await Array.fromAsync(
 *   ReadableStream.from(reads).pipeThrough(new ChunkDeframer()),
 * );
 * assert.deepEqual(chunks.flat(), [
 *   { port: 1, data: new Uint8Array([7, 8, 9]) },
 *   { port: 2, data: new Uint8Array([5]) },
 * ]);
 * ```
 */
export class ChunkDeframer extends TransformStream<Uint8Array, VdiChunk[]> {
  /**
   * Creates a deframer.
   *
   * @param options Limits and copying.
   */
  constructor(options: ChunkDeframerOptions = {}) {
    const maxChunkSize = checkLimit(
      "ChunkDeframer",
      "maxChunkSize",
      options.maxChunkSize,
      DEFAULT_MAX_MESSAGE_SIZE + WireFormat.MESSAGE_HEADER_SIZE,
      0xffff_ffff,
    );
    const chunks = new WholeChunks(options.copy ?? false);
    const reader = new ChunkReader(chunks, { maxChunkSize });
    super({
      transform(bytes, controller) {
        if (!(bytes instanceof Uint8Array)) {
          throw new TypeError("Cannot deframe: the input must be Uint8Array chunks");
        }
        reader.push(bytes);
        if (chunks.out.length > 0) {
          controller.enqueue(chunks.out);
          chunks.out = [];
        }
      },
      flush() {
        reader.finish();
      },
    });
  }
}
