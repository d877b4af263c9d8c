// This module is browser compatible.

import type { MessagePayload } from "../protocol/message_payload.ts";

/**
 * Stable codes of a {@linkcode SessionDiagnostic}: something the peer sent
 * was ignored or adjusted, or a handler failed. The session goes on.
 * - `GRAB_DISCARDED`: a grab whose serial is older than the last one seen.
 * - `BAD_SELECTION`: a clipboard message for a selection ≥ 3.
 * - `INVALID_PAYLOAD`: a message whose payload breaks its size rules.
 * - `CLIPBOARD_DISABLED`: a clipboard message while the clipboard is off or not negotiated.
 * - `UNSOLICITED_DATA`: clipboard data that answers no pending request.
 * - `LEGACY_RELEASE`: the Linux agent's 1-byte CLIPBOARD_RELEASE, accepted.
 * - `PROVIDER_FAILED`: the clipboard provider threw or rejected; the peer got a release.
 * - `TOO_LARGE`: clipboard data over a limit, refused.
 * - `REQUEST_EXPIRED`: a peer's request waited too long; it got a release.
 * - `TOO_MANY_REQUESTS`: a peer has too many requests pending on a selection; it got a release
 *   (or, while the session may not send, the request was dropped).
 * - `LOST_GRAB`: a restored session heard the guest release a selection whose grab never
 *   arrived (it was lost with the old relay's connection): the session announces itself.
 * - `RESYNC`: a pipeline whose transport was reconnected skipped bytes at its start, the rest of
 *   a message the old connection had begun, up to the first message header.
 */
export type SessionDiagnosticCode =
  | "GRAB_DISCARDED"
  | "BAD_SELECTION"
  | "INVALID_PAYLOAD"
  | "CLIPBOARD_DISABLED"
  | "UNSOLICITED_DATA"
  | "LEGACY_RELEASE"
  | "PROVIDER_FAILED"
  | "TOO_LARGE"
  | "REQUEST_EXPIRED"
  | "TOO_MANY_REQUESTS"
  | "LOST_GRAB"
  | "RESYNC";

/** Something a session ignored, adjusted or refused, for logs and metrics. */
export interface SessionDiagnostic {
  /** Stable code. */
  code: SessionDiagnosticCode;
  /** What happened, for humans. */
  message: string;
  /** The selection concerned, if any. */
  selection?: number;
  /** The decoded message concerned, if any. */
  payload?: MessagePayload;
  /** The error concerned, if any. */
  error?: unknown;
}
