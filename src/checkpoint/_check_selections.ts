// This module is browser compatible.

import { Capability } from "../protocol/capability.ts";
import { hasCapability } from "../protocol/has_capability.ts";
import type { SelectionState } from "../session/host_session_state.ts";
import { malformed } from "./_format.ts";

/**
 * Clipboard state on PRIMARY or SECONDARY needs CLIPBOARD_SELECTION on both
 * sides (a host offer may also predate the guest's capabilities): a session
 * never holds it otherwise, and restoring it would send messages that
 * cannot be laid out.
 */
export function checkSelections(
  hostCaps: readonly number[],
  guestCaps: readonly number[],
  selections: readonly SelectionState[],
): void {
  const bit = Capability.CLIPBOARD_SELECTION;
  if (hasCapability(hostCaps, bit) && hasCapability(guestCaps, bit)) return;
  for (let s = 1; s < 3; s++) {
    const state = selections[s]!;
    if (
      state.guestRequests.length > 0 || state.guestOffer !== undefined ||
      (state.hostRequests?.length ?? 0) > 0 ||
      (state.hostOffer !== undefined && guestCaps.length > 0)
    ) {
      throw malformed(
        `selection ${s} has clipboard state, but CLIPBOARD_SELECTION is not negotiated`,
      );
    }
  }
}
