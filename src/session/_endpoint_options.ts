// This module is browser compatible.

import type { MessagePayload } from "../protocol/message_payload.ts";
import type { AgentMessage } from "../wire/agent_message.ts";
import type { SessionDiagnostic } from "./session_diagnostic.ts";
import type { SessionLimits } from "./session_limits.ts";

/** What every endpoint's options have in common. */
export interface EndpointOptions extends SessionLimits {
  /** Share the clipboard: `false` switches it off. */
  clipboard?: unknown;
  /** Milliseconds a `request` waits for the peer's data; 0 waits forever. */
  requestTimeout?: number;
  /** Every message the session does not handle itself. */
  onMessage?(payload: MessagePayload, message: AgentMessage): void;
  /** Something the session ignored, adjusted or refused. */
  onDiagnostic?(diagnostic: SessionDiagnostic): void;
}
