// This module is browser compatible.

import type { HostSessionState } from "../session/host_session_state.ts";

/**
 * What a checkpoint holds. `"minimal"`: the seed proposal's state (caps, and
 * per selection the last serial, the host's offer and the guest's pending
 * pastes), at most 64 bytes. `"lossless"`: that, plus the guest's offers, the
 * host's outstanding requests, the last mouse state and the guest's
 * MAX_CLIPBOARD, and, when taken at a migration boundary, the bytes in flight.
 */
export type CheckpointMode = "lossless" | "minimal";

/** The bytes in flight at a migration boundary. */
export interface WireState {
  /**
   * Guest bytes received but not yet part of a complete message: fed to the
   * new relay's decoder before anything the transport delivers.
   */
  inbound: Uint8Array;
  /**
   * Framed messages for the guest, from a message start, that were not
   * written, or not whole: the first `written` bytes of them reached the
   * guest, and the new relay writes the rest first. They are checked on
   * decoding to be messages this session could have sent.
   */
  outbound: Uint8Array;
  /** How many bytes of `outbound`, all within its first message, were written. Default 0. */
  written?: number;
}

/** A decoded checkpoint: a host session's state, and the bytes in flight. */
export interface CheckpointState extends HostSessionState {
  /** Which state it holds. */
  mode: CheckpointMode;
  /** The bytes in flight, present when it was taken at a migration boundary in lossless mode. */
  wire?: WireState;
  /**
   * Taken when the old relay's connection ended, after it had read everything
   * the guest sent until the peer closed its side: no guest grab was lost,
   * so the guest's serials are the state's, and what the old relay wrote
   * last may be lost (see `HostPipeline.checkpoint`'s `drain`).
   */
  drained?: boolean;
}
