// This module is browser compatible.

import type { MessagePayload } from "../protocol/message_payload.ts";
import type { AgentMessage } from "../wire/agent_message.ts";
import type { HostClipboardHandler } from "./host_clipboard_handler.ts";
import type { SessionDiagnostic } from "./session_diagnostic.ts";
import type { SessionLimits } from "./session_limits.ts";

/** Options of {@linkcode HostSession}. */
export interface HostSessionOptions extends SessionLimits {
  /** Offer an absolute mouse (announce MOUSE_STATE). Default `true`. */
  mouse?: boolean;
  /**
   * Share the clipboard (announce CLIPBOARD_BY_DEMAND, CLIPBOARD_SELECTION and
   * CLIPBOARD_GRAB_SERIAL): `true`, `false`, or a handler, which implies `true`.
   * Default `true`.
   */
  clipboard?: boolean | HostClipboardHandler;
  /**
   * Largest clipboard data the guest may send, in bytes: announced with the
   * MAX_CLIPBOARD capability, sent as MAX_CLIPBOARD when the guest has it, and
   * enforced on receive. Default: no limit beyond the message size limit.
   */
  maxClipboard?: number;
  /** Milliseconds a host `request` waits for the guest's data; 0 waits forever. Default 30 000. */
  requestTimeout?: number;
  /**
   * Milliseconds a guest's paste may wait for the provider; then the guest
   * gets a release, so the user's paste fails instead of hanging. 0 waits
   * forever. Default 10 000.
   */
  guestRequestTimeout?: number;
  /**
   * Milliseconds before the session asks again when the guest leaves its
   * announcement unanswered (or, after a reconnected restore, its probe):
   * bytes a new client writes while the guest is still closing its port for
   * the previous one are dropped by the guest. It asks again after this
   * delay, then after twice and four times it; 0 never asks again. Default 1000.
   */
  retryInterval?: number;
  /** The guest announced its capabilities: it (re)started. */
  onGuestCaps?(caps: readonly number[]): void;
  /** Every message the session does not handle itself (REPLY, FILE_XFER_*, unknown and invalid ones, …). */
  onMessage?(payload: MessagePayload, message: AgentMessage): void;
  /** Something the session ignored, adjusted or refused. */
  onDiagnostic?(diagnostic: SessionDiagnostic): void;
}
