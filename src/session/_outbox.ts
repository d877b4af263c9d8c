// This module is browser compatible.

import { batchOf } from "../wire/_batch.ts";
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

  /** Where batches go; until set, they wait. */
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
    if (this.#batch.length === 0 || this.#deliver === undefined || this.#sealed) return;
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

/** The constructor arguments of a session's `TransformStream`. */
export function sessionStreamInit(
  outbox: Outbox,
  receive: (messages: readonly AgentMessage[]) => void,
  close: (reason?: unknown) => void,
): [
  Transformer<AgentMessage | readonly AgentMessage[], AgentMessage[]>,
  undefined,
  QueuingStrategy<AgentMessage[]>,
] {
  return [
    {
      start: (controller) =>
        outbox.attach((batch) => {
          try {
            controller.enqueue(batch);
          } catch {
            // The readable side is gone; the session is closing.
          }
        }),
      transform: (input) => outbox.run(() => receive(batchOf(input))),
      flush: () => close(),
      cancel: (reason) => close(reason),
    },
    undefined,
    // One batch of read-ahead. With the default of 0, the capabilities queued
    // at creation keep the writable side waiting until a read is pending, and
    // two sessions piped back to back wait on each other.
    { highWaterMark: 1 },
  ];
}
