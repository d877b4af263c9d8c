// This module is browser compatible.

/** Default largest message payload: 64 MiB. */
export const DEFAULT_MAX_MESSAGE_SIZE = 64 * 1024 * 1024;

/** Checks an optional positive integer limit; returns the default when absent. */
export function checkLimit(
  what: string,
  name: string,
  value: number | undefined,
  fallback: number,
  max = Number.MAX_SAFE_INTEGER,
): number {
  if (value === undefined) return fallback;
  if (!Number.isInteger(value) || value < 1 || value > max) {
    throw new RangeError(
      `Cannot create ${what}: ${name} must be an integer from 1 to ${max}, got ${value}`,
    );
  }
  return value;
}
