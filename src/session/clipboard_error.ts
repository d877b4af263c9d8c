// This module is browser compatible.

/**
 * Stable codes of {@linkcode ClipboardError}:
 * - `RELEASED`: the owner released the selection while the request waited.
 * - `TIMEOUT`: no answer within the request timeout.
 * - `CLOSED`: the session ended first.
 * - `PEER_RESET`: the peer (re)started and announced its capabilities.
 * - `ABORTED`: the caller's `AbortSignal` fired.
 * - `NOT_OFFERED`: the peer does not own the selection or did not offer the type.
 * - `NO_DATA`: the peer answered with no data (type NONE).
 * - `TOO_LARGE`: data over a clipboard limit, ours or the peer's.
 * - `DISABLED`: the clipboard is switched off, or the peer lacks clipboard by demand.
 * - `UNSUPPORTED`: a selection other than CLIPBOARD without CLIPBOARD_SELECTION.
 * - `TOO_MANY_REQUESTS`: too many requests outstanding on one selection.
 */
export type ClipboardErrorCode =
  | "RELEASED"
  | "TIMEOUT"
  | "CLOSED"
  | "PEER_RESET"
  | "ABORTED"
  | "NOT_OFFERED"
  | "NO_DATA"
  | "TOO_LARGE"
  | "DISABLED"
  | "UNSUPPORTED"
  | "TOO_MANY_REQUESTS";

/**
 * A clipboard operation failed. Branch on {@linkcode code}; the message is for
 * humans.
 *
 * @example Telling a timeout from a release
 * ```ts
 * import { ClipboardError } from "@vdagent/streams";
 * import assert from "node:assert/strict";
 *
 * const error = new ClipboardError("TIMEOUT", "Cannot paste: no answer within 30000 ms", 0);
 * assert.ok(error instanceof Error);
 * assert.equal(error.code, "TIMEOUT");
 * assert.equal(error.selection, 0);
 * ```
 */
export class ClipboardError extends Error {
  /** Stable machine-readable code. */
  readonly code: ClipboardErrorCode;
  /** The selection concerned, if any. */
  readonly selection: number | undefined;

  /**
   * Creates an error.
   *
   * @param code Stable code.
   * @param message Human-readable description.
   * @param selection The selection concerned.
   * @param options An optional cause.
   */
  constructor(
    code: ClipboardErrorCode,
    message: string,
    selection?: number,
    options?: ErrorOptions,
  ) {
    super(message, options);
    this.name = "ClipboardError";
    this.code = code;
    this.selection = selection;
  }
}
