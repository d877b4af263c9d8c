// This module is browser compatible.

import type { ChunkReader } from "./_chunk_reader.ts";
import type { MessageReader } from "./_message_reader.ts";
import { WireFormat } from "./wire_format.ts";

/**
 * Bytes that, pushed into a fresh `ChunkReader` → `MessageReader`, rebuild
 * the state of `chunks` → `messages`: the messages in progress on each port,
 * the chunk in progress, and a partial chunk header. Together with the bytes
 * the peer sends next they form a stream that reassembles exactly as the
 * original one would have.
 *
 * Each port's partial message becomes one chunk holding what arrived of it.
 * When a chunk is in progress, the part of it already read is held back and
 * put last, behind a header declaring that part plus the rest of the chunk,
 * still to come from the peer, which continues it. (A skipped message comes
 * back shortened, see `MessageReader.partial`, so less of it may be held.)
 */
export function inboundBytes(chunks: ChunkReader, messages: MessageReader): Uint8Array {
  const parts: Uint8Array[] = [];
  const current = messages.currentChunk();
  const inChunk = chunks.remaining > 0;
  let tail: Uint8Array = new Uint8Array(0);
  for (const port of [WireFormat.CLIENT_PORT, WireFormat.SERVER_PORT]) {
    const partial = messages.partial(port);
    const held = inChunk && port === current.port ? Math.min(current.consumed, partial.length) : 0;
    const prefix = partial.subarray(0, partial.length - held);
    if (held > 0) tail = partial.subarray(partial.length - held);
    if (prefix.length > 0) parts.push(chunkHeader(port, prefix.length), prefix);
  }
  if (inChunk) parts.push(chunkHeader(current.port, tail.length + chunks.remaining), tail);
  parts.push(chunks.partialHeader());
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let at = 0;
  for (const part of parts) {
    out.set(part, at);
    at += part.length;
  }
  return out;
}

function chunkHeader(port: number, size: number): Uint8Array {
  const header = new Uint8Array(WireFormat.CHUNK_HEADER_SIZE);
  const view = new DataView(header.buffer);
  view.setUint32(0, port, true);
  view.setUint32(4, size, true);
  return header;
}
