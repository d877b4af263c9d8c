// This module is browser compatible.

import type { TransferProgress } from "../wire/transfer_progress.ts";

/** Options every pipeline takes, on top of its session's. */
export interface PipelineOptions {
  /** Tears the pipeline down; `done` rejects with the signal's reason. */
  signal?: AbortSignal;
  /** Largest message payload accepted from the peer, checked before allocation. Default 64 MiB. */
  maxMessageSize?: number;
  /**
   * Most payload bytes held for messages from the peer that arrive in several
   * chunks, summed over both ports (each may have one in progress), checked
   * before allocating; over it the pipeline fails with a
   * `VdagentProtocolError` `BUFFER_FULL`. Default: `maxMessageSize`.
   */
  maxBuffered?: number;
  /** Largest chunk payload written, from 20 to 2048. Default 2048. */
  chunkSize?: number;
  /** Copy messages that would otherwise be views into the transport's reads. Default `false`. */
  copy?: boolean;
  /**
   * Progress of each message over 1 MiB, in both directions; a host pipeline
   * tells the selection of each clipboard transfer.
   */
  onProgress?: (progress: TransferProgress) => void;
}
