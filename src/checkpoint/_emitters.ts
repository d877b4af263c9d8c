// This module is browser compatible.

/** How a pipeline hands checkpoints to a `StateCheckpoint` stage. */
export interface Emitter {
  /** Queues a checkpoint; an unread continuous one is replaced by the next. */
  emit(checkpoint: Uint8Array, continuous: boolean): void;
  /** Ends the stage's readable side once what is queued was read. */
  close(): void;
}

/** The emitters of checkpoint stages, keyed by stage. */
export const checkpointEmitters: WeakMap<object, Emitter> = new WeakMap();
