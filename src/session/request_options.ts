// This module is browser compatible.

/** Options of `HostSession.request` and `GuestSession.request`. */
export interface RequestOptions {
  /** Milliseconds to wait; overrides the session's `requestTimeout`. */
  timeout?: number;
  /** Cancels the request. */
  signal?: AbortSignal;
}
