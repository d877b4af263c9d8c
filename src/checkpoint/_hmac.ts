// This module is browser compatible.

import type { CheckpointKey } from "./checkpoint_key.ts";

const keys = new WeakMap<Uint8Array, Promise<CryptoKey>>();

/** The HMAC-SHA-256 key of a checkpoint key; raw bytes are imported once. */
export function hmacKey(key: CheckpointKey): Promise<CryptoKey> {
  if (!(key instanceof Uint8Array)) {
    if (typeof CryptoKey !== "undefined" && key instanceof CryptoKey) {
      return Promise.resolve(key);
    }
    throw new TypeError("Cannot use checkpoint key: it must be a CryptoKey or a Uint8Array");
  }
  if (key.length < 32) {
    throw new RangeError(
      `Cannot use checkpoint key: it needs at least 32 bytes, got ${key.length}`,
    );
  }
  let imported = keys.get(key);
  if (imported === undefined) {
    imported = crypto.subtle.importKey(
      "raw",
      key as Uint8Array<ArrayBuffer>,
      { name: "HMAC", hash: "SHA-256" },
      false,
      ["sign", "verify"],
    );
    keys.set(key, imported);
  }
  return imported;
}
