// This module is browser compatible.

/** Normalises a stream write that may be one item or a batch. */
export function batchOf<T>(input: T | readonly T[]): readonly T[] {
  return Array.isArray(input) ? input as readonly T[] : [input as T];
}
