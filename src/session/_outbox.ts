// This module is browser compatible.

import type { AgentMessage } from "../wire/agent_message.ts";

/**
 * Collects a session's outbound messages into batches: everything produced
 * while handling one input write, or in one turn of the event loop, leaves
 * as one array.
 */
export class Outbox {
  #batch: AgentMessage[] = [];
  #batchBytes = 0;
  #deliver: ((batch: AgentMessage[]) => void) | undefined;
  #depth = 0;
  #scheduled = false;
  #sealed = false;

  readonly #fallback: (() => void) | undefined;

  /**
   * @param fallback Called at a flush while nothing is attached; it may
   * attach (a session builds its stream then). Until something is, batches wait.
   */
  constructor(fallback?: () => void) {
    this.#fallback = fallback;
  }

  /** Where batches go. */
  attach(deliver: (batch: AgentMessage[]) => void): void {
    this.#deliver = deliver;
  }

  /** Whether `seal` was called: nothing more leaves. */
  get sealed(): boolean {
    return this.#sealed;
  }

  /** Payload bytes queued and not yet delivered. */
  get queuedBytes(): number {
    return this.#batchBytes;
  }

  /** Queues a message. */
  send(message: AgentMessage): void {
    if (this.#sealed) return;
    this.#batch.push(message);
    this.#batchBytes += message.data.length;
    if (this.#depth === 0 && !this.#scheduled) {
      this.#scheduled = true;
      queueMicrotask(() => {
        this.#scheduled = false;
        if (this.#depth === 0) this.flush();
      });
    }
  }

  /** Runs `fn`, delivering what it sends as one batch when it returns. */
  run<T>(fn: () => T): T {
    this.#depth++;
    try {
      return fn();
    } finally {
      if (--this.#depth === 0) this.flush();
    }
  }

  /** Delivers the pending batch now. */
  flush(): void {
    if (this.#batch.length === 0 || this.#sealed) return;
    if (this.#deliver === undefined) this.#fallback?.();
    if (this.#deliver === undefined) return;
    const batch = this.#batch;
    this.#batch = [];
    this.#batchBytes = 0;
    this.#deliver(batch);
  }

  /** Stops all output for good; what was queued is dropped. */
  seal(): void {
    this.#batch = [];
    this.#batchBytes = 0;
    this.#sealed = true;
  }
}
