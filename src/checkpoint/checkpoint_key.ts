// This module is browser compatible.

/**
 * A key for {@linkcode sealCheckpoint} and {@linkcode openCheckpoint}: an
 * HMAC-SHA-256 `CryptoKey` that can sign and verify, or at least 32 random
 * bytes.
 */
export type CheckpointKey =
  // A `CryptoKey`, by the properties it has: the type needs no DOM library (Node's has none).
  | { readonly type: string; readonly algorithm: object; readonly usages: readonly string[] }
  | Uint8Array;
