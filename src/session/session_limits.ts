// This module is browser compatible.

/** Bounds on what a peer can make a session hold. */
export interface SessionLimits {
  /** Most types one grab may offer; a grab with more is ignored as invalid. Default 64. */
  maxGrabTypes?: number;
  /** Most capability words the peer may announce; more is ignored as invalid. Default 16. */
  maxCapsWords?: number;
  /** Most requests outstanding per selection, in each direction. Default 16. */
  maxRequests?: number;
}
