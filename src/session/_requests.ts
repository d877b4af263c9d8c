// This module is browser compatible.

import { ClipboardError } from "./clipboard_error.ts";

interface Pending {
  type: number;
  resolve(data: Uint8Array): void;
  reject(error: ClipboardError): void;
}

/** Outstanding clipboard requests of one side, per selection, oldest first. */
export class RequestTable {
  readonly #queues: Pending[][] = [[], [], []];
  readonly #limit: number;

  constructor(limit: number) {
    this.#limit = limit;
  }

  /** Requests outstanding on `selection`. */
  types(selection: number): number[] {
    return this.#queues[selection]!.map((p) => p.type);
  }

  /**
   * Registers a request; the caller sends it. Settles on an answer, a
   * failure, the timeout (ms, 0 for none) or the signal.
   */
  add(selection: number, type: number, timeout: number, signal?: AbortSignal): Promise<Uint8Array> {
    const queue = this.#queues[selection]!;
    if (queue.length >= this.#limit) {
      return Promise.reject(
        new ClipboardError(
          "TOO_MANY_REQUESTS",
          `Cannot request clipboard data: ${queue.length} requests are already outstanding on selection ${selection}`,
          selection,
        ),
      );
    }
    if (signal?.aborted) return Promise.reject(aborted(selection, signal));
    return new Promise<Uint8Array>((resolve, reject) => {
      let timer: ReturnType<typeof setTimeout> | undefined;
      const onAbort = () => settle(() => reject(aborted(selection, signal!)));
      const settle = (action: () => void) => {
        const at = queue.indexOf(pending);
        if (at >= 0) queue.splice(at, 1);
        if (timer !== undefined) clearTimeout(timer);
        signal?.removeEventListener("abort", onAbort);
        action();
      };
      const pending: Pending = {
        type,
        resolve: (data) => settle(() => resolve(data)),
        reject: (error) => settle(() => reject(error)),
      };
      queue.push(pending);
      signal?.addEventListener("abort", onAbort, { once: true });
      if (timeout > 0) {
        timer = setTimeout(() =>
          pending.reject(
            new ClipboardError(
              "TIMEOUT",
              `Cannot paste: no answer within ${timeout} ms`,
              selection,
            ),
          ), timeout);
      }
    });
  }

  /**
   * Settles the oldest request of `type` on `selection` with `data`; data of
   * type NONE fails the oldest request instead. Returns false if none waits.
   */
  answer(selection: number, type: number, data: Uint8Array): boolean {
    const queue = this.#queues[selection]!;
    const pending = queue.find((p) => p.type === type) ?? (type === 0 ? queue[0] : undefined);
    if (pending === undefined) return false;
    if (pending.type !== type) {
      pending.reject(
        new ClipboardError(
          "NO_DATA",
          "Cannot paste: the owner has no data of that type",
          selection,
        ),
      );
    } else {
      pending.resolve(data);
    }
    return true;
  }

  /** Fails the oldest request of `type` on `selection`; returns false if none waits. */
  fail(selection: number, type: number, error: ClipboardError): boolean {
    const pending = this.#queues[selection]!.find((p) => p.type === type);
    pending?.reject(error);
    return pending !== undefined;
  }

  /** Fails every request on `selection`, or on all selections. */
  failAll(error: (selection: number) => ClipboardError, selection?: number): void {
    for (let s = 0; s < this.#queues.length; s++) {
      if (selection !== undefined && s !== selection) continue;
      for (const pending of [...this.#queues[s]!]) pending.reject(error(s));
    }
  }
}

function aborted(selection: number, signal: AbortSignal): ClipboardError {
  return new ClipboardError("ABORTED", "Cannot paste: the request was aborted", selection, {
    cause: signal.reason,
  });
}
