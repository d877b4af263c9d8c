// This module is browser compatible.

import { CheckpointError } from "../checkpoint/checkpoint_error.ts";
import { maxPayloadSize } from "../protocol/max_payload_size.ts";
import { MessageType } from "../protocol/message_type.ts";
import type { Endpoint } from "../session/_endpoint.ts";
import type { SessionLimits } from "../session/session_limits.ts";
import { ChunkReader } from "../wire/_chunk_reader.ts";
import { framedSize, messageStart, writeFrames } from "../wire/_frame_writer.ts";
import { inboundBytes } from "../wire/_inbound_state.ts";
import { checkLimit, DEFAULT_MAX_MESSAGE_SIZE } from "../wire/_limits.ts";
import { MessageReader } from "../wire/_message_reader.ts";
import { findMessageStart, START_SIZE } from "../wire/_resync.ts";
import type { AgentMessage } from "../wire/agent_message.ts";
import type { TransferProgress } from "../wire/transfer_progress.ts";
import { WireFormat } from "../wire/wire_format.ts";
import type { PipelineOptions } from "./pipeline_options.ts";
import type { Transport } from "./transport.ts";

/** Largest write handed to the transport at once. */
const PIECE = 64 * 1024;
/** Outbound bytes queued beyond which the pipeline stops reading input. */
const HIGH_WATER = 1024 * 1024;
/** Messages over this many payload bytes report progress. */
const PROGRESS_THRESHOLD = 1024 * 1024;

interface OutEntry {
  bytes: Uint8Array;
  /** Bytes already written. */
  at: number;
  /** Set for one large message: what its progress reports besides the bytes done. */
  progress?: Omit<TransferProgress, "direction" | "done">;
}

/** What a runner needs besides the pipeline's options. */
export interface RunnerOptions extends PipelineOptions {
  /** Bytes to feed the decoder before anything the transport delivers. */
  initialInput?: Uint8Array | undefined;
  /** Bytes to write before anything the session sends. */
  initialOutput?: Uint8Array | undefined;
  /** Called after each input read and each batch the session sends. */
  onChange?: (() => void) | undefined;
  /**
   * The input may start inside a message (the transport reconnected to a
   * stream another connection had begun): bytes before the first plausible
   * message start are skipped, and `onResync` hears how many.
   */
  resync?: boolean | undefined;
  /** How many bytes `resync` skipped, when it skipped any. */
  onResync?: ((skipped: number) => void) | undefined;
  /**
   * The selection a CLIPBOARD payload is for, from its first bytes: progress
   * reports it when given.
   */
  selectionOf?: ((payload: Uint8Array) => number | undefined) | undefined;
}

/** How a hand-off that ends the transport proceeds; see {@linkcode PipelineRunner.handOff}. */
export interface Drain {
  /** Most milliseconds the drain takes. */
  timeout: number;
  /**
   * Milliseconds without input, once the writable side is closed, after which
   * everything the peer sent is taken as read (a peer that stopped, such as
   * a VM stopped at the end of its migration, never closes its side).
   */
  quiet: number;
  /** Stops the session's output, before the queue is written out. */
  seal(): void;
}

/** The bytes in flight at a hand-off, and what the caller captured with them. */
export interface HandOff<T> {
  captured: T;
  inbound: Uint8Array;
  /** Framed messages not written whole, from a message start. */
  outbound: Uint8Array;
  /** Bytes of `outbound`'s first message already written. */
  written: number;
  /**
   * With a drain: the peer closed its side, or sent nothing for the drain's
   * quiet time after the writable side closed: everything it sent was read.
   */
  drained: boolean;
}

/**
 * Runs a session over a byte transport: one loop reads the transport and
 * drives the decoding cores and the session synchronously, another frames
 * what the session sends and writes it in pieces of at most 64 KiB. Reading
 * pauses while more than 1 MiB waits to be written.
 */
export class PipelineRunner {
  readonly done: Promise<void>;
  readonly #session: Endpoint;
  readonly #reader: ReadableStreamDefaultReader<Uint8Array>;
  readonly #writer: WritableStreamDefaultWriter<Uint8Array>;
  readonly #closeWrite: (() => void | Promise<void>) | undefined;
  readonly #chunks: ChunkReader;
  readonly #messages: MessageReader;
  readonly #chunkSize: number;
  readonly #onProgress: ((progress: TransferProgress) => void) | undefined;
  readonly #selectionOf: ((payload: Uint8Array) => number | undefined) | undefined;
  readonly #onChange: (() => void) | undefined;
  readonly #out: OutEntry[] = [];
  readonly #pumps: Promise<void>;
  #pumpInDone: Promise<void> = Promise.resolve();
  #outBytes = 0;
  /** Bytes read but not yet pushed: the rest of a read the reader paused in. */
  #rest: Uint8Array | undefined;
  #inputDone = false;
  #closing = false;
  #stopped = false;
  /**
   * Set at a hand-off: whether the bytes in flight are kept (lossless) or
   * written, and whether the transport ends with it (drain: the queue is
   * written, the writable side closed, and the input read to its end).
   */
  #handOff: { lossless: boolean; drain: Drain | undefined } | undefined;
  /** The peer closed its side during a drain, or went quiet after the writable side closed. */
  #eof = false;
  /** When the last input arrived, or the writable side closed during a drain. */
  #lastInput = 0;
  /** The writable side was closed by a drain. */
  #closedWrite = false;
  /** Resolves when a drain runs out of time: a write in flight is given up. */
  #drainOver = deferred();
  /** While resynchronizing: the bytes kept from the last read, a start may begin in them. */
  #scan: Uint8Array | undefined;
  #skipped = 0;
  readonly #onResync: ((skipped: number) => void) | undefined;
  readonly #maxMessageSize: number;
  #wakeOut: (() => void) | undefined;
  #wakeIn: (() => void) | undefined;
  #failure: { error: unknown } | undefined;
  #reject: ((error: unknown) => void) | undefined;

  constructor(session: Endpoint, transport: Transport, options: RunnerOptions) {
    const maxMessageSize = checkLimit(
      "pipeline",
      "maxMessageSize",
      options.maxMessageSize,
      DEFAULT_MAX_MESSAGE_SIZE,
      0xffff_ffff - WireFormat.MESSAGE_HEADER_SIZE,
    );
    this.#chunkSize = options.chunkSize ?? WireFormat.MAX_CHUNK_SIZE;
    if (
      !Number.isInteger(this.#chunkSize) || this.#chunkSize < WireFormat.MESSAGE_HEADER_SIZE ||
      this.#chunkSize > WireFormat.MAX_CHUNK_SIZE
    ) {
      throw new RangeError(
        `Cannot create pipeline: chunkSize must be an integer from 20 to 2048, got ${this.#chunkSize}`,
      );
    }
    this.#onProgress = options.onProgress;
    this.#selectionOf = options.selectionOf;
    this.#onChange = options.onChange;
    this.#session = session;
    // A message over the bound of its type is skipped as it arrives, without
    // being kept, and reaches the session flagged (it decodes as invalid).
    const limits = options as SessionLimits;
    const bounds: number[] = [];
    for (const type of Object.values(MessageType)) bounds[type] = maxPayloadSize(type, limits);
    this.#messages = new MessageReader(
      (port, type, opaque, bytes, start, end, skipped) => {
        session.receive(port, type, opaque, bytes, start, end, skipped);
        // A read full of requests must not queue without bound: stop at this
        // message, write, and take the rest of the read later.
        if (this.#outBytes + session.queuedBytes() > HIGH_WATER) this.#chunks.pause();
      },
      {
        maxMessageSize,
        copy: options.copy ?? false,
        onProgress: options.onProgress &&
          ((progress, payload) =>
            options.onProgress!({ ...progress, ...this.#selection(progress.type, payload) })),
        maxSizeFor: (type) => bounds[type] ?? Infinity,
        maxBuffered: checkLimit(
          "pipeline",
          "maxBuffered",
          options.maxBuffered,
          maxMessageSize,
        ),
      },
    );
    this.#chunks = new ChunkReader(this.#messages, {
      maxChunkSize: maxMessageSize + WireFormat.MESSAGE_HEADER_SIZE,
    });
    this.#maxMessageSize = maxMessageSize;
    if (options.resync) this.#scan = new Uint8Array(0);
    this.#onResync = options.onResync;
    this.#reader = transport.readable.getReader();
    this.#writer = transport.writable.getWriter();
    const closeWrite = (transport as { closeWrite?: unknown }).closeWrite;
    this.#closeWrite = typeof closeWrite === "function"
      ? () => closeWrite.call(transport) as void | Promise<void>
      : undefined;
    if (options.initialOutput !== undefined && options.initialOutput.length > 0) {
      this.#queue({ bytes: options.initialOutput, at: 0 });
    }
    session.attach((batch) => this.#deliver(batch));
    const signal = options.signal;
    const onAbort = () => this.#fail(signal!.reason);
    if (signal?.aborted) {
      queueMicrotask(onAbort);
    } else {
      signal?.addEventListener("abort", onAbort, { once: true });
    }
    this.#pumps = Promise.all([this.#pumpIn(options.initialInput), this.#pumpOut()]).then(() => {});
    // A failure settles `done` at once: a write in flight may never return.
    const failed = new Promise<never>((_, reject) => this.#reject = reject);
    this.done = Promise.race([this.#pumps, failed]).then(() => this.#throwIfFailed())
      .finally(() => signal?.removeEventListener("abort", onAbort));
    // The caller may never look at `done`; failures reach it through `done`
    // only, never as unhandled rejections.
    this.done.catch(() => {});
  }

  /**
   * Ends the session, writes what is queued, closes the transport's writable
   * side, then reads until the peer closes its side.
   */
  async close(): Promise<void> {
    if (!this.#stopped && !this.#closing && this.#handOff === undefined) {
      this.#closing = true;
      this.#session.close();
      this.#wakeOut?.();
    }
    await this.done;
  }

  /**
   * Stops at a migration boundary. Reading stops (a pending read is given up,
   * so its bytes stay in the transport) and the messages already read finish
   * dispatching; then `capture` runs, once, while nothing can change; then,
   * when `lossless`, writing stops after the write in flight, or else
   * everything queued is written first. The transport's locks are released
   * and `done` resolves. Returns the bytes in flight.
   *
   * With `drain`, the transport ends with this hand-off: the session's output
   * is sealed, what is queued is written, the writable side is closed (a
   * half-close, through the transport's `closeWrite` when it has one), and
   * reading goes on, into the sealed session, until the peer closes its side
   * or `drain.timeout` passes; then `capture` runs. A peer such as QEMU's
   * socket chardev closes its side when it reads the end of ours, having
   * sent everything it had: nothing the guest wrote is lost.
   */
  async handOff<T>(lossless: boolean, capture: () => T, drain?: Drain): Promise<HandOff<T>> {
    if (this.#stopped || this.#closing || this.#inputDone || this.#handOff !== undefined) {
      throw new CheckpointError("NOT_RUNNING", "Cannot take a checkpoint: the pipeline has ended");
    }
    this.#handOff = { lossless, drain };
    let timer: ReturnType<typeof setTimeout> | undefined;
    if (drain === undefined) {
      this.#reader.releaseLock();
    } else {
      this.#session.run(() => {}); // what the session holds leaves first
      drain.seal();
      const started = Date.now();
      const check = () => {
        const now = Date.now();
        if (this.#closedWrite && now - this.#lastInput >= drain.quiet) {
          this.#eof = true;
        } else if (now - started < drain.timeout) {
          timer = setTimeout(check, Math.min(drain.quiet, 50));
          return;
        }
        this.#drainOver.resolve();
        this.#reader.releaseLock();
      };
      timer = setTimeout(check, Math.min(drain.quiet, 50));
    }
    this.#wakeIn?.();
    this.#wakeOut?.();
    let captured: T;
    let inbound: Uint8Array;
    try {
      await this.#pumpInDone;
      this.#throwIfFailed();
      this.#session.run(() => {}); // deliver what the session still holds
      captured = capture();
      inbound = lossless ? this.#inbound() : new Uint8Array(0);
      await this.#pumps;
      this.#throwIfFailed();
    } finally {
      clearTimeout(timer);
    }
    // From the start of the message being written: the next relay checks what it writes.
    const first = this.#out[0];
    const from = first === undefined ? 0 : messageStart(first.bytes, first.at);
    const outbound = new Uint8Array(this.#outBytes + (first === undefined ? 0 : first.at - from));
    let at = 0;
    for (const [i, entry] of this.#out.splice(0).entries()) {
      const part = entry.bytes.subarray(i === 0 ? from : entry.at);
      outbound.set(part, at);
      at += part.length;
    }
    this.#outBytes = 0;
    this.#writer.releaseLock();
    if (drain !== undefined) this.#reader.releaseLock();
    const written = first === undefined ? 0 : first.at - from;
    return { captured, inbound, outbound, written, drained: this.#eof };
  }

  /** The bytes in flight inbound: the decoder's partial state, then what it did not take yet. */
  #inbound(): Uint8Array {
    const partial = inboundBytes(this.#chunks, this.#messages);
    const rest = this.#rest;
    if (rest === undefined) return partial;
    const out = new Uint8Array(partial.length + rest.length);
    out.set(partial);
    out.set(rest, partial.length);
    return out;
  }

  /** Pushes bytes into the decoder; keeps what it did not take when it paused. */
  #push(bytes: Uint8Array): void {
    if (this.#scan !== undefined) {
      const start = this.#resync(bytes);
      if (start === undefined) return;
      bytes = start;
    }
    const taken = this.#session.run(() => this.#chunks.push(bytes));
    this.#rest = taken < bytes.length ? bytes.subarray(taken) : undefined;
  }

  /**
   * Skips bytes up to the first plausible message start; returns the bytes
   * from there on, or `undefined` while none is found (the last bytes are
   * kept: a start may begin in them).
   */
  #resync(bytes: Uint8Array): Uint8Array | undefined {
    const kept = this.#scan!;
    let all = bytes;
    if (kept.length > 0) {
      all = new Uint8Array(kept.length + bytes.length);
      all.set(kept);
      all.set(bytes, kept.length);
    }
    const maxChunk = this.#maxMessageSize + WireFormat.MESSAGE_HEADER_SIZE;
    const at = findMessageStart(all, 0, all.length, maxChunk, this.#maxMessageSize);
    if (at < 0) {
      const keep = Math.min(all.length, START_SIZE - 1);
      this.#skipped += all.length - keep;
      this.#scan = all.slice(all.length - keep);
      return undefined;
    }
    this.#scan = undefined;
    this.#skipped += at;
    if (this.#skipped > 0) this.#onResync?.(this.#skipped);
    return all.subarray(at);
  }

  #deliver(batch: AgentMessage[]): void {
    if (this.#stopped) return;
    const size = this.#chunkSize;
    let small = 0;
    for (const m of batch) {
      if (m.data.length <= PROGRESS_THRESHOLD) small += framedSize(m.data.length, size);
    }
    if (small > 0) {
      const bytes = new Uint8Array(small);
      const view = new DataView(bytes.buffer);
      let pos = 0;
      for (const m of batch) {
        if (m.data.length <= PROGRESS_THRESHOLD) {
          pos = writeFrames(bytes, view, pos, size, m.port, m.type, m.opaque, m.data);
        }
      }
      this.#queue({ bytes, at: 0 });
    }
    for (const m of batch) {
      if (m.data.length <= PROGRESS_THRESHOLD) continue;
      const bytes = new Uint8Array(framedSize(m.data.length, size));
      writeFrames(bytes, new DataView(bytes.buffer), 0, size, m.port, m.type, m.opaque, m.data);
      this.#queue({
        bytes,
        at: 0,
        progress: {
          port: m.port,
          type: m.type,
          total: m.data.length,
          ...this.#selection(m.type, m.data),
        },
      });
    }
    this.#onChange?.();
  }

  #queue(entry: OutEntry): void {
    this.#out.push(entry);
    this.#outBytes += entry.bytes.length;
    this.#wakeOut?.();
  }

  #pumpIn(initial: Uint8Array | undefined): Promise<void> {
    const run = async () => {
      try {
        // Start next turn: the caller may still restore the session.
        await null;
        if (initial !== undefined) {
          const bytes = initial;
          initial = undefined; // held for the pipeline's life otherwise
          this.#push(bytes);
        }
        while (!this.#stopped && !this.#inputDone && this.#reading) {
          if (this.#outBytes > HIGH_WATER) {
            await new Promise<void>((resolve) => this.#wakeIn = resolve);
            continue;
          }
          if (this.#rest !== undefined) {
            this.#push(this.#rest);
            this.#onChange?.();
            continue;
          }
          let result: ReadableStreamReadResult<Uint8Array>;
          try {
            result = await this.#reader.read();
          } catch (error) {
            if (this.#handOff !== undefined) break; // we gave the read up
            throw error;
          }
          if (this.#stopped) break;
          if (result.done) {
            if (this.#handOff?.drain !== undefined) {
              this.#eof = true; // what is left in the decoder goes into the checkpoint
              break;
            }
            this.#chunks.finish();
            this.#messages.finish(this.#chunks.offset);
            break;
          }
          // Bytes read are dispatched even at a hand-off: they left the transport.
          this.#lastInput = Date.now();
          this.#push(result.value);
          this.#onChange?.();
        }
      } catch (error) {
        // Once we closed, a transport may fail its pending read (a Deno socket
        // closes both ways): that is the end we asked for.
        if (!this.#closing) this.#fail(error);
      } finally {
        if (this.#handOff === undefined) {
          this.#inputDone = true;
          this.#session.close(this.#failure?.error);
        }
        this.#wakeOut?.();
      }
    };
    return this.#pumpInDone = run();
  }

  /** Input is taken in: not at a hand-off, unless it drains the transport. */
  get #reading(): boolean {
    return this.#handOff === undefined || this.#handOff.drain !== undefined;
  }

  async #pumpOut(): Promise<void> {
    try {
      for (;;) {
        if (this.#stopped) return;
        const entry = this.#out[0];
        const handOff = this.#handOff;
        if (handOff?.drain !== undefined && entry === undefined) {
          // Everything was written: end our side, and let the peer end its own.
          if (this.#closeWrite === undefined) {
            await this.#writer.close();
          } else {
            this.#writer.releaseLock();
            await this.#closeWrite();
          }
          this.#lastInput = Math.max(this.#lastInput, Date.now());
          this.#closedWrite = true;
          return;
        }
        // At a hand-off, lossless keeps the rest for the checkpoint; minimal drains.
        if (
          handOff !== undefined && handOff.drain === undefined &&
          (handOff.lossless || entry === undefined)
        ) return;
        if (entry === undefined) {
          if (this.#inputDone || this.#closing) break;
          await new Promise<void>((resolve) => this.#wakeOut = resolve);
          this.#wakeOut = undefined;
          continue;
        }
        const piece = entry.bytes.subarray(entry.at, entry.at + PIECE);
        if (handOff?.drain === undefined) {
          await this.#writer.write(piece);
        } else {
          // A peer that stopped reading must not hold the hand-off past its time.
          const over = Symbol();
          const wrote = await Promise.race([
            this.#writer.write(piece),
            this.#drainOver.promise.then(() => over),
          ]);
          if (wrote === over) return;
        }
        entry.at += piece.length;
        this.#outBytes -= piece.length;
        if (entry.progress !== undefined) this.#progress(entry, entry.progress);
        if (entry.at === entry.bytes.length) this.#out.shift();
        if (this.#outBytes <= HIGH_WATER / 2) {
          this.#wakeIn?.();
          this.#wakeIn = undefined;
        }
      }
    } catch (error) {
      return this.#fail(error);
    }
    // Everything was written. If the peer is gone already, closing fails, and
    // there is nothing left to lose.
    await this.#writer.close().catch(() => {});
  }

  /** The selection of a CLIPBOARD message, for its progress, where it is known. */
  #selection(type: number, payload: Uint8Array): { selection?: 0 | 1 | 2 } {
    if (type !== MessageType.CLIPBOARD || this.#selectionOf === undefined) return {};
    const selection = this.#selectionOf(payload);
    return selection === 0 || selection === 1 || selection === 2 ? { selection } : {};
  }

  #progress(entry: OutEntry, info: NonNullable<OutEntry["progress"]>): void {
    // Payload bytes among the first `entry.at` wire bytes of the framed message.
    const per = WireFormat.CHUNK_HEADER_SIZE + this.#chunkSize;
    const whole = Math.floor(entry.at / per);
    const rest = entry.at - whole * per;
    const message = whole * this.#chunkSize + Math.max(0, rest - WireFormat.CHUNK_HEADER_SIZE);
    const done = Math.max(0, message - WireFormat.MESSAGE_HEADER_SIZE);
    this.#onProgress?.({ direction: "out", ...info, done });
  }

  #throwIfFailed(): void {
    if (this.#failure !== undefined) throw this.#failure.error;
  }

  /** Tears everything down with `error`; the first failure wins. */
  #fail(error: unknown): void {
    if (this.#failure !== undefined || this.#stopped) return;
    this.#failure = { error };
    this.#stopped = true;
    this.#reject?.(error);
    if (this.#handOff === undefined) {
      this.#reader.cancel(error).catch(() => {});
      this.#writer.abort(error).catch(() => {});
    }
    this.#session.close(error);
    this.#wakeIn?.();
    this.#wakeOut?.();
  }
}

/** A promise and its resolve (Node 20 has no `Promise.withResolvers`). */
function deferred(): { promise: Promise<void>; resolve: () => void } {
  let resolve!: () => void;
  const promise = new Promise<void>((r) => resolve = r);
  return { promise, resolve };
}
