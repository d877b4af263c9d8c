// This module is browser compatible.

/** Bounds `decodeCheckpoint` applies to what a checkpoint may hold. */
export interface CheckpointLimits {
  /** Largest checkpoint accepted, in bytes. Default 256 MiB. */
  maxSize?: number;
  /** Most sections. Default 64. */
  maxSections?: number;
  /** Most capability words per side. Default 16. */
  maxCapsWords?: number;
  /** Most types in one offer. Default 64. */
  maxGrabTypes?: number;
  /** Most outstanding host requests per selection. Default 16. */
  maxRequests?: number;
}
