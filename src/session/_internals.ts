// This module is browser compatible.

import type { AgentMessage } from "../wire/agent_message.ts";

/** What the pipeline layer may do with a session, beyond its public API. */
export interface SessionInternals {
  /** Sends outbound batches to `deliver` instead of the stream's readable side. */
  attach(deliver: (batch: AgentMessage[]) => void): void;
  /** Handles one message from the peer, synchronously. */
  receive(message: AgentMessage): void;
  /** Runs `fn`, delivering what it sends as one batch. */
  run<T>(fn: () => T): T;
  /** Ends the session: pending requests fail. */
  close(reason?: unknown): void;
}

/** Sessions' internals, keyed by session; nothing outside the library reaches them. */
export const sessionInternals: WeakMap<object, SessionInternals> = new WeakMap();
