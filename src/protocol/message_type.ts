// This module is browser compatible.

/**
 * Message types (`VD_AGENT_*` of `spice/vd_agent.h`). Directions are nominal:
 * "server" is the host side (QEMU, or a relay built on this library).
 *
 * @example Naming a message type
 * ```ts
 * import { MessageType } from "@vdagent/streams";
 * import assert from "node:assert/strict";
 *
 * const name = Object.entries(MessageType).find(([, v]) => v === 7)?.[0];
 * assert.equal(name, "CLIPBOARD_GRAB");
 * ```
 */
export const MessageType = {
  /** Server → agent: absolute pointer position and buttons. */
  MOUSE_STATE: 1,
  /** Client → agent: monitor layout; acknowledged with REPLY. */
  MONITORS_CONFIG: 2,
  /** Agent → client: acknowledges MONITORS_CONFIG or DISPLAY_CONFIG. */
  REPLY: 3,
  /** Both ways: clipboard data of one type. */
  CLIPBOARD: 4,
  /** Client → agent: desktop appearance. */
  DISPLAY_CONFIG: 5,
  /** Both ways: capability words; `request` asks the peer to answer with its own. */
  ANNOUNCE_CAPABILITIES: 6,
  /** Both ways: the sender now owns a selection and offers these types. */
  CLIPBOARD_GRAB: 7,
  /** Both ways: asks the owner for the data of one type. */
  CLIPBOARD_REQUEST: 8,
  /** Both ways: the sender no longer owns the selection. */
  CLIPBOARD_RELEASE: 9,
  /** Client → agent: starts a file transfer. */
  FILE_XFER_START: 10,
  /** Both ways: file transfer status. */
  FILE_XFER_STATUS: 11,
  /** Client → agent: file transfer data. */
  FILE_XFER_DATA: 12,
  /** Server → agent: the client went away (empty payload). */
  CLIENT_DISCONNECTED: 13,
  /** Client → agent: largest clipboard the agent should send. */
  MAX_CLIPBOARD: 14,
  /** Client → agent: audio volume. */
  AUDIO_VOLUME_SYNC: 15,
  /** Server → agent: graphics device addresses of the displays. */
  GRAPHICS_DEVICE_INFO: 16,
} as const;

/** One of the {@linkcode MessageType} values. */
export type MessageType = typeof MessageType[keyof typeof MessageType];
