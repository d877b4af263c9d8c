// This module is browser compatible.

/** The serial after `s`, wrapping at 2^32. */
export function nextSerial(s: number): number {
  return (s + 1) >>> 0;
}

/**
 * Whether serial `a` comes before `b`, with wrap-around: the serials are
 * compared by their distance on the 2^32 circle, so 0 comes after 0xFFFFFFFF.
 */
export function serialBefore(a: number, b: number): boolean {
  return ((a - b) | 0) < 0;
}
