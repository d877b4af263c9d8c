// This module is browser compatible.

import { getU32 } from "../wire/_bytes.ts";
import { CRC_SIZE, FLAG_MAC, HEADER_SIZE, MAC_SIZE } from "./_format.ts";
import { hmacKey } from "./_hmac.ts";
import { CheckpointError } from "./checkpoint_error.ts";
import type { CheckpointKey } from "./checkpoint_key.ts";
import type { CheckpointLimits } from "./checkpoint_limits.ts";
import type { CheckpointState } from "./checkpoint_state.ts";
import { decodeCheckpoint } from "./decode_checkpoint.ts";

/**
 * Verifies a checkpoint sealed by {@linkcode sealCheckpoint} and decodes it:
 * what `createHostPipeline` takes as `restore` from a store that others can
 * write. Refuses, with a {@linkcode CheckpointError}, a checkpoint without a
 * MAC (`UNAUTHENTICATED`), one sealed with another key or changed since
 * (`BAD_MAC`), and everything `decodeCheckpoint` refuses.
 *
 * @param checkpoint A sealed checkpoint.
 * @param key The key it was sealed with.
 * @param limits Limits for decoding; pass the restoring pipeline's.
 * @returns The state it holds.
 *
 * @example Restoring from a store only through the key
 * ```ts
 * import { createHostPipeline, encodeCheckpoint, openCheckpoint, sealCheckpoint } from "@vdagent/streams";
 * import assert from "node:assert/strict";
 *
 * const key = crypto.getRandomValues(new Uint8Array(32));
 * const empty = { lastSerial: 4, guestRequests: [] };
 * const stored = await sealCheckpoint(
 *   encodeCheckpoint({ mode: "minimal", hostCaps: [0x00020061], guestCaps: [0x00038de7], selections: [empty, empty, empty] }),
 *   key,
 * );
 * const toGuest = new TransformStream<Uint8Array, Uint8Array>();
 * const transport = { readable: new ReadableStream<Uint8Array>(), writable: toGuest.writable };
 * const relay = createHostPipeline(transport, { restore: await openCheckpoint(stored, key), resume: "continued" });
 * assert.deepEqual(relay.session.guestCaps, [0x00038de7]);
 * ```
 */
export async function openCheckpoint(
  checkpoint: Uint8Array,
  key: CheckpointKey,
  limits?: CheckpointLimits,
): Promise<CheckpointState> {
  const hmac = await hmacKey(key);
  if (!(checkpoint instanceof Uint8Array)) {
    throw new TypeError("Cannot open checkpoint: it must be a Uint8Array");
  }
  const state = decodeCheckpoint(checkpoint, limits); // the CRC and the layout first
  if ((checkpoint[6]! & FLAG_MAC) === 0) {
    throw new CheckpointError(
      "UNAUTHENTICATED",
      "Cannot open checkpoint: it carries no MAC, and a key is required",
    );
  }
  const body = getU32(checkpoint, 7) - CRC_SIZE - MAC_SIZE;
  const ok = body >= HEADER_SIZE && await crypto.subtle.verify(
    "HMAC",
    hmac,
    checkpoint.subarray(body, body + MAC_SIZE) as Uint8Array<ArrayBuffer>,
    checkpoint.subarray(0, body) as Uint8Array<ArrayBuffer>,
  );
  if (!ok) {
    throw new CheckpointError(
      "BAD_MAC",
      "Cannot open checkpoint: its MAC does not match the key (changed, or sealed with another key)",
    );
  }
  return state;
}
