// This module is browser compatible.

import { WireFormat } from "./wire_format.ts";

const MAX_U32 = 0xffff_ffff;

/** Checks a `maxChunkSize` option of a framer. */
export function checkFramerChunkSize(maxChunkSize: number): number {
  if (
    !Number.isInteger(maxChunkSize) || maxChunkSize < WireFormat.MESSAGE_HEADER_SIZE ||
    maxChunkSize > WireFormat.MAX_CHUNK_SIZE
  ) {
    throw new RangeError(
      `Cannot create framer: maxChunkSize must be an integer from 20 to 2048, got ${maxChunkSize}`,
    );
  }
  return maxChunkSize;
}

/** Checks one outbound message's fields; throws `TypeError`/`RangeError`. */
export function checkOutbound(port: number, type: number, opaque: bigint, data: Uint8Array): void {
  if (port !== WireFormat.CLIENT_PORT && port !== WireFormat.SERVER_PORT) {
    throw new RangeError(`Cannot frame message: port must be 1 or 2, got ${port}`);
  }
  if (!Number.isInteger(type) || type < 0 || type > MAX_U32) {
    throw new RangeError(`Cannot frame message: type must be a u32, got ${type}`);
  }
  if (typeof opaque !== "bigint") {
    throw new TypeError("Cannot frame message: opaque must be a bigint");
  }
  if (opaque < 0n || opaque > 0xffff_ffff_ffff_ffffn) {
    throw new RangeError(`Cannot frame message: opaque must be a u64, got ${opaque}`);
  }
  if (!(data instanceof Uint8Array)) {
    throw new TypeError("Cannot frame message: data must be a Uint8Array");
  }
  if (data.length > MAX_U32) {
    throw new RangeError(`Cannot frame message: ${data.length} payload bytes exceed a u32 size`);
  }
}

/** Bytes a message of `dataLength` payload bytes takes on the wire. */
export function framedSize(dataLength: number, maxChunkSize: number): number {
  const total = WireFormat.MESSAGE_HEADER_SIZE + dataLength;
  return total + WireFormat.CHUNK_HEADER_SIZE * Math.ceil(total / maxChunkSize);
}

/**
 * Where the message holding byte `at` starts in framed messages written by
 * {@linkcode writeFrames} from `bytes[0]`.
 */
export function messageStart(bytes: Uint8Array, at: number): number {
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.length);
  const H = WireFormat.CHUNK_HEADER_SIZE;
  for (let start = 0;;) {
    const total = WireFormat.MESSAGE_HEADER_SIZE + view.getUint32(start + H + 16, true);
    let end = start;
    for (let carried = 0; carried < total;) {
      const size = view.getUint32(end + 4, true);
      carried += size;
      end += H + size;
    }
    if (end > at) return start;
    start = end;
  }
}

/**
 * Writes one message as chunks of at most `maxChunkSize` (≥ 20) bytes at
 * `target[pos]`, where `view` covers `target.buffer`. Returns the position
 * after it. A chunk never carries bytes of two messages.
 */
export function writeFrames(
  target: Uint8Array,
  view: DataView,
  pos: number,
  maxChunkSize: number,
  port: number,
  type: number,
  opaque: bigint,
  data: Uint8Array,
): number {
  const length = data.length;
  let p = target.byteOffset + pos;
  let chunk = Math.min(maxChunkSize, WireFormat.MESSAGE_HEADER_SIZE + length);
  view.setUint32(p, port, true);
  view.setUint32(p + 4, chunk, true);
  view.setUint32(p + 8, WireFormat.PROTOCOL, true);
  view.setUint32(p + 12, type, true);
  if (opaque === 0n) {
    view.setUint32(p + 16, 0, true);
    view.setUint32(p + 20, 0, true);
  } else {
    view.setBigUint64(p + 16, opaque, true);
  }
  view.setUint32(p + 24, length, true);
  pos += WireFormat.CHUNK_HEADER_SIZE + WireFormat.MESSAGE_HEADER_SIZE;
  let done = chunk - WireFormat.MESSAGE_HEADER_SIZE;
  if (done > 0) target.set(done === length ? data : data.subarray(0, done), pos);
  pos += done;
  while (done < length) {
    chunk = Math.min(maxChunkSize, length - done);
    p = target.byteOffset + pos;
    view.setUint32(p, port, true);
    view.setUint32(p + 4, chunk, true);
    target.set(data.subarray(done, done + chunk), pos + WireFormat.CHUNK_HEADER_SIZE);
    pos += WireFormat.CHUNK_HEADER_SIZE + chunk;
    done += chunk;
  }
  return pos;
}
