// This module is browser compatible.

import type { StateCheckpoint } from "./state_checkpoint.ts";

/** How a pipeline hands checkpoints to a `StateCheckpoint` stage. */
export interface CheckpointPort {
  /** Queues a checkpoint; an unread continuous one is replaced by the next. */
  emit(stage: StateCheckpoint, checkpoint: Uint8Array, continuous: boolean): void;
  /** Ends the stage's readable side once what is queued was read. */
  close(stage: StateCheckpoint): void;
}

let port: CheckpointPort | undefined;

/** Called once, by `StateCheckpoint`'s static block: a friend accessor to its private queue. */
export function setCheckpointPort(of: CheckpointPort): void {
  port = of;
}

/** Queues `checkpoint` on `stage`. */
export function emitCheckpoint(
  stage: StateCheckpoint,
  checkpoint: Uint8Array,
  continuous: boolean,
): void {
  port!.emit(stage, checkpoint, continuous);
}

/** Ends `stage`'s readable side once what is queued was read. */
export function closeCheckpoints(stage: StateCheckpoint): void {
  port!.close(stage);
}
