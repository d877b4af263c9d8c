// This module is browser compatible.

import { batchOf } from "./_batch.ts";
import { checkChunkHeader } from "./_chunk_reader.ts";
import { checkLimit, DEFAULT_MAX_MESSAGE_SIZE } from "./_limits.ts";
import { agentMessage, MessageReader } from "./_message_reader.ts";
import type { AgentMessage } from "./agent_message.ts";
import type { TransferProgress } from "./transfer_progress.ts";
import type { VdiChunk } from "./vdi_chunk.ts";
import { WireFormat } from "./wire_format.ts";

/** Options of {@linkcode MessageAssembler}. */
export interface MessageAssemblerOptions {
  /**
   * Largest message payload accepted, checked against the message header
   * before anything is allocated. Default 64 MiB.
   */
  maxMessageSize?: number;
  /**
   * Copy single-chunk messages instead of handing out views of their chunk.
   * Default `false`.
   */
  copy?: boolean;
  /**
   * Called as each message over 1 MiB arrives (every 64 KiB and at the end),
   * so a UI can show progress on a big paste.
   */
  onProgress?: (progress: TransferProgress) => void;
  /**
   * The largest payload a message of `type` may have, known at its header,
   * e.g. `(type) => maxPayloadSize(type)`. A message over it (but within
   * `maxMessageSize`) is skipped as its chunks arrive, without being kept,
   * and emitted with `skipped` set to its declared size and empty `data`: a
   * grab of 10 million types costs no memory. Default: no bound but
   * `maxMessageSize`.
   */
  maxSizeFor?: (type: number) => number;
  /**
   * Most payload bytes held at once for messages spread over several chunks,
   * summed over both ports (each may have one in progress), checked before
   * allocating; over it the stream errors with `BUFFER_FULL`. Default
   * `maxMessageSize`.
   */
  maxBuffered?: number;
}

/**
 * Reassembles chunks into messages, with separate state per port.
 *
 * It takes chunks one at a time or in batches (as {@linkcode ChunkDeframer}
 * emits them) and emits, per write, the batch of messages completed. A
 * message that fills its chunk is a view of it; a message spread over several
 * chunks is copied once into a buffer of its exact size, allocated after the
 * size was checked against `maxMessageSize`.
 *
 * Errors are `VdagentProtocolError`s: `BAD_PROTOCOL` (header protocol ≠ 1),
 * `MESSAGE_TOO_LARGE`, `BUFFER_FULL` (over `maxBuffered`), `CHUNK_OVERRUN` (a
 * chunk longer than the rest of its message), `UNKNOWN_PORT`, `EMPTY_CHUNK`,
 * and `TRUNCATED` when the input ends inside a message. Offsets count bytes as on the wire, headers included.
 * Payloads are not interpreted here: decode them with `decodeMessage`.
 *
 * @example Reassembling a message sent in two chunks
 * ```ts
 * import { MessageAssembler } from "@vdagent/streams";
 * import assert from "node:assert/strict";
 *
 * // protocol 1, type 9 (CLIPBOARD_RELEASE), opaque 0, size 4, then selection 1
 * const message = new Uint8Array([1, 0, 0, 0, 9, 0, 0, 0, ...new Array(8).fill(0), 4, 0, 0, 0, 1, 0, 0, 0]);
 * const chunks = [{ port: 1, data: message.subarray(0, 10) }, { port: 1, data: message.subarray(10) }];
 * const [batch] = await Array.fromAsync(
 *   ReadableStream.from([chunks]).pipeThrough(new MessageAssembler()),
 * );
 * assert.deepEqual(batch, [{ port: 1, type: 9, opaque: 0n, data: new Uint8Array([1, 0, 0, 0]) }]);
 * ```
 */
export class MessageAssembler
  extends TransformStream<VdiChunk | readonly VdiChunk[], AgentMessage[]> {
  /**
   * Creates an assembler.
   *
   * @param options Limits and copying.
   */
  constructor(options: MessageAssemblerOptions = {}) {
    const maxMessageSize = checkLimit(
      "MessageAssembler",
      "maxMessageSize",
      options.maxMessageSize,
      DEFAULT_MAX_MESSAGE_SIZE,
      0xffff_ffff,
    );
    const maxBuffered = checkLimit(
      "MessageAssembler",
      "maxBuffered",
      options.maxBuffered,
      maxMessageSize,
    );
    const maxSizeFor = options.maxSizeFor;
    if (maxSizeFor !== undefined && typeof maxSizeFor !== "function") {
      throw new TypeError("Cannot create MessageAssembler: maxSizeFor must be a function");
    }
    let out: AgentMessage[] = [];
    const reader = new MessageReader(
      (port, type, opaque, bytes, start, end, skipped) =>
        out.push(agentMessage(port, type, opaque, bytes, start, end, skipped)),
      {
        maxMessageSize,
        copy: options.copy ?? false,
        onProgress: options.onProgress,
        maxSizeFor,
        maxBuffered,
      },
    );
    let offset = 0;
    super({
      transform(input, controller) {
        for (const { port, data } of batchOf(input)) {
          if (!(data instanceof Uint8Array)) {
            throw new TypeError("Cannot assemble message: chunk data must be a Uint8Array");
          }
          const size = data.length;
          checkChunkHeader(port, size, offset, Number.MAX_SAFE_INTEGER);
          reader.chunkStart(port, size, offset);
          offset += WireFormat.CHUNK_HEADER_SIZE;
          reader.chunkData(data, 0, size, offset);
          offset += size;
        }
        if (out.length > 0) {
          controller.enqueue(out);
          out = [];
        }
      },
      flush() {
        reader.finish(offset);
      },
    });
  }
}
