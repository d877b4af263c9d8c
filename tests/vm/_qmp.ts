// A QMP client (QEMU's JSON machine protocol) over a unix socket, for the real-VM suite: commands
// with their answers, and every event QEMU sends with QEMU's timestamp and the host's. Deno APIs
// only. See https://www.qemu.org/docs/master/interop/qmp-spec.html for the protocol.

/** A QMP error answer, e.g. `{"class":"GenericError","desc":"..."}`. */
export class QmpError extends Error {
  /** QMP's error class, e.g. `"GenericError"`. */
  readonly errorClass: string;
  /** QMP's description. */
  readonly desc: string;
  /** The command that failed. */
  readonly command: string;

  constructor(command: string, error: { class: string; desc: string }) {
    super(`QMP ${command} failed: ${error.class}: ${error.desc}`);
    this.name = "QmpError";
    this.errorClass = error.class;
    this.desc = error.desc;
    this.command = command;
  }
}

/** An event QEMU sent, e.g. `MIGRATION`, `STOP`, `RESUME`, `VSERPORT_CHANGE`. */
export interface QmpEvent {
  event: string;
  data: Record<string, unknown>;
  /** QEMU's timestamp, in ms since the epoch (wall clock). */
  qemuMs: number;
  /** `performance.now()` when the host read it. */
  hostMs: number;
}

interface Pending {
  command: string;
  resolve(value: unknown): void;
  reject(error: Error): void;
  timer: ReturnType<typeof setTimeout>;
}

const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms));

/** One QMP connection: {@linkcode Qmp.connect}, then {@linkcode Qmp.execute}. */
export class Qmp {
  /** Every event received so far, in order. */
  readonly events: QmpEvent[] = [];
  /** QEMU's greeting (`{"QMP": {"version": …, "capabilities": […]}}`). */
  greeting: Record<string, unknown> = {};
  readonly #conn: Deno.UnixConn;
  readonly #label: string;
  readonly #pending = new Map<string, Pending>();
  readonly #waiters = new Set<() => void>();
  readonly #reader: Promise<void>;
  #greeted = Promise.withResolvers<void>();
  #seq = 0;
  #closed = false;
  #writes: Promise<void> = Promise.resolve();

  private constructor(conn: Deno.UnixConn, label: string) {
    this.#conn = conn;
    this.#label = label;
    this.#reader = this.#read();
    this.#greeted.promise.catch(() => {});
  }

  /**
   * Connects to QEMU's `-qmp unix:PATH,server=on,wait=off` socket, retrying while it does not
   * exist yet, and negotiates (`qmp_capabilities`). `alive` is polled between attempts: when it
   * returns false (QEMU exited) the connection is given up at once.
   */
  static async connect(
    path: string,
    options: { label?: string; timeoutMs?: number; alive?: () => boolean } = {},
  ): Promise<Qmp> {
    const timeoutMs = options.timeoutMs ?? 15_000;
    const end = performance.now() + timeoutMs;
    let conn: Deno.UnixConn | undefined;
    let last: unknown;
    while (conn === undefined) {
      try {
        conn = await Deno.connect({ transport: "unix", path });
      } catch (error) {
        last = error;
        if (options.alive !== undefined && !options.alive()) {
          throw new Error(`QMP ${path}: QEMU exited before its socket accepted`);
        }
        if (performance.now() > end) {
          throw new Error(`QMP ${path}: cannot connect within ${timeoutMs} ms: ${last}`);
        }
        await sleep(20);
      }
    }
    const qmp = new Qmp(conn, options.label ?? path);
    try {
      await withDeadline(qmp.#greeted.promise, end - performance.now(), `QMP greeting of ${path}`);
      await qmp.execute("qmp_capabilities");
    } catch (error) {
      await qmp.close();
      throw error;
    }
    return qmp;
  }

  /** Whether the connection has ended (closed by us or by QEMU). */
  get closed(): boolean {
    return this.#closed;
  }

  /**
   * Runs a command; resolves with its `return`, rejects with a {@linkcode QmpError} on an error
   * answer, or an `Error` when no answer comes within `timeoutMs` (default 30 000) or the
   * connection ends first.
   */
  execute<T = unknown>(
    command: string,
    args?: Record<string, unknown>,
    options: { timeoutMs?: number } = {},
  ): Promise<T> {
    if (this.#closed) {
      return Promise.reject(new Error(`QMP ${this.#label}: closed; cannot run ${command}`));
    }
    const id = `q${++this.#seq}`;
    const timeoutMs = options.timeoutMs ?? 30_000;
    const line = JSON.stringify(
      args === undefined ? { execute: command, id } : {
        execute: command,
        arguments: args,
        id,
      },
    ) + "\n";
    return new Promise<T>((resolve, reject) => {
      const timer = setTimeout(() => {
        this.#pending.delete(id);
        reject(new Error(`QMP ${this.#label}: no answer to ${command} within ${timeoutMs} ms`));
      }, timeoutMs);
      this.#pending.set(id, { command, resolve: resolve as (v: unknown) => void, reject, timer });
      const bytes = new TextEncoder().encode(line);
      this.#writes = this.#writes.then(() => writeAll(this.#conn, bytes)).catch((error) => {
        this.#settle(
          id,
          undefined,
          new Error(`QMP ${this.#label}: cannot send ${command}: ${error}`),
        );
      });
    });
  }

  /** An HMP command through `human-monitor-command`; resolves with its output. */
  hmp(commandLine: string, options: { timeoutMs?: number } = {}): Promise<string> {
    return this.execute<string>("human-monitor-command", { "command-line": commandLine }, options);
  }

  /** Events named `event` at index ≥ `since` that `match` accepts. */
  findEvents(
    event: string,
    options: { since?: number; match?: (e: QmpEvent) => boolean } = {},
  ): QmpEvent[] {
    return this.events.slice(options.since ?? 0).filter((e) =>
      e.event === event && (options.match?.(e) ?? true)
    );
  }

  /** Resolves with the first event named `event` at index ≥ `since` that `match` accepts. */
  waitEvent(
    event: string,
    options: { since?: number; match?: (e: QmpEvent) => boolean; timeoutMs?: number } = {},
  ): Promise<QmpEvent> {
    const timeoutMs = options.timeoutMs ?? 10_000;
    const found = () => this.findEvents(event, options)[0];
    const hit = found();
    if (hit !== undefined) return Promise.resolve(hit);
    return new Promise<QmpEvent>((resolve, reject) => {
      const check = () => {
        const e = found();
        if (e !== undefined) {
          done();
          resolve(e);
        } else if (this.#closed) {
          done();
          reject(new Error(`QMP ${this.#label}: closed before event ${event}`));
        }
      };
      const timer = setTimeout(() => {
        done();
        const seen = this.events.slice(options.since ?? 0).map((e) => e.event).join(", ");
        reject(
          new Error(
            `QMP ${this.#label}: no event ${event} within ${timeoutMs} ms (seen: ${
              seen || "none"
            })`,
          ),
        );
      }, timeoutMs);
      const done = () => {
        clearTimeout(timer);
        this.#waiters.delete(check);
      };
      this.#waiters.add(check);
    });
  }

  /** Closes the connection; pending commands reject. Idempotent. */
  async close(): Promise<void> {
    if (!this.#closed) {
      this.#closed = true;
      try {
        this.#conn.close();
      } catch { /* closed */ }
    }
    await this.#reader;
    await this.#writes;
  }

  async #read(): Promise<void> {
    const decoder = new TextDecoder();
    const buffer = new Uint8Array(65536);
    let text = "";
    try {
      for (;;) {
        const n = await this.#conn.read(buffer);
        if (n === null) break;
        text += decoder.decode(buffer.subarray(0, n), { stream: true });
        let nl;
        while ((nl = text.indexOf("\n")) >= 0) {
          const line = text.slice(0, nl).trim();
          text = text.slice(nl + 1);
          if (line.length > 0) this.#line(line);
        }
      }
    } catch { /* closed */ }
    if (!this.#closed) {
      this.#closed = true;
      try {
        this.#conn.close();
      } catch { /* closed */ }
    }
    this.#greeted.reject(new Error(`QMP ${this.#label}: closed before the greeting`));
    for (const id of [...this.#pending.keys()]) {
      this.#settle(id, undefined, new Error(`QMP ${this.#label}: connection closed`));
    }
    for (const waiter of [...this.#waiters]) waiter();
  }

  #line(line: string): void {
    let message: Record<string, unknown>;
    try {
      message = JSON.parse(line);
    } catch {
      return;
    }
    if ("QMP" in message) {
      this.greeting = message;
      this.#greeted.resolve();
      return;
    }
    if (typeof message.event === "string") {
      const ts = message.timestamp as { seconds?: number; microseconds?: number } | undefined;
      this.events.push({
        event: message.event,
        data: (message.data ?? {}) as Record<string, unknown>,
        qemuMs: (ts?.seconds ?? 0) * 1000 + (ts?.microseconds ?? 0) / 1000,
        hostMs: performance.now(),
      });
      for (const waiter of [...this.#waiters]) waiter();
      return;
    }
    const id = typeof message.id === "string" ? message.id : undefined;
    if (id === undefined) return;
    const error = message.error as { class: string; desc: string } | undefined;
    const pending = this.#pending.get(id);
    this.#settle(
      id,
      message.return,
      error === undefined ? undefined : new QmpError(pending?.command ?? "?", error),
    );
  }

  #settle(id: string, value: unknown, error: Error | undefined): void {
    const pending = this.#pending.get(id);
    if (pending === undefined) return;
    this.#pending.delete(id);
    clearTimeout(pending.timer);
    if (error === undefined) pending.resolve(value);
    else pending.reject(error);
  }
}

/** Writes all of `bytes` (a socket write may be partial). */
export async function writeAll(conn: Deno.Conn, bytes: Uint8Array): Promise<void> {
  let at = 0;
  while (at < bytes.length) at += await conn.write(bytes.subarray(at));
}

/** Races `promise` against a timer, which is always cleared. */
export async function withDeadline<T>(promise: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(
      () => reject(new Error(`Timed out after ${Math.round(ms)} ms: ${what}`)),
      Math.max(0, ms),
    );
  });
  try {
    return await Promise.race([promise, timeout]);
  } finally {
    clearTimeout(timer);
  }
}
