// This module is browser compatible.

/**
 * One chunk of the wire stream: the `VDIChunkHeader` port and the payload
 * bytes, which continue one message on that port.
 */
export interface VdiChunk {
  /** `VDP_CLIENT_PORT` (1) or `VDP_SERVER_PORT` (2). */
  port: number;
  /** The chunk payload. */
  data: Uint8Array;
}
