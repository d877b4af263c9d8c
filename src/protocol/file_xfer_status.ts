// This module is browser compatible.

/**
 * Results of FILE_XFER_STATUS (`VD_AGENT_FILE_XFER_STATUS_*`), and the one
 * detailed error type (`VD_AGENT_FILE_XFER_STATUS_ERROR_GLIB_IO`).
 *
 * @example
 * ```ts
 * import { FileXferStatus } from "@vdagent/streams";
 * import assert from "node:assert/strict";
 *
 * assert.equal(FileXferStatus.NOT_ENOUGH_SPACE, 4);
 * ```
 */
export const FileXferStatus = {
  /** The agent is ready for FILE_XFER_DATA. */
  CAN_SEND_DATA: 0,
  /** The transfer was cancelled. */
  CANCELLED: 1,
  /** The transfer failed; with detailed errors, an error type and code follow. */
  ERROR: 2,
  /** The transfer completed. */
  SUCCESS: 3,
  /** Not enough disk space; with detailed errors, the free space follows. */
  NOT_ENOUGH_SPACE: 4,
  /** The guest session is locked. */
  SESSION_LOCKED: 5,
  /** No session agent is connected. */
  VDAGENT_NOT_CONNECTED: 6,
  /** File transfer is disabled. */
  DISABLED: 7,
  /** Detailed error type: `code` is a GLib `G_IO_ERROR_*` value. */
  ERROR_GLIB_IO: 0,
} as const;

/** One of the {@linkcode FileXferStatus} values. */
export type FileXferStatus = typeof FileXferStatus[keyof typeof FileXferStatus];
