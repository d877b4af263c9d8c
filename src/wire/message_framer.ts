// This module is browser compatible.

import { batchOf } from "./_batch.ts";
import { checkFramerChunkSize, checkOutbound, framedSize, writeFrames } from "./_frame_writer.ts";
import type { AgentMessage } from "./agent_message.ts";
import { WireFormat } from "./wire_format.ts";

/** Options of {@linkcode MessageFramer}. */
export interface MessageFramerOptions {
  /**
   * Largest chunk payload written, from 20 (the whole message header must fit
   * in the first chunk, as QEMU requires) to 2048 (`VD_AGENT_MAX_DATA_SIZE`,
   * the most the Linux agent accepts). Default 2048.
   */
  maxChunkSize?: number;
}

/**
 * Turns messages into wire bytes: each message becomes a `VDAgentMessage`
 * header plus payload, cut into chunks of at most `maxChunkSize` bytes, each
 * behind its `VDIChunkHeader`. A chunk never carries bytes of two messages.
 *
 * Each write (one message or a batch) becomes one `Uint8Array`, allocated
 * once at its exact size, so a batch of small messages costs one allocation
 * and one `enqueue`.
 *
 * @example Framing a message into 20-byte chunks
 * ```ts
 * import { MessageFramer } from "@vdagent/streams";
 * import assert from "node:assert/strict";
 *
 * const message = { port: 1, type: 15, opaque: 0n, data: new Uint8Array([1, 0, 2, 9, 0, 8, 0]) };
 * const [wire] = await Array.fromAsync(
 *   ReadableStream.from([message]).pipeThrough(new MessageFramer({ maxChunkSize: 20 })),
 * ) as [Uint8Array];
 * assert.equal(wire.length, 8 + 20 + 8 + 7);
 * assert.deepEqual(wire.subarray(28, 36), new Uint8Array([1, 0, 0, 0, 7, 0, 0, 0]));
 * ```
 */
export class MessageFramer
  extends TransformStream<AgentMessage | readonly AgentMessage[], Uint8Array> {
  /**
   * Creates a framer.
   *
   * @param options Chunk size.
   */
  constructor(options: MessageFramerOptions = {}) {
    const maxChunkSize = checkFramerChunkSize(options.maxChunkSize ?? WireFormat.MAX_CHUNK_SIZE);
    super({
      transform(input, controller) {
        const messages = batchOf(input);
        let total = 0;
        for (const { port, type, opaque, data } of messages) {
          checkOutbound(port, type, opaque, data);
          total += framedSize(data.length, maxChunkSize);
        }
        if (total === 0) return;
        const out = new Uint8Array(total);
        const view = new DataView(out.buffer);
        let pos = 0;
        for (const { port, type, opaque, data } of messages) {
          pos = writeFrames(out, view, pos, maxChunkSize, port, type, opaque, data);
        }
        controller.enqueue(out);
      },
    });
  }
}
