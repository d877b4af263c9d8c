// This module is browser compatible.

/**
 * Packs capability bit numbers into the u32 words of ANNOUNCE_CAPABILITIES
 * (bit `n` in word `n / 32`). Always returns at least one word.
 *
 * @param bits Capability bit numbers, see `Capability`.
 * @returns The words, as unsigned numbers.
 *
 * @example
 * ```ts
 * import { Capability, capabilityWords } from "@vdagent/streams";
 * import assert from "node:assert/strict";
 *
 * assert.deepEqual(capabilityWords([Capability.MOUSE_STATE, 40]), [1, 1 << 8]);
 * ```
 */
export function capabilityWords(bits: Iterable<number>): number[] {
  const words = [0];
  for (const bit of bits) {
    if (!Number.isInteger(bit) || bit < 0 || bit >= 32 * 1024) {
      throw new RangeError(
        `Cannot set capability: bit must be an integer from 0 to 32767, got ${bit}`,
      );
    }
    const word = bit >>> 5;
    while (words.length <= word) words.push(0);
    words[word] = (words[word]! | (1 << (bit & 31))) >>> 0;
  }
  return words;
}
