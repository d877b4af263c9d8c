// A real PNG for the clipboard scenarios: RGB noise from a seeded PRNG, so it barely compresses
// and spans many chunks.
import { concat, prng } from "../_helpers.ts";

const CRC_TABLE = (() => {
  const table = new Uint32Array(256);
  for (let n = 0; n < 256; n++) {
    let c = n;
    for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
    table[n] = c >>> 0;
  }
  return table;
})();

function crc32(bytes: Uint8Array): number {
  let c = 0xffffffff;
  for (const b of bytes) c = CRC_TABLE[(c ^ b) & 0xff]! ^ (c >>> 8);
  return (c ^ 0xffffffff) >>> 0;
}

function pngChunk(type: string, data: Uint8Array): Uint8Array {
  const out = new Uint8Array(12 + data.length);
  const view = new DataView(out.buffer);
  view.setUint32(0, data.length);
  out.set(new TextEncoder().encode(type), 4);
  out.set(data, 8);
  view.setUint32(8 + data.length, crc32(out.subarray(4, 8 + data.length)));
  return out;
}

/** A `width`×`height` 8-bit RGB PNG of noise. */
export async function makePng(width: number, height: number, seed: number): Promise<Uint8Array> {
  const rand = prng(seed);
  const raw = new Uint8Array(height * (1 + 3 * width)); // each row: filter byte 0, then pixels
  for (let y = 0; y < height; y++) {
    for (let x = 1; x <= 3 * width; x++) raw[y * (1 + 3 * width) + x] = (rand() * 256) | 0;
  }
  const zlib = new Uint8Array(
    await new Response(new Blob([raw]).stream().pipeThrough(new CompressionStream("deflate")))
      .arrayBuffer(),
  );
  const header = new Uint8Array(13);
  const view = new DataView(header.buffer);
  view.setUint32(0, width);
  view.setUint32(4, height);
  header.set([8, 2, 0, 0, 0], 8); // depth 8, RGB, deflate, no filter method, no interlace
  return concat(
    new Uint8Array([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]),
    pngChunk("IHDR", header),
    pngChunk("IDAT", zlib),
    pngChunk("IEND", new Uint8Array(0)),
  );
}
