// This module is browser compatible.

import { ViewCache } from "./_bytes.ts";
import { VdagentProtocolError } from "./vdagent_protocol_error.ts";
import { WireFormat } from "./wire_format.ts";

/** Receives what a {@linkcode ChunkReader} finds, synchronously, in stream order. */
export interface ChunkSink {
  /**
   * A chunk header was read.
   *
   * @param port 1 or 2.
   * @param size Payload bytes that follow, at least 1.
   * @param offset Stream offset of the chunk header.
   */
  chunkStart(port: number, size: number, offset: number): void;
  /**
   * Payload bytes of the current chunk: `bytes[start..end)`, never past the
   * chunk's end. The bytes belong to the caller of `push` and are only valid
   * during the call.
   *
   * @param base Stream offset of `bytes[0]`.
   */
  chunkData(bytes: Uint8Array, start: number, end: number, base: number): void;
}

/** Limits of a {@linkcode ChunkReader}. */
export interface ChunkReaderOptions {
  /** Largest chunk payload accepted. */
  maxChunkSize: number;
}

/**
 * The synchronous deframing core: splits a byte stream into chunk headers and
 * views of chunk payload, without copying payload bytes.
 */
export class ChunkReader {
  readonly #sink: ChunkSink;
  readonly #maxChunkSize: number;
  /** Scratch for a chunk header that straddles two inputs. */
  readonly #header = new Uint8Array(WireFormat.CHUNK_HEADER_SIZE);
  readonly #headerView = new DataView(this.#header.buffer);
  #headerFill = 0;
  #paused = false;
  /** Payload bytes of the current chunk still to come. */
  #remaining = 0;
  /** Stream offset of the next input's first byte. */
  #offset = 0;
  readonly #views = new ViewCache();

  constructor(sink: ChunkSink, options: ChunkReaderOptions) {
    this.#sink = sink;
    this.#maxChunkSize = options.maxChunkSize;
  }

  /** Stream offset of the next byte to be pushed. */
  get offset(): number {
    return this.#offset;
  }

  /** Payload bytes of the current chunk still to come. */
  get remaining(): number {
    return this.#remaining;
  }

  /** The bytes of a chunk header read so far, if it is incomplete. */
  partialHeader(): Uint8Array {
    return this.#header.slice(0, this.#headerFill);
  }

  /**
   * Asks `push` to return after the chunk data it is handing to the sink,
   * e.g. when the sink's consumer falls behind. Call it from the sink.
   */
  pause(): void {
    this.#paused = true;
  }

  /**
   * Feeds bytes; calls the sink for everything they complete. Returns how
   * many bytes it consumed: all of them, unless `pause` was called, in which
   * case the caller pushes the rest later.
   */
  push(bytes: Uint8Array): number {
    const end = bytes.length;
    const base = this.#offset;
    const sink = this.#sink;
    let i = 0;
    this.#paused = false;
    try {
      while (i < end) {
        const remaining = this.#remaining;
        if (remaining > 0) {
          const stop = end - i > remaining ? i + remaining : end;
          this.#remaining = remaining - (stop - i);
          sink.chunkData(bytes, i, stop, base);
          i = stop;
          if (this.#paused) {
            this.#paused = false;
            break;
          }
          continue;
        }
        let port: number;
        let size: number;
        let at: number;
        if (this.#headerFill === 0 && end - i >= WireFormat.CHUNK_HEADER_SIZE) {
          const view = this.#views.of(bytes);
          const p = bytes.byteOffset + i;
          port = view.getUint32(p, true);
          size = view.getUint32(p + 4, true);
          at = base + i;
          i += WireFormat.CHUNK_HEADER_SIZE;
        } else {
          const fill = this.#headerFill;
          const take = Math.min(WireFormat.CHUNK_HEADER_SIZE - fill, end - i);
          this.#header.set(bytes.subarray(i, i + take), fill);
          i += take;
          this.#headerFill = fill + take;
          if (this.#headerFill < WireFormat.CHUNK_HEADER_SIZE) break;
          this.#headerFill = 0;
          port = this.#headerView.getUint32(0, true);
          size = this.#headerView.getUint32(4, true);
          at = base + i - WireFormat.CHUNK_HEADER_SIZE;
        }
        checkChunkHeader(port, size, at, this.#maxChunkSize);
        this.#remaining = size;
        sink.chunkStart(port, size, at);
      }
    } finally {
      this.#offset = base + i;
    }
    return i;
  }

  /** Signals the end of input; throws if it ended inside a chunk. */
  finish(): void {
    if (this.#headerFill > 0) {
      throw new VdagentProtocolError(
        "TRUNCATED",
        `Cannot deframe chunk: the input ended after ${this.#headerFill} of 8 chunk header bytes`,
        { offset: this.#offset - this.#headerFill },
      );
    }
    if (this.#remaining > 0) {
      throw new VdagentProtocolError(
        "TRUNCATED",
        `Cannot deframe chunk: the input ended ${this.#remaining} bytes before the end of a chunk`,
        { offset: this.#offset },
      );
    }
  }
}

/** Validates a chunk header; throws {@linkcode VdagentProtocolError}. */
export function checkChunkHeader(
  port: number,
  size: number,
  offset: number,
  maxChunkSize: number,
): void {
  if (port !== WireFormat.CLIENT_PORT && port !== WireFormat.SERVER_PORT) {
    throw new VdagentProtocolError(
      "UNKNOWN_PORT",
      `Cannot deframe chunk: port ${port} is not 1 or 2`,
      { offset, port },
    );
  }
  if (size === 0) {
    throw new VdagentProtocolError(
      "EMPTY_CHUNK",
      "Cannot deframe chunk: the chunk declares 0 bytes",
      { offset, port },
    );
  }
  if (size > maxChunkSize) {
    throw new VdagentProtocolError(
      "CHUNK_TOO_LARGE",
      `Cannot deframe chunk: size ${size} exceeds the maximum of ${maxChunkSize}`,
      { offset, port },
    );
  }
}
