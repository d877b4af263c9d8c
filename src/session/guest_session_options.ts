// This module is browser compatible.

import type { MessagePayload } from "../protocol/message_payload.ts";
import type { AgentMessage } from "../wire/agent_message.ts";
import type { GuestClipboardHandler } from "./guest_clipboard_handler.ts";
import type { SessionDiagnostic } from "./session_diagnostic.ts";
import type { SessionLimits } from "./session_limits.ts";

/** Options of {@linkcode GuestSession}. */
export interface GuestSessionOptions extends SessionLimits {
  /** Announce CLIPBOARD_SELECTION. Default `true`; `false` behaves like the Windows agent. */
  selection?: boolean;
  /** Announce CLIPBOARD_GRAB_SERIAL. Default `true`; `false` behaves like the Windows agent. */
  grabSerial?: boolean;
  /** Share the clipboard: `true`, `false`, or a handler, which implies `true`. Default `true`. */
  clipboard?: boolean | GuestClipboardHandler;
  /** Capability words to announce instead of the Linux agent's set. */
  caps?: readonly number[];
  /** Milliseconds a guest `request` waits for the host's data; 0 waits forever. Default 30 000. */
  requestTimeout?: number;
  /** The host moved the pointer. */
  onMouse?(state: { x: number; y: number; buttons: number; display: number }): void;
  /** The host announced its capabilities; `request` means a new client connected. */
  onHostCaps?(caps: readonly number[], request: boolean): void;
  /** Every message the session does not handle itself. */
  onMessage?(payload: MessagePayload, message: AgentMessage): void;
  /** Something the session ignored or refused. */
  onDiagnostic?(diagnostic: SessionDiagnostic): void;
}
