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
  /**
   * Largest message payload in the bytes in flight, either way: the restoring
   * pipeline's `maxMessageSize`, which `createHostPipeline` passes. Default 64 MiB.
   */
  maxMessageSize?: number;
  /** Most bytes held for partial inbound messages: the pipeline's `maxBuffered`. Default `maxMessageSize`. */
  maxBuffered?: number;
  /** Most outbound bytes in flight. Default twice `maxMessageSize`, plus 2 MiB. */
  maxOutbound?: number;
}
