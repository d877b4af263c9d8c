// This module is browser compatible.

/**
 * One assembled vdagent message: the `VDAgentMessage` header fields and its
 * payload. Decode the payload with `decodeMessage`.
 */
export interface AgentMessage {
  /** Port it travelled on: 1 (client) for every host and agent message. */
  port: number;
  /** Message type, see `MessageType`. */
  type: number;
  /** The header's u64 `opaque` field; QEMU and the Linux agent send 0. */
  opaque: bigint;
  /** The payload, without the 20-byte header. */
  data: Uint8Array;
}
