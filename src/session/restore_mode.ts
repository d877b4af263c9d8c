// This module is browser compatible.

/** How the session takes over a restored state; see `HostSession`'s `restoreState`. */
export interface RestoreMode {
  /** The guest saw its port close and reopen since the state was taken. */
  reconnected: boolean;
  /**
   * The old relay read everything the guest sent until its connection
   * closed: no guest grab was lost, so the guest's serials are the state's.
   */
  drained: boolean;
  /** The state holds the guest's offers (a lossless checkpoint). */
  offers: boolean;
}
