// An in-process guest agent (`createGuestPipeline`, the Linux agent's rules) behind a unix
// socket, standing in for a QEMU guest's `com.redhat.spice.0` port. The guest's byte streams
// outlive host connections, as when a proxy holds the port: a new connection continues them
// (`--resume continued`), and guest bytes written while no host is connected wait for the next.
// Deno only.
import { createGuestPipeline, type GuestPipeline, type GuestPipelineOptions } from "../../mod.ts";

/** What the guest saw. */
export type GuestEvent =
  | { kind: "host-caps"; request: boolean }
  | { kind: "host-grab"; selection: number; types: readonly number[] }
  | { kind: "host-release"; selection: number }
  | { kind: "mouse"; x: number; y: number; buttons: number; display: number }
  | { kind: "diagnostic"; code: string; message: string }
  | { kind: "provided"; selection: number; type: number };

export class GuestPort {
  readonly dir: string;
  readonly path: string;
  readonly guest: GuestPipeline;
  readonly events: GuestEvent[] = [];
  /** What the guest's `provide` serves, by `selection/type`. */
  readonly data = new Map<string, Uint8Array>();
  /** Answers held back until the promise resolves, by `selection/type`. */
  readonly holds = new Map<string, Promise<void>>();
  readonly #listener: Deno.UnixListener;
  readonly #toGuest: WritableStreamDefaultWriter<Uint8Array>;
  readonly #fromGuest: ReadableStreamDefaultReader<Uint8Array>;
  readonly #pending: Uint8Array[] = [];
  readonly #tasks: Promise<void>[] = [];
  readonly #waiters = new Set<() => void>();
  #conn: Deno.UnixConn | undefined;
  #connections = 0;
  #closed = false;

  private constructor(dir: string, options: GuestPipelineOptions) {
    this.dir = dir;
    this.path = `${dir}/vdagent.sock`;
    this.#listener = Deno.listen({ transport: "unix", path: this.path });
    const toGuest = new TransformStream<Uint8Array, Uint8Array>();
    const fromGuest = new TransformStream<Uint8Array, Uint8Array>();
    this.#toGuest = toGuest.writable.getWriter();
    this.#fromGuest = fromGuest.readable.getReader();
    const record = (event: GuestEvent) => {
      this.events.push(event);
      this.#wake();
    };
    this.guest = createGuestPipeline({ readable: toGuest.readable, writable: fromGuest.writable }, {
      requestTimeout: 10_000,
      maxMessageSize: 64 << 20,
      onHostCaps: (_, request) => record({ kind: "host-caps", request }),
      onMouse: (state) => record({ kind: "mouse", ...state }),
      onDiagnostic: (d) => record({ kind: "diagnostic", code: d.code, message: d.message }),
      clipboard: {
        onHostGrab: (selection, types) => record({ kind: "host-grab", selection, types }),
        onHostRelease: (selection) => record({ kind: "host-release", selection }),
        provide: (selection, type) => {
          record({ kind: "provided", selection, type });
          const key = `${selection}/${type}`;
          const hold = this.holds.get(key);
          return hold === undefined ? this.data.get(key) : hold.then(() => this.data.get(key));
        },
      },
      ...options,
    });
    this.#tasks.push(this.#accept(), this.#pumpFromGuest());
  }

  /** Listens on a socket in a new temp dir. */
  static async open(options: GuestPipelineOptions = {}): Promise<GuestPort> {
    return new GuestPort(await Deno.makeTempDir({ prefix: "vdagent-relay-test-" }), options);
  }

  /** Host connections accepted so far. */
  get connections(): number {
    return this.#connections;
  }

  #wake(): void {
    for (const wake of this.#waiters) wake();
  }

  /** Resolves once `check` holds, re-checked on every guest event and connection; bounded. */
  async until(check: () => boolean, what: string, timeoutMs = 15_000): Promise<void> {
    let timer: ReturnType<typeof setTimeout> | undefined;
    let wake: () => void = () => {};
    try {
      await new Promise<void>((resolve, reject) => {
        wake = () => check() && resolve();
        this.#waiters.add(wake);
        timer = setTimeout(
          () => reject(new Error(`guest: no ${what} within ${timeoutMs} ms`)),
          timeoutMs,
        );
        wake();
      });
    } finally {
      this.#waiters.delete(wake);
      clearTimeout(timer);
    }
  }

  async #accept(): Promise<void> {
    for await (const conn of this.#listener) {
      this.#conn?.close();
      this.#conn = conn;
      this.#connections++;
      this.#tasks.push(this.#pumpToGuest(conn));
      this.#flush();
      this.#wake();
    }
  }

  async #pumpToGuest(conn: Deno.UnixConn): Promise<void> {
    try {
      for await (const bytes of conn.readable) await this.#toGuest.write(bytes);
    } catch {
      // The connection was closed under the read.
    }
    if (this.#conn === conn) this.#conn = undefined;
    this.#wake();
  }

  async #pumpFromGuest(): Promise<void> {
    for (;;) {
      const { value, done } = await this.#fromGuest.read();
      if (done) return;
      this.#pending.push(value);
      this.#flush();
    }
  }

  #flushing = false;
  async #flush(): Promise<void> {
    if (this.#flushing) return;
    this.#flushing = true;
    try {
      while (this.#conn !== undefined && this.#pending.length > 0) {
        const conn = this.#conn;
        const bytes = this.#pending[0]!;
        try {
          for (let at = 0; at < bytes.length;) at += await conn.write(bytes.subarray(at));
          this.#pending.shift();
        } catch {
          if (this.#conn === conn) this.#conn = undefined; // kept for the next connection
        }
      }
    } finally {
      this.#flushing = false;
    }
  }

  /** Closes the current host connection from the guest's side: the relay reads end of stream. */
  closeHost(): void {
    const conn = this.#conn;
    this.#conn = undefined;
    try {
      conn?.close();
    } catch {
      // Closed already.
    }
  }

  /** Stops everything and removes the temp dir. */
  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    this.closeHost();
    this.#listener.close();
    await this.#toGuest.close().catch(() => {});
    await this.guest.done.catch(() => {});
    await this.#fromGuest.cancel().catch(() => {});
    await Promise.allSettled(this.#tasks);
    await Deno.remove(this.dir, { recursive: true });
  }
}
