// This module is browser compatible.

import { ClipboardError } from "./clipboard_error.ts";

/** One outstanding request. */
class Pending {
  readonly selection: number;
  readonly type: number;
  readonly resolve: (data: Uint8Array) => void;
  readonly reject: (error: ClipboardError) => void;
  timer: ReturnType<typeof setTimeout> | undefined;
  signal: AbortSignal | undefined;
  onAbort: (() => void) | undefined;

  constructor(
    selection: number,
    type: number,
    resolve: (data: Uint8Array) => void,
    reject: (error: ClipboardError) => void,
  ) {
    this.selection = selection;
    this.type = type;
    this.resolve = resolve;
    this.reject = reject;
  }
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

  /** How many requests of `type` are outstanding on `selection`. */
  count(selection: number, type: number): number {
    let n = 0;
    for (const p of this.#queues[selection]!) if (p.type === type) n++;
    return n;
  }

  /**
   * Why a new request on `selection` would be refused (too many outstanding,
   * or `signal` aborted already), or `undefined` if it would be taken.
   */
  refusal(selection: number, signal?: AbortSignal): ClipboardError | undefined {
    const queue = this.#queues[selection]!;
    if (queue.length >= this.#limit) {
      return new ClipboardError(
        "TOO_MANY_REQUESTS",
        `Cannot request clipboard data: ${queue.length} requests are already outstanding on selection ${selection}`,
        selection,
      );
    }
    if (signal?.aborted) return aborted(selection, signal);
    return undefined;
  }

  /**
   * Registers a request; the caller sends it. Settles on an answer, a
   * failure, the timeout (ms, 0 for none) or the signal. A request that
   * {@linkcode refusal} refuses is rejected at once.
   */
  add(selection: number, type: number, timeout: number, signal?: AbortSignal): Promise<Uint8Array> {
    const refused = this.refusal(selection, signal);
    if (refused !== undefined) return Promise.reject(refused);
    const queue = this.#queues[selection]!;
    let pending!: Pending;
    const promise = new Promise<Uint8Array>((resolve, reject) => {
      pending = new Pending(selection, type, resolve, reject);
    });
    queue.push(pending);
    if (timeout > 0) {
      pending.timer = setTimeout(() => {
        this.#settle(pending);
        pending.reject(
          new ClipboardError("TIMEOUT", `Cannot paste: no answer within ${timeout} ms`, selection),
        );
      }, timeout);
    }
    if (signal !== undefined) {
      pending.signal = signal;
      pending.onAbort = () => {
        this.#settle(pending);
        pending.reject(aborted(selection, signal));
      };
      signal.addEventListener("abort", pending.onAbort, { once: true });
    }
    return promise;
  }

  /**
   * Settles the oldest request of `type` on `selection` with `data`; data of
   * type NONE fails the oldest request instead. Returns false if none waits.
   */
  answer(selection: number, type: number, data: Uint8Array): boolean {
    const queue = this.#queues[selection]!;
    let at = 0;
    while (at < queue.length && queue[at]!.type !== type) at++;
    if (at === queue.length) {
      if (type !== 0 || queue.length === 0) return false;
      at = 0;
    }
    const pending = this.#take(queue, at);
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
    const queue = this.#queues[selection]!;
    const at = queue.findIndex((p) => p.type === type);
    if (at < 0) return false;
    this.#take(queue, at).reject(error);
    return true;
  }

  /** Fails every request on `selection`, or on all selections. */
  failAll(error: (selection: number) => ClipboardError, selection?: number): void {
    for (let s = 0; s < this.#queues.length; s++) {
      if (selection !== undefined && s !== selection) continue;
      const queue = this.#queues[s]!;
      this.#queues[s] = [];
      for (const pending of queue) {
        this.#release(pending);
        pending.reject(error(s));
      }
    }
  }

  #take(queue: Pending[], at: number): Pending {
    const pending = at === 0 ? queue.shift()! : queue.splice(at, 1)[0]!;
    this.#release(pending);
    return pending;
  }

  /** Removes a pending request that settles by itself (timeout, abort). */
  #settle(pending: Pending): void {
    const queue = this.#queues[pending.selection]!;
    const at = queue.indexOf(pending);
    if (at >= 0) this.#take(queue, at);
  }

  #release(pending: Pending): void {
    if (pending.timer !== undefined) clearTimeout(pending.timer);
    if (pending.onAbort !== undefined) {
      pending.signal!.removeEventListener("abort", pending.onAbort);
    }
  }
}

function aborted(selection: number, signal: AbortSignal): ClipboardError {
  return new ClipboardError("ABORTED", "Cannot paste: the request was aborted", selection, {
    cause: signal.reason,
  });
}
