// This module is browser compatible.

/**
 * Capability bit numbers (`VD_AGENT_CAP_*`). Bit `n` lives in word `n / 32`
 * of an ANNOUNCE_CAPABILITIES message. A capability is negotiated when the
 * peer announced it.
 *
 * @example Building the Linux agent's caps word
 * ```ts
 * import { Capability, capabilityWords } from "@vdagent/streams";
 * import assert from "node:assert/strict";
 *
 * const bits = [0, 1, 2, 5, 6, 7, 8, 10, 11, 15, 16, 17] as const;
 * assert.deepEqual(capabilityWords(bits), [0x00038de7]);
 * assert.equal(Capability.CLIPBOARD_GRAB_SERIAL, 17);
 * ```
 */
export const Capability = {
  /** Accepts MOUSE_STATE. */
  MOUSE_STATE: 0,
  /** Accepts MONITORS_CONFIG. */
  MONITORS_CONFIG: 1,
  /** Sends REPLY. */
  REPLY: 2,
  /** Legacy push clipboard. */
  CLIPBOARD: 3,
  /** Accepts DISPLAY_CONFIG. */
  DISPLAY_CONFIG: 4,
  /** Clipboard by demand: GRAB, REQUEST, data, RELEASE. */
  CLIPBOARD_BY_DEMAND: 5,
  /** Clipboard messages carry a selection prefix. */
  CLIPBOARD_SELECTION: 6,
  /** MONITORS_CONFIG may disable monitors with a 0×0 size. */
  SPARSE_MONITORS_CONFIG: 7,
  /** The guest uses LF line endings. */
  GUEST_LINEEND_LF: 8,
  /** The guest uses CRLF line endings. */
  GUEST_LINEEND_CRLF: 9,
  /** Accepts MAX_CLIPBOARD. */
  MAX_CLIPBOARD: 10,
  /** Accepts AUDIO_VOLUME_SYNC. */
  AUDIO_VOLUME_SYNC: 11,
  /** MONITORS_CONFIG positions are honoured. */
  MONITORS_CONFIG_POSITION: 12,
  /** File transfer is disabled. */
  FILE_XFER_DISABLED: 13,
  /** FILE_XFER_STATUS may carry error details. */
  FILE_XFER_DETAILED_ERRORS: 14,
  /** Accepts GRAPHICS_DEVICE_INFO. */
  GRAPHICS_DEVICE_INFO: 15,
  /** A new grab of an owned selection is not preceded by a release. */
  CLIPBOARD_NO_RELEASE_ON_REGRAB: 16,
  /** CLIPBOARD_GRAB carries a serial. */
  CLIPBOARD_GRAB_SERIAL: 17,
} as const;

/** One of the {@linkcode Capability} bit numbers. */
export type Capability = typeof Capability[keyof typeof Capability];
