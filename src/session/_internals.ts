// This module is browser compatible.

import type { MessageHandler } from "../wire/_message_reader.ts";
import type { AgentMessage } from "../wire/agent_message.ts";
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
  /**
   * Takes `state` over before any traffic: the session will not announce
   * itself. With `reconnected`, the transport was reconnected: the guest
   * dropped its offers and the host's grabs, and its serials may have moved
   * on, so the session announces itself with request=1 (serials back to 0),
   * drops the guest's offers and grabs again once the guest answers.
   * Otherwise pending guest pastes go to the provider.
   */
  restore(state: HostSessionState, reconnected: boolean): void;
  /** Stops all output for good. */
  seal(): void;
}

/** Host sessions' checkpoint internals, keyed by session. */
export const hostInternals: WeakMap<object, HostInternals> = new WeakMap();
