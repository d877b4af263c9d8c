// This module is browser compatible.

/**
 * A byte transport to the agent's port: a Deno `Conn`, Node's
 * `Duplex.toWeb(socket)`, a `WebSocketStream` adapter, or any pair of streams.
 *
 * Only the part of each stream that the pipeline uses is required, so that the
 * streams of any platform's typings fit: Node's `stream/web` classes, typed by
 * `@types/node`, are not the DOM library's `ReadableStream` and
 * `WritableStream`, and a project may load both.
 *
 * @example A pair of web streams is a transport
 * ```ts
 * import type { Transport } from "@vdagent/streams";
 * const toPeer = new TransformStream<Uint8Array, Uint8Array>();
 * const fromPeer = new TransformStream<Uint8Array, Uint8Array>();
 * const transport: Transport = { readable: fromPeer.readable, writable: toPeer.writable };
 * ```
 */
export interface Transport {
  /** Bytes from the peer; the pipeline takes its reader. */
  readable: { getReader(): ReadableStreamDefaultReader<Uint8Array> };
  /** Bytes to the peer; the pipeline takes its writer. */
  writable: { getWriter(): WritableStreamDefaultWriter<Uint8Array> };
}
