// This module is browser compatible.

/** Bytes per slab. */
const SLAB_SIZE = 8192;
/** Payloads up to this size come from the slab; larger ones get their own buffer. */
const SLAB_MAX = 128;

let slab = new Uint8Array(0);
let used = 0;

/**
 * A zeroed `Uint8Array` of `size` bytes for an encoded payload.
 *
 * Why a slab: Deno allocates every `ArrayBuffer` through the embedder, so a
 * `new Uint8Array(8)` costs about 500–750 ns there, against 80–180 ns for a
 * view of a shared buffer (Node keeps small arrays on the V8 heap at 35–75 ns,
 * and the view costs it 40 ns more). A host answers each guest grab with an
 * 8-byte CLIPBOARD_REQUEST payload: in the full-pipeline benchmark (case F on
 * the small-rt input) `encodeMessage` was 22 % of the profile before this.
 * The cost: payloads of up to 128 bytes are views into an 8 KiB buffer they
 * share, so `data.buffer` holds other messages too (always index it with
 * `data.byteOffset`), and a retained small payload keeps its 8 KiB alive.
 */
export function allocate(size: number): Uint8Array {
  if (size > SLAB_MAX) return new Uint8Array(size);
  if (used + size > slab.length) {
    slab = new Uint8Array(SLAB_SIZE);
    used = 0;
  }
  const out = slab.subarray(used, used + size);
  used += size;
  return out;
}
