// This module is browser compatible.

import { getU32 } from "./_bytes.ts";
import { WireFormat } from "./wire_format.ts";

/** A chunk header and a message header: what a plausible start is judged on. */
export const START_SIZE = WireFormat.CHUNK_HEADER_SIZE + WireFormat.MESSAGE_HEADER_SIZE;

/** Message types 1 (MOUSE_STATE) to 16 (GRAPHICS_DEVICE_INFO). */
const LAST_TYPE = 16;

/**
 * Where the first plausible message start lies in `bytes[from, end)`: a chunk
 * header for port 1 or 2 whose size holds at least a message header and at
 * most the whole message, then a message header of protocol 1, a known type
 * and a size of at most `maxMessageSize`. Every agent sends a message's
 * header whole in its first chunk, so a stream that a transport cut inside a
 * message goes on at the first such place.
 *
 * @returns The offset of the start, or `-1` if none starts at or before
 * `end - START_SIZE` (the bytes from there on may still begin one).
 */
export function findMessageStart(
  bytes: Uint8Array,
  from: number,
  end: number,
  maxChunkSize: number,
  maxMessageSize: number,
): number {
  for (let at = from; at + START_SIZE <= end; at++) {
    const port = bytes[at]!;
    if (
      (port !== WireFormat.CLIENT_PORT && port !== WireFormat.SERVER_PORT) ||
      bytes[at + 1] !== 0 || bytes[at + 2] !== 0 || bytes[at + 3] !== 0
    ) continue;
    const chunk = getU32(bytes, at + 4);
    if (chunk < WireFormat.MESSAGE_HEADER_SIZE || chunk > maxChunkSize) continue;
    const m = at + WireFormat.CHUNK_HEADER_SIZE;
    if (getU32(bytes, m) !== WireFormat.PROTOCOL) continue;
    const type = getU32(bytes, m + 4);
    if (type < 1 || type > LAST_TYPE) continue;
    const size = getU32(bytes, m + 16);
    if (size > maxMessageSize || chunk - WireFormat.MESSAGE_HEADER_SIZE > size) continue;
    return at;
  }
  return -1;
}
