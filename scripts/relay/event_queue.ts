// The events one output of the relay (standard output, one WebSocket client) has not taken yet,
// bounded in bytes. Web-platform only, and no timers: the output's writes pace it.
import type { RelayEvent } from "./relay_core.ts";

/** Where a queue's events go. */
export interface EventOutput {
  /** Takes one event's JSON text; resolves once it has left the relay (written out). */
  write(text: string): Promise<void>;
}

/** The bounds of an {@linkcode EventQueue}, in characters of JSON text (bytes, for ASCII). */
export interface EventQueueLimits {
  /**
   * Most bytes handed to the output and not yet written: the next event waits while that
   * many are in flight (an event larger than this goes alone).
   */
  window: number;
  /**
   * Bytes waiting, beyond the first waiting event (which may be as large as an event gets),
   * over which the output is behind: `onBehind` is called, and {@linkcode EventQueue.room}
   * waits until the output has caught up to half of it.
   */
  highWater: number;
}

/** One event that waits: its text (`undefined` once a newer one of its key superseded it). */
interface Waiting {
  text: string | undefined;
  key: string | undefined;
}

/**
 * The events an output has not taken yet, in order. An event pushed with a `key` supersedes
 * one of the same key that still waits (it leaves the queue, the newer one goes at the end):
 * what the consumer sees is a subsequence that ends with the latest event of every key.
 */
export class EventQueue {
  readonly #output: EventOutput;
  readonly #limits: EventQueueLimits;
  readonly #onBehind: ((waiting: number) => void) | undefined;
  readonly #onError: (error: unknown) => void;
  readonly #waiting: Waiting[] = [];
  #head = 0;
  readonly #byKey = new Map<string, Waiting>();
  #waitingBytes = 0;
  /** Entries of `#waiting` from `#head` on that were not superseded. */
  #live = 0;
  #inFlight = 0;
  #writes = 0;
  #last: Promise<void> = Promise.resolve();
  #failed = false;
  #behind = false;
  #roomWaiters: (() => void)[] = [];
  #idleWaiters: (() => void)[] = [];

  constructor(
    output: EventOutput,
    limits: EventQueueLimits,
    options: {
      /**
       * The output fell behind, with the bytes waiting; called again only after it caught up
       * to half the high water.
       */
      onBehind?: (waiting: number) => void;
      /** A write failed: the queue drops everything from then on. Called once. */
      onError?: (error: unknown) => void;
    } = {},
  ) {
    this.#output = output;
    this.#limits = limits;
    this.#onBehind = options.onBehind;
    this.#onError = options.onError ?? (() => {});
  }

  /** Bytes of the events that wait (superseded ones not counted). */
  get waiting(): number {
    return this.#waitingBytes;
  }

  /** Bytes handed to the output and not yet written. */
  get inFlight(): number {
    return this.#inFlight;
  }

  /** Queues one event's text; with a `key`, it supersedes a waiting event of the same key. */
  push(text: string, key?: string): void {
    if (this.#failed) return;
    if (key !== undefined) {
      const older = this.#byKey.get(key);
      if (older !== undefined) {
        this.#waitingBytes -= older.text!.length;
        older.text = undefined;
        this.#live--;
      }
    }
    const entry: Waiting = { text, key };
    this.#waiting.push(entry);
    this.#live++;
    if (this.#waiting.length - this.#head > 2 * this.#live + 1024) this.#compact();
    if (key !== undefined) this.#byKey.set(key, entry);
    this.#waitingBytes += text.length;
    this.#pump();
    if (!this.#behind && this.#over(this.#limits.highWater)) {
      this.#behind = true;
      this.#onBehind?.(this.#waitingBytes);
    }
  }

  /**
   * Resolves once what waits is at most half the high water (at once if it is): the caller
   * stops producing events (reading the guest, a command stream) until then.
   */
  room(): Promise<void> | undefined {
    if (this.#failed || !this.#over(this.#limits.highWater / 2)) return undefined;
    return new Promise((resolve) => this.#roomWaiters.push(resolve));
  }

  /** Resolves once everything pushed so far is written (or the output failed). */
  flush(): Promise<void> {
    if (this.#failed || (this.#waitingBytes === 0 && this.#inFlight === 0)) {
      return this.#last;
    }
    return new Promise((resolve) => this.#idleWaiters.push(resolve));
  }

  /** Drops everything that waits; later pushes are dropped too (the output is going away). */
  discard(): void {
    this.#fail();
  }

  /** Whether the bytes waiting, beyond the first waiting event, exceed `bytes`. */
  #over(bytes: number): boolean {
    if (this.#waitingBytes <= bytes) return false;
    this.#skipSuperseded();
    const first = this.#waiting[this.#head]?.text?.length ?? 0;
    return this.#waitingBytes - first > bytes;
  }

  /** Drops the superseded entries: a flood of them must not pile up while nothing is written. */
  #compact(): void {
    this.#waiting.splice(0, this.#head);
    this.#head = 0;
    let to = 0;
    for (const entry of this.#waiting) if (entry.text !== undefined) this.#waiting[to++] = entry;
    this.#waiting.length = to;
  }

  #skipSuperseded(): void {
    while (this.#head < this.#waiting.length && this.#waiting[this.#head]!.text === undefined) {
      this.#head++;
    }
    if (this.#head > 1024 && this.#head * 2 > this.#waiting.length) {
      this.#waiting.splice(0, this.#head);
      this.#head = 0;
    }
  }

  /** Hands events to the output while less than the window is in flight. */
  #pump(): void {
    while (!this.#failed && this.#inFlight < this.#limits.window) {
      this.#skipSuperseded();
      const entry = this.#waiting[this.#head];
      if (entry === undefined) break;
      this.#head++;
      this.#live--;
      const text = entry.text!;
      if (entry.key !== undefined && this.#byKey.get(entry.key) === entry) {
        this.#byKey.delete(entry.key);
      }
      this.#waitingBytes -= text.length;
      this.#inFlight += text.length;
      this.#writes++;
      let written: Promise<void>;
      try {
        written = this.#output.write(text);
      } catch (error) {
        written = Promise.reject(error);
      }
      this.#last = written.then(
        () => this.#written(text.length),
        (error) => {
          if (!this.#failed) this.#onError(error);
          this.#fail();
        },
      );
    }
    if (this.#head === this.#waiting.length) {
      this.#waiting.length = 0;
      this.#head = 0;
    }
  }

  #written(bytes: number): void {
    this.#inFlight -= bytes;
    this.#writes--;
    this.#pump();
    this.#wake();
  }

  #wake(): void {
    if (this.#behind && !this.#over(this.#limits.highWater / 2)) this.#behind = false;
    if (this.#roomWaiters.length > 0 && !this.#over(this.#limits.highWater / 2)) {
      for (const resolve of this.#roomWaiters.splice(0)) resolve();
    }
    if (this.#idleWaiters.length > 0 && this.#waitingBytes === 0 && this.#writes === 0) {
      for (const resolve of this.#idleWaiters.splice(0)) resolve();
    }
  }

  #fail(): void {
    this.#failed = true;
    this.#waiting.length = 0;
    this.#head = 0;
    this.#byKey.clear();
    this.#waitingBytes = 0;
    this.#live = 0;
    for (const resolve of this.#roomWaiters.splice(0)) resolve();
    for (const resolve of this.#idleWaiters.splice(0)) resolve();
  }
}

/**
 * `readable`, read only while `room()` resolves at once or has resolved: the reader of the
 * returned stream waits, and nothing is read from `readable` meanwhile (its bytes stay with
 * the peer, which the transport's own flow control then stops).
 */
export function readWhenRoom(
  readable: ReadableStream<Uint8Array>,
  room: () => Promise<void> | undefined,
): ReadableStream<Uint8Array> {
  const reader = readable.getReader();
  return new ReadableStream<Uint8Array>({
    async pull(controller) {
      await room();
      const { value, done } = await reader.read();
      if (done) controller.close();
      else controller.enqueue(value);
    },
    cancel: (reason) => reader.cancel(reason),
  }, { highWaterMark: 0 });
}

/**
 * The key under which a newer event supersedes an older one still waiting: what the guest
 * offers on a selection (an `offer` or the guest's `release`), its caps, and a transfer's
 * progress short of its end. Every other event is kept.
 */
export function supersedingKey(event: RelayEvent): string | undefined {
  switch (event.event) {
    case "offer":
    case "release":
      return event.by === undefined || event.by === "guest"
        ? `guest:${event.selection}`
        : undefined;
    case "caps":
      return "caps";
    case "progress":
      return event.done !== event.total
        ? `progress:${event.direction}:${event.transfer}`
        : undefined;
  }
  return undefined;
}

/**
 * Sends every event to every queue, once as JSON. An event with a {@linkcode supersedingKey}
 * waits for the end of the current task (the relay dispatches one read of the guest's bytes in
 * one), so that a read full of grabs makes one offer event, not one per grab; any other event
 * first sends those that wait, so the order is what each queue's superseding would give.
 */
export class Broadcaster {
  readonly #queues: () => Iterable<EventQueue>;
  readonly #waiting = new Map<string, RelayEvent>();
  #scheduled = false;

  constructor(queues: () => Iterable<EventQueue>) {
    this.#queues = queues;
  }

  send(event: RelayEvent): void {
    const key = supersedingKey(event);
    if (key === undefined) {
      this.flush();
      return this.#push(event, undefined);
    }
    this.#waiting.delete(key); // the newer one goes last
    this.#waiting.set(key, event);
    if (!this.#scheduled) {
      this.#scheduled = true;
      queueMicrotask(() => this.flush());
    }
  }

  /** Sends the events that wait for the end of the task. */
  flush(): void {
    this.#scheduled = false;
    if (this.#waiting.size === 0) return;
    const waiting = [...this.#waiting];
    this.#waiting.clear();
    for (const [key, event] of waiting) this.#push(event, key);
  }

  #push(event: RelayEvent, key: string | undefined): void {
    const text = JSON.stringify(event);
    for (const queue of this.#queues()) queue.push(text, key);
  }
}
