// This module is browser compatible.

/**
 * Progress of one large message (over 1 MiB by default), reported as its
 * bytes arrive or leave, so a UI can show a bar for a big paste.
 */
export interface TransferProgress {
  /** `"in"`: arriving from the peer; `"out"`: handed to the transport. */
  direction: "in" | "out";
  /** Port of the message. */
  port: number;
  /** Message type (CLIPBOARD for a paste). */
  type: number;
  /** Payload bytes done so far. */
  done: number;
  /** Payload bytes in all. */
  total: number;
  /**
   * The `Selection` a CLIPBOARD message is for, where a host pipeline reports
   * it (read from the payload as it arrives or leaves); absent otherwise.
   */
  selection?: 0 | 1 | 2;
}
