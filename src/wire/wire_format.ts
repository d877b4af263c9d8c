// This module is browser compatible.

/**
 * Fixed sizes and values of the vdagent wire format (`spice/vd_agent.h`).
 *
 * A virtio-serial port carries a stream of chunks. Each chunk is an 8-byte
 * `VDIChunkHeader` (`port` u32, `size` u32, little-endian) followed by `size`
 * bytes that continue one message on that port. A message is a 20-byte
 * `VDAgentMessage` header (`protocol` u32, `type` u32, `opaque` u64, `size`
 * u32) followed by `size` payload bytes.
 *
 * @example Reading a chunk header by hand
 * ```ts
 * import { WireFormat } from "@vdagent/streams";
 * import assert from "node:assert/strict";
 *
 * const wire = new Uint8Array([1, 0, 0, 0, 28, 0, 0, 0]);
 * const view = new DataView(wire.buffer);
 * assert.equal(view.getUint32(0, true), WireFormat.CLIENT_PORT);
 * assert.equal(view.getUint32(4, true) - WireFormat.MESSAGE_HEADER_SIZE, 8);
 * ```
 */
export const WireFormat = {
  /** `VD_AGENT_PROTOCOL`: the only protocol version. */
  PROTOCOL: 1,
  /** Size of a `VDIChunkHeader`. */
  CHUNK_HEADER_SIZE: 8,
  /** Size of a `VDAgentMessage` header. */
  MESSAGE_HEADER_SIZE: 20,
  /** `VD_AGENT_MAX_DATA_SIZE`: the largest chunk payload the Linux agent accepts. */
  MAX_CHUNK_SIZE: 2048,
  /** `VDP_CLIENT_PORT`: the port every host and agent message uses. */
  CLIENT_PORT: 1,
  /** `VDP_SERVER_PORT`: the second port, with its own reassembly state. */
  SERVER_PORT: 2,
} as const;
