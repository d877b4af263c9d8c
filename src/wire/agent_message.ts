// This module is browser compatible.

/**
 * One assembled vdagent message: the `VDAgentMessage` header fields and its
 * payload. Decode the payload with `decodeMessage`.
 *
 * Treat messages as read-only: a session may send one message object more
 * than once (a repeated CLIPBOARD_REQUEST of the same type is).
 */
export interface AgentMessage {
  /** Port it travelled on: 1 (client) for every host and agent message. */
  port: number;
  /** Message type, see `MessageType`. */
  type: number;
  /** The header's u64 `opaque` field; QEMU and the Linux agent send 0. */
  opaque: bigint;
  /** The payload, without the 20-byte header; empty when `skipped` is set. */
  data: Uint8Array;
  /**
   * Set when the payload was over the size bound for its type (the
   * assembler's `maxSizeFor`) and was skipped unread: the payload size the
   * header declared. `decodeMessage` returns such a message as invalid.
   */
  skipped?: number;
}
