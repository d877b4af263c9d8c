// This module is browser compatible.

let table: Uint32Array | undefined;

/** CRC-32 (IEEE 802.3: reflected polynomial 0xEDB88320, as zlib and PNG use). */
export function crc32(bytes: Uint8Array): number {
  table ??= makeTable();
  let crc = 0xffff_ffff;
  for (let i = 0; i < bytes.length; i++) crc = table[(crc ^ bytes[i]!) & 0xff]! ^ (crc >>> 8);
  return (crc ^ 0xffff_ffff) >>> 0;
}

function makeTable(): Uint32Array {
  const t = new Uint32Array(256);
  for (let n = 0; n < 256; n++) {
    let c = n;
    for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb8_8320 ^ (c >>> 1) : c >>> 1;
    t[n] = c >>> 0;
  }
  return t;
}
