// This module is browser compatible.

import type { GuestCore } from "./_guest_core.ts";
import type { HostCore } from "./_host_core.ts";
import type { GuestSession } from "./guest_session.ts";
import type { HostSession } from "./host_session.ts";

/**
 * How the pipeline layer reaches a session's core: each session class hands
 * out its private `#core` from a static block, as a friend accessor. The core
 * is the session: the pipeline drives it synchronously and the session's
 * stream, built only when read, wraps the same core.
 */
let hostCore: ((session: HostSession) => HostCore) | undefined;
let guestCore: ((session: GuestSession) => GuestCore) | undefined;

/** Called once, by `HostSession`'s static block. */
export function setHostCoreOf(of: (session: HostSession) => HostCore): void {
  hostCore = of;
}

/** Called once, by `GuestSession`'s static block. */
export function setGuestCoreOf(of: (session: GuestSession) => GuestCore): void {
  guestCore = of;
}

/** The core of a host session. */
export function hostCoreOf(session: HostSession): HostCore {
  return hostCore!(session);
}

/** The core of a guest session. */
export function guestCoreOf(session: GuestSession): GuestCore {
  return guestCore!(session);
}
