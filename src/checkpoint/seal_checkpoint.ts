// This module is browser compatible.

import { putU32 } from "../wire/_bytes.ts";
import { crc32 } from "./_crc32.ts";
import { CRC_SIZE, FLAG_MAC, MAC_SIZE } from "./_format.ts";
import { hmacKey } from "./_hmac.ts";
import type { CheckpointKey } from "./checkpoint_key.ts";
import { decodeCheckpoint } from "./decode_checkpoint.ts";

/**
 * Authenticates a checkpoint with `key`: returns it with an HMAC-SHA-256 of
 * everything before it (header, flags and sections) ahead of its CRC-32, and
 * the `MAC` flag set. {@linkcode openCheckpoint} with the same key gives its
 * state back; any other key, any change, or a checkpoint without a MAC is
 * refused. A checkpoint sealed already is sealed again.
 *
 * The CRC-32 catches accidents; the MAC stops whoever can write the store but
 * does not hold the key from making a relay restore a state of their choosing
 * (see SECURITY.md).
 *
 * @param checkpoint An encoded checkpoint.
 * @param key The key, shared by every relay that hands this session on.
 * @returns The sealed checkpoint.
 *
 * @example Sealing a hand-off, opening it in the next relay
 * ```ts
 * import { CheckpointError, encodeCheckpoint, openCheckpoint, sealCheckpoint } from "@vdagent/streams";
 * import assert from "node:assert/strict";
 *
 * const key = crypto.getRandomValues(new Uint8Array(32));
 * const empty = { lastSerial: 0, guestRequests: [] };
 * const bytes = encodeCheckpoint({ mode: "minimal", hostCaps: [0x00020061], selections: [empty, empty, empty] });
 * const sealed = await sealCheckpoint(bytes, key);
 * assert.deepEqual((await openCheckpoint(sealed, key)).hostCaps, [0x00020061]);
 * await assert.rejects(openCheckpoint(bytes, key), (e) => e instanceof CheckpointError && e.code === "UNAUTHENTICATED");
 * const other = crypto.getRandomValues(new Uint8Array(32));
 * await assert.rejects(openCheckpoint(sealed, other), (e) => e instanceof CheckpointError && e.code === "BAD_MAC");
 * ```
 */
export async function sealCheckpoint(
  checkpoint: Uint8Array,
  key: CheckpointKey,
): Promise<Uint8Array> {
  const hmac = await hmacKey(key);
  decodeCheckpoint(checkpoint); // well-formed, and no larger than a checkpoint may be
  const sealed = (checkpoint[6]! & FLAG_MAC) !== 0;
  const body = checkpoint.length - CRC_SIZE - (sealed ? MAC_SIZE : 0);
  const out = new Uint8Array(body + MAC_SIZE + CRC_SIZE);
  out.set(checkpoint.subarray(0, body));
  out[6] = out[6]! | FLAG_MAC;
  putU32(out, 7, out.length);
  const mac = new Uint8Array(
    await crypto.subtle.sign("HMAC", hmac, out.subarray(0, body) as Uint8Array<ArrayBuffer>),
  );
  out.set(mac, body);
  putU32(out, body + MAC_SIZE, crc32(out.subarray(0, body + MAC_SIZE)));
  return out;
}
