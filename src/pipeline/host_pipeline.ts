// This module is browser compatible.

import { sessionInternals } from "../session/_internals.ts";
import { HostSession, type HostSessionOptions } from "../session/host_session.ts";
import { PipelineRunner } from "./_runner.ts";
import type { PipelineOptions } from "./pipeline_options.ts";
import type { Transport } from "./transport.ts";

/** Options of {@linkcode createHostPipeline}: the session's and the pipeline's. */
export interface HostPipelineOptions extends HostSessionOptions, PipelineOptions {}

/** A running host pipeline. */
export interface HostPipeline {
  /** The session: grab, release, request, mouse. */
  session: HostSession;
  /**
   * Settles when the pipeline ends: resolves when the peer closed its side
   * and everything queued was written, rejects with the error that stopped it
   * (a `VdagentProtocolError`, a transport error, or the abort reason).
   */
  done: Promise<void>;
  /** Ends the session, writes what is queued, closes the transport's writable side, and reads until the peer closes its side. */
  close(): Promise<void>;
}

/**
 * Runs a {@linkcode HostSession} over a byte transport: the relay in one call.
 *
 * It composes what `ChunkDeframer → MessageAssembler → HostSession →
 * MessageFramer` do, fused: the cores run synchronously inside one read loop,
 * each byte of a message split across reads is copied once, and what the
 * session sends leaves in batches, in writes of at most 64 KiB. Reading pauses
 * while more than 1 MiB waits to be written, so a stalled peer holds the
 * pipeline back. An `AbortSignal` tears everything down; failures surface
 * through `done` only.
 *
 * @param transport Bytes to and from the agent's port.
 * @param options Session features and handlers, limits, signal and progress.
 * @returns The session and the pipeline's lifetime.
 *
 * @example A relay to a guest agent, here an in-process guest over a pipe
 * ```ts
 * import { ClipboardType, createGuestPipeline, createHostPipeline, Selection } from "@vdagent/streams";
 * import assert from "node:assert/strict";
 *
 * const toGuest = new TransformStream<Uint8Array, Uint8Array>();
 * const toHost = new TransformStream<Uint8Array, Uint8Array>();
 * const offered = Promise.withResolvers<void>();
 * const relay = createHostPipeline(
 *   { readable: toHost.readable, writable: toGuest.writable },
 *   { clipboard: { onGuestGrab: () => offered.resolve() } },
 * );
 * const guest = createGuestPipeline(
 *   { readable: toGuest.readable, writable: toHost.writable },
 *   { clipboard: { provide: () => new TextEncoder().encode("copied in the guest") } },
 * );
 * guest.session.grab(Selection.CLIPBOARD, [ClipboardType.UTF8_TEXT]); // sent once caps arrive
 * await offered.promise;
 * const data = await relay.session.request(Selection.CLIPBOARD, ClipboardType.UTF8_TEXT);
 * assert.equal(new TextDecoder().decode(data), "copied in the guest");
 * await relay.close();
 * await guest.done;
 * ```
 */
export function createHostPipeline(
  transport: Transport,
  options: HostPipelineOptions = {},
): HostPipeline {
  const session = new HostSession(options);
  const runner = new PipelineRunner(sessionInternals.get(session)!, transport, options);
  return { session, done: runner.done, close: () => runner.close() };
}
