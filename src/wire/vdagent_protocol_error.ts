// This module is browser compatible.

/**
 * Stable codes of {@linkcode VdagentProtocolError}.
 *
 * Framing errors (the byte stream cannot be trusted any more):
 * - `UNKNOWN_PORT`: a chunk header names a port other than 1 or 2.
 * - `EMPTY_CHUNK`: a chunk header declares 0 bytes.
 * - `CHUNK_TOO_LARGE`: a chunk header declares more bytes than `maxChunkSize`.
 * - `BAD_PROTOCOL`: a message header's `protocol` is not 1.
 * - `MESSAGE_TOO_LARGE`: a message header declares more than `maxMessageSize` payload bytes.
 * - `CHUNK_OVERRUN`: a chunk is longer than the rest of its message.
 * - `BUFFER_FULL`: a message in progress would take the bytes held for
 *   messages in progress, summed over both ports, over `maxBuffered`.
 * - `TRUNCATED`: the input ended inside a chunk header, a chunk or a message.
 *
 * Everything else a peer gets wrong is not fatal: payloads are flagged
 * invalid by `decodeMessage`, and sessions report what they ignore as
 * diagnostics.
 */
export type VdagentProtocolErrorCode =
  | "UNKNOWN_PORT"
  | "EMPTY_CHUNK"
  | "CHUNK_TOO_LARGE"
  | "BAD_PROTOCOL"
  | "MESSAGE_TOO_LARGE"
  | "CHUNK_OVERRUN"
  | "BUFFER_FULL"
  | "TRUNCATED";

/** Where a {@linkcode VdagentProtocolError} happened, when known. */
export interface VdagentProtocolErrorOptions extends ErrorOptions {
  /** Byte offset in the input stream where the offending header or byte starts. */
  offset?: number;
  /** Chunk port involved. */
  port?: number;
  /** Message type involved. */
  type?: number;
}

/**
 * A peer sent bytes that break the vdagent protocol.
 *
 * The stream stages error their streams with it; the byte stream has no resync
 * marker, so a framing error ends the stream. Branch on {@linkcode code}, which
 * is stable across releases; the message is for humans.
 *
 * @example Branching on the code
 * ```ts
 * import { ChunkDeframer, VdagentProtocolError } from "@vdagent/streams";
 * import assert from "node:assert/strict";
 *
 * const bad = new Uint8Array([3, 0, 0, 0, 4, 0, 0, 0]); // port 3
 * await assert.rejects(
 *   ReadableStream.from([bad]).pipeThrough(new ChunkDeframer()).pipeTo(new WritableStream()),
 *   (e) => e instanceof VdagentProtocolError && e.code === "UNKNOWN_PORT" && e.offset === 0,
 * );
 * ```
 */
export class VdagentProtocolError extends Error {
  /** Stable machine-readable code. */
  readonly code: VdagentProtocolErrorCode;
  /** Byte offset in the input stream, if known. */
  readonly offset: number | undefined;
  /** Chunk port, if known. */
  readonly port: number | undefined;
  /** Message type, if known. */
  readonly type: number | undefined;

  /**
   * Creates an error.
   *
   * @param code Stable code.
   * @param message Human-readable description.
   * @param options Where it happened, and an optional cause.
   */
  constructor(
    code: VdagentProtocolErrorCode,
    message: string,
    options: VdagentProtocolErrorOptions = {},
  ) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause });
    this.name = "VdagentProtocolError";
    this.code = code;
    this.offset = options.offset;
    this.port = options.port;
    this.type = options.type;
  }
}
