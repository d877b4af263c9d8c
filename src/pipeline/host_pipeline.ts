// This module is browser compatible.

import type { CheckpointLimits } from "../checkpoint/checkpoint_limits.ts";
import type { CheckpointMode, CheckpointState } from "../checkpoint/checkpoint_state.ts";
import { decodeCheckpoint } from "../checkpoint/decode_checkpoint.ts";
import { encodeCheckpoint } from "../checkpoint/encode_checkpoint.ts";
import { CheckpointError } from "../checkpoint/checkpoint_error.ts";
import type { CheckpointKey } from "../checkpoint/checkpoint_key.ts";
import { FLAG_MAC } from "../checkpoint/_format.ts";
import { sealCheckpoint } from "../checkpoint/seal_checkpoint.ts";
import { closeCheckpoints, emitCheckpoint } from "../checkpoint/_emitters.ts";
import { StateCheckpoint, type StateCheckpointOptions } from "../checkpoint/state_checkpoint.ts";
import { hostCoreOf } from "../session/_session_cores.ts";
import { ClipboardError } from "../session/clipboard_error.ts";
import { HostSession, type HostSessionOptions } from "../session/host_session.ts";
import { PipelineRunner } from "./_runner.ts";
import type { PipelineOptions } from "./pipeline_options.ts";
import type { Transport } from "./transport.ts";

/** Options of {@linkcode createHostPipeline}: the session's and the pipeline's. */
export interface HostPipelineOptions extends HostSessionOptions, PipelineOptions {
  /**
   * A checkpoint from another relay to continue from, before any traffic
   * flows; see `resume`. A bad checkpoint throws a `CheckpointError`.
   */
  restore?: Uint8Array | CheckpointState;
  /**
   * How the transport relates to the one the checkpoint was taken on.
   *
   * `"reconnected"` (default): a new connection, which the guest saw as its
   * port closing and reopening: QEMU's socket chardev closes the guest's port
   * when its client goes, and after a live migration unless a client was
   * connected to the destination when the guest resumed. The bytes in flight
   * are dropped and the new stream is read from its first message start (it
   * may begin with the rest of one). From a drained checkpoint (see
   * `HostPipeline.checkpoint`'s `drain`) the session keeps the serials and the
   * guest's offers, sends a probe and nothing else until the guest answers it
   * (the guest drops what a new client writes while it is still closing its
   * port), then the host's grabs, with the serial the guest expects, the
   * guest's pending pastes, the host's requests again and the mouse; it does
   * not announce itself, which would make the guest release what its user
   * copied meanwhile. From a checkpoint that is not drained a guest grab may
   * have been lost with the old connection, so the session announces itself
   * with request=1 (serials back to 0 on both sides) and grabs again once the
   * guest answers.
   *
   * `"continued"`: the same byte streams go on (a connection handed to this
   * relay, a proxy that kept the guest's port open, or a connection made to a
   * migration's destination before the guest resumed there): the session does
   * not announce itself, the bytes in flight are fed and written first, and
   * the guest's pending pastes go to this relay's provider; from a drained
   * checkpoint the host's grabs, requests and mouse go again too (what the old
   * relay wrote last may be lost with a VM that stopped).
   *
   * Reconnected is the default because it is the safe guess: taken wrongly, a
   * continued resume leaves the host's grabs unsent and reads a stream cut
   * inside a message as garbage.
   */
  resume?: "continued" | "reconnected";
  /** Limits for decoding `restore`. */
  checkpointLimits?: CheckpointLimits;
  /** The checkpoint stage, or its options; see {@linkcode StateCheckpoint}. */
  checkpoints?: StateCheckpoint | StateCheckpointOptions;
}

/** Options of {@linkcode HostPipeline.checkpoint}. */
export interface CheckpointOptions {
  /** Overrides the stage's mode for this checkpoint. */
  mode?: CheckpointMode;
  /**
   * The transport ends with this hand-off (the next relay makes a new
   * connection): stop sending, write what is queued, close the writable side
   * (through the transport's `closeWrite` when it has one, as a Deno `Conn`
   * does), and read what the guest already sent until the peer closes its
   * side, or sends nothing for 200 ms: QEMU's socket chardev closes its side
   * when it reads the end of ours, and on a source VM stopped at the end of
   * its migration it sends nothing more; what it could not write yet stays
   * in the guest's queue for the next client. So nothing the guest wrote is
   * lost, and the checkpoint says so (`drained`): the next relay then knows
   * the guest's serials and need not announce itself. A drain that runs out
   * of time (`drainTimeout`) while bytes still arrive is not `drained`.
   * Default `false`: reading stops at once and the transport, with what it
   * holds, is left to the next relay.
   */
  drain?: boolean;
  /** Most milliseconds a `drain` takes. Default 2000. */
  drainTimeout?: number;
  /**
   * Seal the checkpoint with this key (HMAC-SHA-256, see `sealCheckpoint`):
   * the next relay opens it with `openCheckpoint` and the same key. Default:
   * the stage's key, if any.
   */
  key?: CheckpointKey;
}

/** A running host pipeline. */
export interface HostPipeline {
  /** The session: grab, release, request, mouse. */
  session: HostSession;
  /**
   * Settles when the pipeline ends: resolves when the peer closed its side
   * and everything queued was written, or after a `checkpoint()`; rejects
   * with the error that stopped it (a `VdagentProtocolError`, a transport
   * error, or the abort reason).
   */
  done: Promise<void>;
  /** Ends the session, writes what is queued, closes the transport's writable side, and reads until the peer closes its side. */
  close(): Promise<void>;
  /**
   * Takes a checkpoint at a migration boundary: stops consuming the guest's
   * bytes (what it has not read stays in the transport), lets complete
   * messages finish dispatching, and returns the state. In lossless mode the
   * bytes in flight go into the checkpoint; in minimal mode what is queued is
   * written first and a partial message from the guest is dropped. After it
   * resolves this pipeline sends nothing more (no release, no caps), has
   * released the transport's reader and writer, and `done` resolves. The
   * checkpoint is also emitted on `checkpoints.readable`.
   */
  checkpoint(options?: CheckpointOptions): Promise<Uint8Array>;
  /** The checkpoint stage. */
  checkpoints: StateCheckpoint;
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
 * through `done` only. With `restore` it continues a session handed off by
 * another relay, and `checkpoint()` hands this one off.
 *
 * @param transport Bytes to and from the agent's port.
 * @param options Session features and handlers, limits, signal, progress, checkpoints.
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
 *
 * @example Handing a live session to a new relay
 * ```ts
 * import { createGuestPipeline, createHostPipeline } from "@vdagent/streams";
 * import assert from "node:assert/strict";
 *
 * const toGuest = new TransformStream<Uint8Array, Uint8Array>();
 * const toHost = new TransformStream<Uint8Array, Uint8Array>();
 * const transport = { readable: toHost.readable, writable: toGuest.writable };
 * let newClients = 0; // a host's caps with request=1 make the guest reset
 * const guest = createGuestPipeline({ readable: toGuest.readable, writable: toHost.writable }, {
 *   onHostCaps: (_caps, request) => void (request && newClients++),
 * });
 * const a = createHostPipeline(transport);
 * while (a.session.guestCaps === undefined) await new Promise((r) => setTimeout(r, 1));
 * const state = await a.checkpoint(); // A lets go of the transport
 * // B takes it over on the same streams, silently.
 * const b = createHostPipeline(transport, { restore: state, resume: "continued" });
 * assert.deepEqual(b.session.guestCaps, [0x00038de7]);
 * b.session.mouse({ x: 5, y: 5 });
 * await b.close();
 * await guest.done;
 * assert.equal(newClients, 1, "the guest saw one client");
 * ```
 */
export function createHostPipeline(
  transport: Transport,
  options: HostPipelineOptions = {},
): HostPipeline {
  const resume = options.resume ?? "reconnected";
  if (resume !== "continued" && resume !== "reconnected") {
    throw new TypeError(
      `Cannot create pipeline: resume must be "continued" or "reconnected", got ${resume}`,
    );
  }
  if (options.restore instanceof Uint8Array && (options.restore[6]! & FLAG_MAC) !== 0) {
    throw new CheckpointError(
      "UNAUTHENTICATED",
      "Cannot restore the checkpoint: it is sealed; restore what openCheckpoint(bytes, key) returns",
    );
  }
  // Checked under this pipeline's own limits, a decoded state too: what it carries in flight
  // must be what this session could have sent and could take in.
  const restored = options.restore === undefined ? undefined : decodeCheckpoint(
    options.restore instanceof Uint8Array ? options.restore : encodeCheckpoint(options.restore),
    {
      ...(options.maxMessageSize === undefined ? {} : { maxMessageSize: options.maxMessageSize }),
      ...(options.maxBuffered === undefined ? {} : { maxBuffered: options.maxBuffered }),
      ...(options.maxGrabTypes === undefined ? {} : { maxGrabTypes: options.maxGrabTypes }),
      ...(options.maxCapsWords === undefined ? {} : { maxCapsWords: options.maxCapsWords }),
      ...(options.maxRequests === undefined ? {} : { maxRequests: options.maxRequests }),
      ...options.checkpointLimits,
    },
  );
  const checkpoints = options.checkpoints instanceof StateCheckpoint
    ? options.checkpoints
    : new StateCheckpoint(options.checkpoints);
  const session = new HostSession(options);
  const host = hostCoreOf(session);
  const continued = resume === "continued";
  let last: Uint8Array | undefined;
  const runner = new PipelineRunner(host, transport, {
    ...options,
    initialInput: continued ? restored?.wire?.inbound : undefined,
    initialOutput: continued
      ? restored?.wire?.outbound.subarray(restored.wire.written ?? 0)
      : undefined,
    // A reconnected stream may begin with the rest of a message the old connection had begun.
    resync: restored !== undefined && !continued,
    selectionOf: (payload) => session.layout.selection ? payload[0] : 0,
    onResync: (skipped) =>
      options.onDiagnostic?.({
        code: "RESYNC",
        message:
          `Skipped ${skipped} bytes at the start of the reconnected stream, the rest of a message begun on the old connection`,
      }),
    onChange: checkpoints.continuous
      ? () => {
        const next = encodeCheckpoint({ mode: checkpoints.mode, ...host.snapshot() });
        if (last !== undefined && sameBytes(last, next)) return;
        last = next;
        emitCheckpoint(checkpoints, next, true);
      }
      : undefined,
  });
  if (restored !== undefined) {
    host.restore(restored, {
      reconnected: !continued,
      drained: restored.drained === true,
      offers: restored.mode === "lossless",
    });
  }
  const closed = () => closeCheckpoints(checkpoints);
  runner.done.then(closed, closed);
  return {
    session,
    checkpoints,
    done: runner.done,
    close: () => runner.close(),
    async checkpoint(options = {}) {
      const mode = options.mode ?? checkpoints.mode;
      const lossless = mode === "lossless";
      const drain = options.drain
        ? {
          timeout: checkDrainTimeout(options.drainTimeout),
          quiet: DRAIN_QUIET,
          seal: () => host.seal(),
        }
        : undefined;
      const { captured, inbound, outbound, written, drained } = await runner.handOff(
        lossless,
        () => {
          host.seal();
          return host.snapshot();
        },
        drain,
      );
      const encoded = encodeCheckpoint({
        mode,
        ...captured,
        ...(lossless ? { wire: { inbound, outbound, ...(written ? { written } : {}) } } : {}),
        ...(drained && host.answeredAll() ? { drained: true } : {}),
      });
      const key = options.key ?? checkpoints.key;
      const bytes = key === undefined ? encoded : await sealCheckpoint(encoded, key);
      host.close(
        new ClipboardError("CLOSED", "Cannot paste: the session was handed off"),
      );
      emitCheckpoint(checkpoints, bytes, false);
      return bytes;
    },
  };
}

const DEFAULT_DRAIN_TIMEOUT = 2000;
/** Milliseconds without input after which a drain takes the peer as done. */
const DRAIN_QUIET = 200;

function checkDrainTimeout(timeout: number | undefined): number {
  if (timeout === undefined) return DEFAULT_DRAIN_TIMEOUT;
  if (!Number.isFinite(timeout) || timeout < 0) {
    throw new RangeError(
      `Cannot take a checkpoint: drainTimeout must be a number of milliseconds ≥ 0, got ${timeout}`,
    );
  }
  return timeout;
}

function sameBytes(a: Uint8Array, b: Uint8Array): boolean {
  return a.length === b.length && a.every((x, i) => x === b[i]);
}
