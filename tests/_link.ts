// A one-way byte link for hand-off tests: what one side writes, the other
// reads, with the test deciding where reads stop.
import {
  createHostPipeline,
  type GuestSession,
  type HostPipeline,
  type HostPipelineOptions,
} from "../mod.ts";
import { PipelineRunner } from "../src/pipeline/_runner.ts";
import { guestCoreOf } from "../src/session/_session_cores.ts";

/** A one-way byte link with a log of everything that crossed it. */
export class Link {
  /** Everything written, in order. */
  readonly log: Uint8Array[] = [];
  /** Bytes written so far. */
  written = 0;
  /** Bytes read so far. */
  read = 0;
  /** Where reads pause: `onStop` runs there and must move `stopAt` on. */
  stopAt: number | undefined;
  onStop: (() => Promise<void>) | undefined;
  /** Largest read. */
  maxRead = 64 * 1024;
  /** Delay each write by a timer turn, so a writer has writes in flight. */
  slowWrites = false;
  readonly readable: ReadableStream<Uint8Array>;
  readonly writable: WritableStream<Uint8Array>;
  #pending: Uint8Array[] = [];
  #wake: (() => void) | undefined;
  #closed = false;

  /** Called with each write, before it can be read. */
  onWrite: ((bytes: Uint8Array) => void) | undefined;
  readonly #keepLog: boolean;

  /** @param options `log: false` keeps no log (`bytes()` is then empty), for long runs. */
  constructor(options: { log?: boolean } = {}) {
    this.#keepLog = options.log ?? true;
    this.readable = new ReadableStream<Uint8Array>({
      pull: (controller) => this.#pull(controller),
    }, { highWaterMark: 0 });
    this.writable = new WritableStream<Uint8Array>({
      write: async (bytes) => {
        if (this.slowWrites) await new Promise((r) => setTimeout(r, 0));
        const copy = bytes.slice();
        if (this.#keepLog) this.log.push(copy);
        this.onWrite?.(copy);
        this.#pending.push(copy);
        this.written += copy.length;
        this.#wake?.();
      },
      close: () => {
        this.#closed = true;
        this.#wake?.();
      },
    });
  }

  /** Everything written, as one array. */
  bytes(): Uint8Array {
    const out = new Uint8Array(this.log.reduce((n, b) => n + b.length, 0));
    let at = 0;
    for (const b of this.log) {
      out.set(b, at);
      at += b.length;
    }
    return out;
  }

  async #pull(controller: ReadableStreamDefaultController<Uint8Array>): Promise<void> {
    for (;;) {
      if (this.stopAt !== undefined && this.read >= this.stopAt && this.onStop !== undefined) {
        const at = this.stopAt;
        await this.onStop();
        if (this.stopAt === at) throw new Error(`Link: onStop left stopAt at ${at}`);
        continue;
      }
      if (this.#pending.length > 0) {
        const limit = Math.min(this.maxRead, (this.stopAt ?? Infinity) - this.read);
        const head = this.#pending[0]!;
        const n = Math.min(head.length, limit);
        if (n === head.length) this.#pending.shift();
        else this.#pending[0] = head.subarray(n);
        this.read += n;
        controller.enqueue(head.subarray(0, n));
        return;
      }
      if (this.#closed) return controller.close();
      await new Promise<void>((resolve) => this.#wake = resolve);
    }
  }
}

/** One connection of a guest session that outlives its connections. */
export interface GuestConnection {
  /** The guest's end; `port.handOff(false, () => {})` closes it without ending the session. */
  port: PipelineRunner;
  /** The relay at the other end. */
  relay: HostPipeline;
  /** The guest's bytes to the relay. */
  g2h: Link;
}

/**
 * Connects `guest` to a new relay over fresh links, as the Linux agent's
 * daemon reopens its port: the session and its serials survive, the
 * reassembly state does not.
 */
export function connectGuest(
  guest: GuestSession,
  hostOptions: HostPipelineOptions,
): GuestConnection {
  const g2h = new Link();
  const h2g = new Link();
  const port = new PipelineRunner(guestCoreOf(guest), {
    readable: h2g.readable,
    writable: g2h.writable,
  }, {});
  const relay = createHostPipeline({ readable: g2h.readable, writable: h2g.writable }, hostOptions);
  return { port, relay, g2h };
}
