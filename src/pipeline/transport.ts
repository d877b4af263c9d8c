// This module is browser compatible.

/**
 * A byte transport to the agent's port: a Deno `Conn`, Node's
 * `Duplex.toWeb(socket)`, a `WebSocketStream` adapter, or any pair of streams.
 */
export interface Transport {
  /** Bytes from the peer. */
  readable: ReadableStream<Uint8Array>;
  /** Bytes to the peer. */
  writable: WritableStream<Uint8Array>;
}
