// This module is browser compatible.

import { guestCoreOf } from "../session/_session_cores.ts";
import { GuestSession, type GuestSessionOptions } from "../session/guest_session.ts";
import { PipelineRunner } from "./_runner.ts";
import type { PipelineOptions } from "./pipeline_options.ts";
import type { Transport } from "./transport.ts";

/** Options of {@linkcode createGuestPipeline}. */
export interface GuestPipelineOptions extends GuestSessionOptions, PipelineOptions {}

/** A running guest pipeline. */
export interface GuestPipeline {
  /** The session: grab, release, request. */
  session: GuestSession;
  /** Settles when the pipeline ends, as `HostPipeline.done`. */
  done: Promise<void>;
  /** Ends the session, writes what is queued, closes the transport's writable side, and reads until the peer closes its side. */
  close(): Promise<void>;
}

/**
 * Runs a {@linkcode GuestSession} over a byte transport: an in-process guest
 * agent for tests and demos, or the start of a guest agent in TypeScript.
 * It works as `createHostPipeline` does.
 *
 * @param transport Bytes to and from the host.
 * @param options Session capabilities and handlers, limits, signal and progress.
 * @returns The session and the pipeline's lifetime.
 *
 * @example The host moves the guest's pointer
 * ```ts
 * import { createGuestPipeline, createHostPipeline } from "@vdagent/streams";
 * import assert from "node:assert/strict";
 *
 * const a = new TransformStream<Uint8Array, Uint8Array>();
 * const b = new TransformStream<Uint8Array, Uint8Array>();
 * const moved = Promise.withResolvers<{ x: number; y: number; buttons: number }>();
 * const guest = createGuestPipeline({ readable: a.readable, writable: b.writable }, {
 *   onMouse: (state) => moved.resolve(state),
 * });
 * const host = createHostPipeline({ readable: b.readable, writable: a.writable });
 * host.session.mouse({ x: 100, y: 200, buttons: ["left"] }); // sent once the guest has MOUSE_STATE
 * assert.deepEqual(await moved.promise, { x: 100, y: 200, buttons: 2, display: 0 });
 * await host.close();
 * await guest.done;
 * ```
 */
export function createGuestPipeline(
  transport: Transport,
  options: GuestPipelineOptions = {},
): GuestPipeline {
  const session = new GuestSession(options);
  const runner = new PipelineRunner(guestCoreOf(session), transport, options);
  return { session, done: runner.done, close: () => runner.close() };
}
