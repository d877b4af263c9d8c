// This module is browser compatible.

import type { Selection } from "../protocol/selection.ts";

/** What a {@linkcode GuestSession} tells the guest about the host's clipboard. */
export interface GuestClipboardHandler {
  /** The host now owns `selection` and offers `types`. */
  onHostGrab?(selection: Selection, types: readonly number[]): void;
  /** The host no longer owns `selection`. */
  onHostRelease?(selection: Selection): void;
  /**
   * The host pastes what the guest grabbed: return the data of `type`, or
   * `undefined` if there is none (the host then gets type NONE, as the Linux
   * agent answers). May return a promise.
   */
  provide?(
    selection: Selection,
    type: number,
  ): Uint8Array | undefined | Promise<Uint8Array | undefined>;
}
