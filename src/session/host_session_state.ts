// This module is browser compatible.

import type { ClipboardOffer } from "./clipboard_offer.ts";

/** One selection's part of a {@linkcode HostSessionState}. */
export interface SelectionState {
  /** `last_serial`: the serial of the guest's last accepted grab, or of the host's next one. */
  lastSerial: number;
  /** Types the host owns and offers, if it owns the selection. */
  hostOffer?: readonly number[];
  /**
   * `false` when the guest has not had the host's grab of `hostOffer` yet (it
   * goes once the guest answers, e.g. after a reconnected restore). Lossless
   * only; absent means it was sent.
   */
  hostOfferSent?: boolean;
  /** Types of the guest's pastes waiting for the host's data (QEMU's `cbpending`). */
  guestRequests: readonly number[];
  /** What the guest offers, if it owns the selection. Lossless only. */
  guestOffer?: ClipboardOffer;
  /** Types of the host's requests waiting for the guest's data. Lossless only. */
  hostRequests?: readonly number[];
}

/** The last mouse state of a host session. */
export interface MouseSnapshot {
  /** X. */
  x: number;
  /** Y. */
  y: number;
  /** `MouseButton` mask. */
  buttons: number;
  /** Display. */
  display: number;
  /** Whether it reached the guest; if not, it is sent once the guest has MOUSE_STATE. */
  sent: boolean;
}

/**
 * A host session's migratable state: what a checkpoint carries besides the
 * bytes in flight. The minimal state (the seed QEMU proposal's) is the caps,
 * and per selection `lastSerial`, `hostOffer` and `guestRequests`; the
 * lossless state adds the guest's offers, the host's outstanding requests,
 * the last mouse state and the guest's MAX_CLIPBOARD.
 */
export interface HostSessionState {
  /** The capabilities the host announced to the guest. */
  hostCaps: readonly number[];
  /** The guest's capabilities, all words, if it announced them. */
  guestCaps?: readonly number[];
  /** Selections CLIPBOARD, PRIMARY and SECONDARY, in that order. */
  selections: readonly [SelectionState, SelectionState, SelectionState];
  /** The last mouse state. Lossless only. */
  mouse?: MouseSnapshot;
  /** The limit the guest set with MAX_CLIPBOARD. Lossless only. */
  guestMaxClipboard?: number;
  /**
   * What the session asked the guest and is waiting for an answer to before it
   * sends anything else: its announcement (`"caps"`) or its probe
   * (`"probe"`). Lossless only.
   */
  awaiting?: "caps" | "probe";
}
