// This module is browser compatible.

/** What a peer offers on a selection it owns. */
export interface ClipboardOffer {
  /** The grab's serial, when GRAB_SERIAL is negotiated. */
  serial?: number;
  /** Offered `ClipboardType` values. */
  types: readonly number[];
}
