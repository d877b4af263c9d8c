// This module is browser compatible.

import { toU64, view, ViewCache } from "./_bytes.ts";
import type { ChunkSink } from "./_chunk_reader.ts";
import { VdagentProtocolError } from "./vdagent_protocol_error.ts";
import type { AgentMessage } from "./agent_message.ts";
import type { TransferProgress } from "./transfer_progress.ts";
import { WireFormat } from "./wire_format.ts";

/**
 * Called once per complete message, whose payload is `bytes[start, end)`:
 * the input itself when the whole message arrived in one chunk of one input
 * (unless `copy` is set), so a handler that decodes it in place needs no
 * view, and a buffer the reader allocated otherwise. `skipped` is set when
 * the payload was over `maxSizeFor(type)` and was skipped unread: it is the
 * payload size the header declared, and the payload is empty.
 */
export type MessageHandler = (
  port: number,
  type: number,
  opaque: bigint,
  bytes: Uint8Array,
  start: number,
  end: number,
  skipped: number | undefined,
) => void;

/** The message a {@linkcode MessageHandler} gets, as an `AgentMessage`. */
export function agentMessage(
  port: number,
  type: number,
  opaque: bigint,
  bytes: Uint8Array,
  start: number,
  end: number,
  skipped: number | undefined,
): AgentMessage {
  const data = view(bytes, start, end);
  return skipped === undefined
    ? { port, type, opaque, data }
    : { port, type, opaque, data, skipped };
}

/** Options of a {@linkcode MessageReader}. */
export interface MessageReaderOptions {
  /** Largest payload accepted, checked before anything is allocated. */
  maxMessageSize: number;
  /** Copy messages that would otherwise be views into the input. */
  copy: boolean;
  /**
   * Called as a message larger than `progressThreshold` arrives, with the
   * payload's bytes so far (from its start).
   */
  onProgress?: ((progress: TransferProgress, payload: Uint8Array) => void) | undefined;
  /** Payload size above which progress is reported. Default 1 MiB. */
  progressThreshold?: number;
  /**
   * Only check the framing: payloads are counted, not kept, and nothing is
   * allocated for them; the handler gets empty data.
   */
  checkOnly?: boolean;
  /**
   * The largest payload a message of `type` may have, known at its header. A
   * message over it (but within `maxMessageSize`) is skipped as it arrives:
   * nothing is allocated for it, and it is delivered with `skipped` set.
   * Default: no bound but `maxMessageSize`.
   */
  maxSizeFor?: ((type: number) => number) | undefined;
  /**
   * Most payload bytes held at once for messages in progress, summed over both
   * ports, checked before allocating. Default `maxMessageSize`.
   */
  maxBuffered?: number | undefined;
}

/** Bytes between two progress reports of one message. */
const PROGRESS_STEP = 64 * 1024;

/** Reassembly state of one port. */
class PortState {
  /** Header bytes that straddle chunks or inputs. */
  readonly header = new Uint8Array(WireFormat.MESSAGE_HEADER_SIZE);
  readonly headerView = new DataView(this.header.buffer);
  /** Header bytes received so far; equals 20 once the body is being read. */
  headerFill = 0;
  /** Stream offset of the header's first byte. */
  headerOffset = 0;
  type = 0;
  opaque = 0n;
  size = 0;
  body: Uint8Array | undefined;
  bodyFill = 0;
  /** `bodyFill` at the last progress report. */
  reported = 0;
  /** The payload is over its type's bound: counted, not kept. */
  skip = false;
  /** The bound it is over, when `skip`. */
  bound = 0;

  reset(): void {
    this.headerFill = 0;
    this.body = undefined;
    this.bodyFill = 0;
    this.reported = 0;
    this.skip = false;
  }
}

/**
 * The synchronous reassembly core: turns chunk events (from a
 * {@linkcode ChunkReader} or from whole chunks) into messages, per port.
 *
 * A message that lies inside one chunk of one input is handed out as a view;
 * any other message is copied once into a buffer of exactly its size,
 * allocated after the size was checked against `maxMessageSize` and the
 * bytes already held against `maxBuffered`. A message over its type's bound
 * (`maxSizeFor`) is not kept at all.
 */
export class MessageReader implements ChunkSink {
  readonly #handler: MessageHandler;
  readonly #maxMessageSize: number;
  readonly #copy: boolean;
  readonly #onProgress:
    | ((progress: TransferProgress, payload: Uint8Array) => void)
    | undefined;
  readonly #progressThreshold: number;
  readonly #checkOnly: boolean;
  readonly #maxSizeFor: ((type: number) => number) | undefined;
  readonly #maxBuffered: number;
  /** Bytes allocated for messages in progress, both ports. */
  #buffered = 0;
  readonly #ports = [new PortState(), new PortState(), new PortState()];
  readonly #views = new ViewCache();
  #port = 0;
  #chunkSize = 0;
  /** Bytes of the current chunk not yet handed to `chunkData`. */
  #chunkLeft = 0;
  #chunkOffset = 0;

  constructor(handler: MessageHandler, options: MessageReaderOptions) {
    this.#handler = handler;
    this.#maxMessageSize = options.maxMessageSize;
    this.#copy = options.copy;
    this.#onProgress = options.onProgress;
    this.#progressThreshold = options.progressThreshold ?? 1024 * 1024;
    this.#checkOnly = options.checkOnly ?? false;
    this.#maxSizeFor = options.maxSizeFor;
    this.#maxBuffered = options.maxBuffered ?? options.maxMessageSize;
  }

  /** Payload bytes allocated for messages in progress, summed over both ports. */
  get buffered(): number {
    return this.#buffered;
  }

  /** Starts a chunk of `size` bytes on `port` (1 or 2). */
  chunkStart(port: number, size: number, offset: number): void {
    const state = this.#ports[port]!;
    if (state.headerFill === WireFormat.MESSAGE_HEADER_SIZE) {
      const left = state.size - state.bodyFill;
      if (size > left) this.#overrun(port, state.type, size, left, offset);
    }
    this.#port = port;
    this.#chunkSize = size;
    this.#chunkLeft = size;
    this.#chunkOffset = offset;
  }

  /** Consumes `bytes[start..end)`, which continue the current chunk. */
  chunkData(bytes: Uint8Array, start: number, end: number, base: number): void {
    const port = this.#port;
    const state = this.#ports[port]!;
    this.#chunkLeft -= end - start;
    let i = start;
    if (state.headerFill < WireFormat.MESSAGE_HEADER_SIZE) {
      let view: DataView;
      let at: number;
      if (state.headerFill === 0 && end - i >= WireFormat.MESSAGE_HEADER_SIZE) {
        view = this.#views.of(bytes);
        at = bytes.byteOffset + i;
        state.headerOffset = base + i;
        i += WireFormat.MESSAGE_HEADER_SIZE;
      } else {
        if (state.headerFill === 0) state.headerOffset = base + i;
        const take = Math.min(WireFormat.MESSAGE_HEADER_SIZE - state.headerFill, end - i);
        state.header.set(bytes.subarray(i, i + take), state.headerFill);
        state.headerFill += take;
        i += take;
        if (state.headerFill < WireFormat.MESSAGE_HEADER_SIZE) return;
        view = state.headerView;
        at = 0;
      }
      state.headerFill = WireFormat.MESSAGE_HEADER_SIZE;
      const protocol = view.getUint32(at, true);
      const type = view.getUint32(at + 4, true);
      const size = view.getUint32(at + 16, true);
      state.type = type;
      if (protocol !== WireFormat.PROTOCOL) {
        throw new VdagentProtocolError(
          "BAD_PROTOCOL",
          `Cannot assemble message: protocol ${protocol} is not 1`,
          { offset: state.headerOffset, port, type },
        );
      }
      if (size > this.#maxMessageSize) {
        throw new VdagentProtocolError(
          "MESSAGE_TOO_LARGE",
          `Cannot assemble message: size ${size} exceeds the maximum of ${this.#maxMessageSize}`,
          { offset: state.headerOffset, port, type },
        );
      }
      const inChunk = end - i + this.#chunkLeft;
      if (inChunk > size) this.#overrun(port, type, inChunk, size, this.#chunkOffset);
      state.opaque = toU64(view.getUint32(at + 8, true), view.getUint32(at + 12, true));
      state.size = size;
      const bound = this.#maxSizeFor?.(type) ?? Infinity;
      if (size > bound) {
        state.skip = true;
        state.bound = bound;
      } else if (end - i === size) {
        state.reset();
        if (this.#copy) {
          this.#handler(port, type, state.opaque, bytes.slice(i, end), 0, end - i, undefined);
        } else {
          this.#handler(port, type, state.opaque, bytes, i, end, undefined);
        }
        return;
      } else if (!this.#checkOnly) {
        if (size > this.#maxBuffered - this.#buffered) {
          throw new VdagentProtocolError(
            "BUFFER_FULL",
            `Cannot assemble message: ${size} more payload bytes on port ${port} would hold ${
              this.#buffered + size
            } across ports, over the maximum of ${this.#maxBuffered}`,
            { offset: state.headerOffset, port, type },
          );
        }
        this.#buffered += size;
        state.body = new Uint8Array(size);
      }
    }
    if (i < end) {
      // A whole input (MessageAssembler passes each chunk's data as is) is
      // copied without a subarray view, which costs Deno about as much as
      // copying a 2 KiB chunk: assembling 32 × 1 MiB from 2 KiB chunks took
      // 8.3 → 6.5 ms (best of 30).
      state.body?.set(
        i === 0 && end === bytes.length ? bytes : bytes.subarray(i, end),
        state.bodyFill,
      );
      state.bodyFill += end - i;
    }
    if (
      this.#onProgress !== undefined && state.size > this.#progressThreshold && !state.skip &&
      (state.bodyFill - state.reported >= PROGRESS_STEP || state.bodyFill === state.size)
    ) {
      state.reported = state.bodyFill;
      this.#onProgress({
        direction: "in",
        port,
        type: state.type,
        done: state.bodyFill,
        total: state.size,
      }, state.body?.subarray(0, state.bodyFill) ?? new Uint8Array(0));
    }
    if (state.bodyFill === state.size) {
      const body = state.body ?? new Uint8Array(0);
      const skipped = state.skip ? state.size : undefined;
      if (state.body !== undefined) this.#buffered -= state.body.length;
      state.reset();
      this.#handler(port, state.type, state.opaque, body, 0, body.length, skipped);
    }
  }

  /** Port of the current chunk, and how many of its bytes were consumed. */
  currentChunk(): { port: number; consumed: number } {
    return { port: this.#port, consumed: this.#chunkSize - this.#chunkLeft };
  }

  /**
   * The bytes of the message in progress on `port` received so far, header
   * included, as they were on the wire; empty if none is in progress.
   *
   * A message being skipped was not kept: it comes back as its header and
   * as few zeros as keep it over its bound (at most one byte more than the
   * bound), with the header's size reduced by the bytes left out, so that
   * its rest, pushed after these bytes into a reader with the same bound, is
   * skipped too.
   */
  partial(port: number): Uint8Array {
    const state = this.#ports[port]!;
    if (state.headerFill < WireFormat.MESSAGE_HEADER_SIZE) {
      return state.header.slice(0, state.headerFill);
    }
    // A skipped message keeps just enough zeros to stay over its bound.
    const rest = state.size - state.bodyFill;
    const kept = state.skip
      ? Math.min(state.bodyFill, Math.max(0, state.bound + 1 - rest))
      : state.bodyFill;
    const out = new Uint8Array(WireFormat.MESSAGE_HEADER_SIZE + kept);
    const view = new DataView(out.buffer);
    view.setUint32(0, WireFormat.PROTOCOL, true);
    view.setUint32(4, state.type, true);
    view.setBigUint64(8, state.opaque, true);
    view.setUint32(16, state.size - (state.bodyFill - kept), true);
    if (state.body !== undefined) {
      out.set(state.body.subarray(0, state.bodyFill), WireFormat.MESSAGE_HEADER_SIZE);
    }
    return out;
  }

  /** Signals the end of input; throws if a message is incomplete. */
  finish(offset: number): void {
    for (let port = 1; port < this.#ports.length; port++) {
      const state = this.#ports[port]!;
      if (state.headerFill === 0) continue;
      const complete = state.headerFill === WireFormat.MESSAGE_HEADER_SIZE;
      throw new VdagentProtocolError(
        "TRUNCATED",
        complete
          ? `Cannot assemble message: the input ended after ${state.bodyFill} of ${state.size} payload bytes on port ${port}`
          : `Cannot assemble message: the input ended after ${state.headerFill} of 20 header bytes on port ${port}`,
        complete ? { offset, port, type: state.type } : { offset, port },
      );
    }
  }

  #overrun(port: number, type: number, size: number, left: number, offset: number): never {
    throw new VdagentProtocolError(
      "CHUNK_OVERRUN",
      `Cannot assemble message: the chunk holds ${size} bytes but the message needs only ${left} more`,
      { offset, port, type },
    );
  }
}
