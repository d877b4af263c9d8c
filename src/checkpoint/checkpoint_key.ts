// This module is browser compatible.

/**
 * A key for {@linkcode sealCheckpoint} and {@linkcode openCheckpoint}: an
 * HMAC-SHA-256 `CryptoKey` that can sign and verify, or at least 32 random
 * bytes.
 */
export type CheckpointKey = CryptoKey | Uint8Array;
