// This module is browser compatible.

import type { Selection } from "../protocol/selection.ts";

/** What a {@linkcode HostSession} tells the relay about the guest's clipboard. */
export interface HostClipboardHandler {
  /** The guest now owns `selection` and offers `types` (`ClipboardType` values). */
  onGuestGrab?(selection: Selection, types: readonly number[]): void;
  /** The guest no longer owns `selection` (it released it, or restarted). */
  onGuestRelease?(selection: Selection): void;
  /**
   * The guest pastes what the host grabbed: return the data of `type`, or
   * `undefined` (or empty data) if there is none, in which case the guest gets
   * a CLIPBOARD_RELEASE and its paste fails fast. May return a promise; the
   * request stays pending meanwhile.
   */
  provide?(
    selection: Selection,
    type: number,
  ): Uint8Array | undefined | Promise<Uint8Array | undefined>;
}
