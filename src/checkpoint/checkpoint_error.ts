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
 * - `FORBIDDEN_MESSAGE`: the bytes in flight for the guest hold a message this session never
 *   sends (a FILE_XFER, a MONITORS_CONFIG, data of a type the host does not offer, …).
 * - `UNAUTHENTICATED`: a key is required and the checkpoint carries no MAC, or a MAC'd checkpoint
 *   was given where it cannot be verified (open it with `openCheckpoint` first).
 * - `BAD_MAC`: its MAC does not match the key: tampered with, or sealed with another key.
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
  | "FORBIDDEN_MESSAGE"
  | "UNAUTHENTICATED"
  | "BAD_MAC"
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
   * const fromTheFuture = new Uint8Array([0x56, 0x44, 0x43, 0x4b, 3, 0]); // "VDCK", version 3.0
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
