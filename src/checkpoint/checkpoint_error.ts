// This module is browser compatible.

/**
 * Stable codes of {@linkcode CheckpointError}:
 * - `BAD_MAGIC`: not a vdagent-streams checkpoint.
 * - `UNSUPPORTED_VERSION`: written by another major version of the format.
 * - `TRUNCATED`: shorter than it says it is.
 * - `BAD_CHECKSUM`: the CRC-32 does not match: corrupt or tampered with.
 * - `TOO_LARGE`: over a limit (size, sections, capability words).
 * - `UNKNOWN_SECTION`: a required section this version does not know.
 * - `DUPLICATE_SECTION`, `MISSING_SECTION`: sections not as the format requires.
 * - `MALFORMED`: a field out of range or a section that does not parse.
 * - `NOT_RUNNING`: a checkpoint was asked of a pipeline that has ended.
 */
export type CheckpointErrorCode =
  | "BAD_MAGIC"
  | "UNSUPPORTED_VERSION"
  | "TRUNCATED"
  | "BAD_CHECKSUM"
  | "TOO_LARGE"
  | "UNKNOWN_SECTION"
  | "DUPLICATE_SECTION"
  | "MISSING_SECTION"
  | "MALFORMED"
  | "NOT_RUNNING";

/**
 * A checkpoint could not be decoded, restored or taken. Nothing of it was
 * applied. Branch on {@linkcode code}; the message is for humans.
 *
 * @example Rejecting a corrupt checkpoint
 * ```ts
 * import { CheckpointError, decodeCheckpoint } from "@vdagent/streams";
 * import assert from "node:assert/strict";
 *
 * assert.throws(
 *   () => decodeCheckpoint(new TextEncoder().encode("not a checkpoint at all")),
 *   (e) => e instanceof CheckpointError && e.code === "BAD_MAGIC",
 * );
 * ```
 */
export class CheckpointError extends Error {
  /**
   * Stable machine-readable code.
   *
   * @example Telling a checkpoint from a newer release apart from a corrupt one
   * ```ts
   * import { CheckpointError, decodeCheckpoint } from "@vdagent/streams";
   * import assert from "node:assert/strict";
   *
   * const fromTheFuture = new Uint8Array([0x56, 0x44, 0x43, 0x4b, 2, 0]); // "VDCK", version 2.0
   * try {
   *   decodeCheckpoint(fromTheFuture);
   *   assert.fail("decoded");
   * } catch (error) {
   *   assert.ok(error instanceof CheckpointError);
   *   assert.equal(error.code, "UNSUPPORTED_VERSION");
   * }
   * ```
   */
  readonly code: CheckpointErrorCode;

  /**
   * Creates an error.
   *
   * @param code Stable code.
   * @param message Human-readable description.
   * @param options An optional cause.
   */
  constructor(code: CheckpointErrorCode, message: string, options?: ErrorOptions) {
    super(message, options);
    this.name = "CheckpointError";
    this.code = code;
  }
}
