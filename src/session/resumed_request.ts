// This module is browser compatible.

import type { Selection } from "../protocol/selection.ts";

/** A host request carried over from a checkpoint; see `HostSession.resumedRequests`. */
export interface ResumedRequest {
  /** `Selection` value. */
  selection: Selection;
  /** `ClipboardType` value. */
  type: number;
  /** The guest's data, or a `ClipboardError`. */
  result: Promise<Uint8Array>;
}
