// This module is browser compatible.

import type { MessageHandler } from "../wire/_message_reader.ts";
import type { AgentMessage } from "../wire/agent_message.ts";
import type { RestoreMode } from "./host_session.ts";
import type { HostSessionState } from "./host_session_state.ts";

/** What the pipeline layer may do with a session, beyond its public API. */
export interface SessionInternals {
  /** Sends outbound batches to `deliver` instead of the stream's readable side. */
  attach(deliver: (batch: AgentMessage[]) => void): void;
  /** Handles one message from the peer, synchronously, decoding it where it lies. */
  receive: MessageHandler;
  /** Runs `fn`, delivering what it sends as one batch. */
  run<T>(fn: () => T): T;
  /** Payload bytes sent but not yet delivered. */
  queuedBytes(): number;
  /** Ends the session: pending requests fail. */
  close(reason?: unknown): void;
}

/** Sessions' internals, keyed by session; nothing outside the library reaches them. */
export const sessionInternals: WeakMap<object, SessionInternals> = new WeakMap();

/** What the checkpoint layer may do with a host session. */
export interface HostInternals {
  /** The session's migratable state, lossless. */
  snapshot(): HostSessionState;
  /** Takes `state` over before any traffic; see `HostSession`'s `#restore`. */
  restore(state: HostSessionState, mode: RestoreMode): void;
  /** Stops all output for good; what the guest sends is still taken in. */
  seal(): void;
  /** Whether every announcement of the guest was answered (none arrived while sealed). */
  answeredAll(): boolean;
}

/** Host sessions' checkpoint internals, keyed by session. */
export const hostInternals: WeakMap<object, HostInternals> = new WeakMap();
