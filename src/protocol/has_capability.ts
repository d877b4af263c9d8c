// This module is browser compatible.

/**
 * Whether capability `bit` is set in `caps` (the words of an
 * ANNOUNCE_CAPABILITIES message). Bits beyond the words are unset.
 *
 * @param caps Capability words.
 * @param bit Capability bit number, see `Capability`.
 * @returns Whether the bit is set.
 *
 * @example
 * ```ts
 * import { Capability, hasCapability } from "@vdagent/streams";
 * import assert from "node:assert/strict";
 *
 * const linuxAgent = [0x00038de7];
 * assert.ok(hasCapability(linuxAgent, Capability.CLIPBOARD_GRAB_SERIAL));
 * assert.ok(!hasCapability(linuxAgent, Capability.GUEST_LINEEND_CRLF));
 * assert.ok(!hasCapability(linuxAgent, 40));
 * ```
 */
export function hasCapability(caps: ArrayLike<number>, bit: number): boolean {
  const word = bit >>> 5;
  return word < caps.length && (caps[word]! & (1 << (bit & 31))) !== 0;
}
