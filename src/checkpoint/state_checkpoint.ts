// This module is browser compatible.

import { setCheckpointPort } from "./_emitters.ts";
import type { CheckpointKey } from "./checkpoint_key.ts";
import { sealCheckpoint } from "./seal_checkpoint.ts";
import type { CheckpointMode } from "./checkpoint_state.ts";

/** Options of {@linkcode StateCheckpoint}. */
export interface StateCheckpointOptions {
  /** What `checkpoint()` and the continuous checkpoints hold. Default `"lossless"`. */
  mode?: CheckpointMode;
  /**
   * Also emit a checkpoint after every message that changed the session's
   * migratable state, so a standby relay always holds the latest. These
   * describe the session, not bytes in flight: a standby that takes over
   * after a crash restores them with `resume: "reconnected"`. An unread one
   * is replaced by the next. Default `false`.
   */
  continuous?: boolean;
  /**
   * Seal every checkpoint with this key (HMAC-SHA-256, see `sealCheckpoint`),
   * for a store that others can write: the next relay opens them with
   * `openCheckpoint` and the same key.
   */
  key?: CheckpointKey;
}

/**
 * The checkpoint stage of a host pipeline. `createHostPipeline` places it
 * where the relay's state meets the transport: it holds the gates of both
 * byte streams (at a migration boundary it stops the guest's bytes and the
 * writes to the guest) and it sees the decoder's partial bytes, the session's
 * state and the bytes not yet written, which is everything a new relay needs
 * to continue the same byte streams. Its readable side carries the
 * serialized checkpoints out, to be piped to any store: one per
 * `checkpoint()` call and, if asked, one after each change of the session's
 * state. The other way in, a pipeline takes a checkpoint with its `restore`
 * option, before any traffic flows.
 *
 * @example Keeping the latest checkpoint of a relay
 * ```ts
 * import { createGuestPipeline, createHostPipeline, decodeCheckpoint, StateCheckpoint } from "@vdagent/streams";
 * import assert from "node:assert/strict";
 *
 * const a = new TransformStream<Uint8Array, Uint8Array>();
 * const b = new TransformStream<Uint8Array, Uint8Array>();
 * const guest = createGuestPipeline({ readable: a.readable, writable: b.writable });
 * const checkpoints = new StateCheckpoint({ continuous: true });
 * const relay = createHostPipeline({ readable: b.readable, writable: a.writable }, { checkpoints });
 * const reader = checkpoints.readable.getReader();
 * let latest = decodeCheckpoint((await reader.read()).value!);
 * while (latest.guestCaps === undefined) latest = decodeCheckpoint((await reader.read()).value!);
 * assert.deepEqual(latest.guestCaps, [0x00038de7]);
 * reader.releaseLock();
 * await relay.close();
 * await guest.done;
 * ```
 */
export class StateCheckpoint {
  /**
   * What the checkpoints hold.
   *
   * @example Lossless unless asked otherwise
   * ```ts
   * import { StateCheckpoint } from "@vdagent/streams";
   * import assert from "node:assert/strict";
   *
   * assert.equal(new StateCheckpoint().mode, "lossless");
   * assert.equal(new StateCheckpoint({ mode: "minimal" }).mode, "minimal");
   * ```
   */
  readonly mode: CheckpointMode;
  /**
   * Whether a checkpoint follows every change of the session's state.
   *
   * @example Only on demand unless asked otherwise
   * ```ts
   * import { StateCheckpoint } from "@vdagent/streams";
   * import assert from "node:assert/strict";
   *
   * assert.equal(new StateCheckpoint().continuous, false);
   * assert.equal(new StateCheckpoint({ continuous: true }).continuous, true);
   * ```
   */
  readonly continuous: boolean;
  /**
   * The key every checkpoint is sealed with, if any.
   *
   * @example Unsealed unless given a key
   * ```ts
   * import { StateCheckpoint } from "@vdagent/streams";
   * import assert from "node:assert/strict";
   *
   * assert.equal(new StateCheckpoint().key, undefined);
   * ```
   */
  readonly key: CheckpointKey | undefined;
  /**
   * The checkpoints, as `Uint8Array`s: pipe them to a store. The stream ends
   * when the pipeline does.
   *
   * @example Storing the hand-off checkpoint of a relay
   * ```ts
   * import { createGuestPipeline, createHostPipeline, StateCheckpoint } from "@vdagent/streams";
   * import assert from "node:assert/strict";
   *
   * const a = new TransformStream<Uint8Array, Uint8Array>();
   * const b = new TransformStream<Uint8Array, Uint8Array>();
   * const transport = { readable: b.readable, writable: a.writable };
   * const guest = createGuestPipeline({ readable: a.readable, writable: b.writable });
   * const checkpoints = new StateCheckpoint();
   * const relayA = createHostPipeline(transport, { checkpoints });
   * const stored: Uint8Array[] = [];
   * const storing = checkpoints.readable.pipeTo(new WritableStream({ write: (c) => void stored.push(c) }));
   * while (relayA.session.guestCaps === undefined) await new Promise((r) => setTimeout(r, 1));
   * const handedOff = await relayA.checkpoint();
   * await storing; // relay A ended with the hand-off, and so did its checkpoints
   * assert.deepEqual(stored, [handedOff]);
   * const relayB = createHostPipeline(transport, { restore: stored[0]!, resume: "continued" });
   * assert.deepEqual(relayB.session.guestCaps, [0x00038de7]);
   * await relayB.close();
   * await guest.done;
   * ```
   *
   * @returns The stage's readable side, built when first read.
   */
  get readable(): ReadableStream<Uint8Array> {
    return this.#readable ??= new ReadableStream<Uint8Array>({
      pull: async (controller) => {
        while (this.#queue.length === 0 && !this.#closed) {
          await new Promise<void>((resolve) => this.#wake = resolve);
        }
        const next = this.#queue.shift();
        if (next !== undefined) controller.enqueue(await next.checkpoint);
        else controller.close();
      },
    }, { highWaterMark: 0 });
  }

  #readable: ReadableStream<Uint8Array> | undefined;
  #queue: { checkpoint: Uint8Array | Promise<Uint8Array>; continuous: boolean }[] = [];
  #closed = false;
  #wake: (() => void) | undefined;

  /**
   * Creates a checkpoint stage; hand it to `createHostPipeline`.
   *
   * @param options Mode and continuous emission.
   */
  constructor(options: StateCheckpointOptions = {}) {
    const mode = options.mode ?? "lossless";
    if (mode !== "lossless" && mode !== "minimal") {
      throw new TypeError(
        `Cannot create StateCheckpoint: mode must be "lossless" or "minimal", got ${mode}`,
      );
    }
    this.mode = mode;
    this.continuous = options.continuous ?? false;
    this.key = options.key;
  }

  static {
    setCheckpointPort({
      emit: (stage, checkpoint, continuous) => stage.#emit(checkpoint, continuous),
      close: (stage) => stage.#close(),
    });
  }

  /** Queues a checkpoint; an unread continuous one is replaced by the next. */
  #emit(checkpoint: Uint8Array, continuous: boolean): void {
    // An unread continuous checkpoint is stale once the next one exists.
    if (continuous && this.#queue.at(-1)?.continuous) this.#queue.pop();
    // Hand-off checkpoints come sealed already; continuous ones are sealed here.
    const sealed = this.key === undefined || !continuous
      ? checkpoint
      : sealCheckpoint(checkpoint, this.key);
    if (sealed instanceof Promise) sealed.catch(() => {}); // surfaces through the stream
    this.#queue.push({ checkpoint: sealed, continuous });
    this.#wake?.();
  }

  /** Ends the readable side once what is queued was read. */
  #close(): void {
    this.#closed = true;
    this.#wake?.();
  }
}
