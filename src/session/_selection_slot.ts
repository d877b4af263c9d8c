// This module is browser compatible.

import type { ClipboardOffer } from "./clipboard_offer.ts";
import type { SelectionState } from "./host_session_state.ts";

/** A paste of the peer's waiting for this side's provider. */
export interface PeerRequest {
  /** The `ClipboardType` asked for. */
  type: number;
  /** Expires the request (a host's guest pastes); `undefined` for none. */
  timer: ReturnType<typeof setTimeout> | undefined;
}

/**
 * One selection's state at one endpoint, role-neutral: what this side owns
 * and offers (and whether the peer has had that grab), what the peer offers,
 * the grab serial, and the peer's pastes waiting for this side's data. A host
 * session's {@linkcode snapshot} is the checkpoint's `SelectionState`.
 */
export class SelectionSlot {
  /** Types this side owns and offers, if it owns the selection. */
  ownOffer: readonly number[] | undefined = undefined;
  /** Whether the peer has had the grab of `ownOffer`. */
  ownSent = false;
  /** What the peer offers, if it owns the selection. */
  peerOffer: ClipboardOffer | undefined = undefined;
  /**
   * The grab serial: at a host the serial of the guest's last accepted grab
   * (`last_serial`), at a guest its next one (`clipboard_serial`).
   */
  serial = 0;
  /** The peer's pastes waiting for this side's provider, oldest first. */
  peerRequests: PeerRequest[] = [];
  /** The peer's pastes kept to be served once this side may send again. */
  deferred: number[] = [];

  /** This side owns the selection and offers `types`; the peer has not had it yet. */
  own(types: readonly number[]): void {
    this.ownOffer = [...types];
    this.ownSent = false;
  }

  /** This side no longer owns the selection. */
  disown(): void {
    this.ownOffer = undefined;
    this.ownSent = false;
  }

  /** Forgets the peer's pending pastes; their late answers go nowhere. */
  dropPeerRequests(): void {
    for (const request of this.peerRequests) clearTimeout(request.timer);
    this.peerRequests = [];
  }

  /**
   * The host's view of this selection, for a checkpoint: this side is the
   * host, the peer the guest. `hostRequests` are the host's own requests
   * outstanding; deferred pastes of types the host can never own (above
   * `maxType`) are not carried on.
   */
  snapshot(hostRequests: number[], maxType: number): SelectionState {
    const owned = this.ownOffer;
    const offer = this.peerOffer;
    return {
      lastSerial: this.serial,
      ...(owned === undefined ? {} : { hostOffer: [...owned] }),
      ...(owned !== undefined && !this.ownSent ? { hostOfferSent: false } : {}),
      guestRequests: [
        ...this.peerRequests.map((r) => r.type),
        ...this.deferred.filter((type) => type >= 1 && type <= maxType),
      ],
      ...(offer === undefined ? {} : { guestOffer: offer }),
      hostRequests,
    };
  }
}
