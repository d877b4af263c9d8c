// The npm package's `vdagent-relay` bin (scripts/relay/node_main.js in the build) as a Node
// subprocess, and an in-process guest agent behind a unix socket for it to connect to. Node
// only: used by tests/node/ and tests/browser/ against npm/. Waits are bounded and resolve on
// the line or event they wait for.
import { type ChildProcessWithoutNullStreams, spawn } from "node:child_process";
import { mkdtemp, rm } from "node:fs/promises";
import { createServer, type Server, type Socket } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import process from "node:process";
import { fileURLToPath } from "node:url";
import { createGuestPipeline, type GuestPipeline } from "../../mod.ts";
import { waitFor } from "../_helpers.ts";

/** The bin in the build. */
export const RELAY_BIN = fileURLToPath(
  new URL("../../scripts/relay/node_main.js", import.meta.url),
);

/** One event the relay printed. */
export type Event = { event: string; [field: string]: unknown };

/** The bin, running. */
export class RelayBin {
  readonly events: Event[] = [];
  stderr = "";
  readonly exited: Promise<number | null>;
  readonly #child: ChildProcessWithoutNullStreams;
  readonly #waiters = new Set<() => void>();
  #code: number | null | undefined;

  /** `launcher`: another command line before `args` (e.g. `npx vdagent-relay`), run in `cwd`. */
  constructor(args: string[], launcher?: { command: string[]; cwd: string }) {
    const [command, ...prefix] = launcher?.command ?? [process.execPath, RELAY_BIN];
    this.#child = spawn(command!, [...prefix, ...args], {
      stdio: "pipe",
      ...(launcher === undefined ? {} : { cwd: launcher.cwd }),
    });
    let rest = "";
    this.#child.stdout.setEncoding("utf8").on("data", (text: string) => {
      const lines = (rest + text).split("\n");
      rest = lines.pop()!;
      for (const line of lines) this.events.push(JSON.parse(line));
      this.#wake();
    });
    this.#child.stderr.setEncoding("utf8").on("data", (text: string) => {
      this.stderr += text;
      this.#wake();
    });
    this.exited = new Promise((resolve) =>
      this.#child.once("close", (code) => {
        this.#code = code;
        this.#wake();
        resolve(code);
      })
    );
  }

  #wake(): void {
    for (const wake of this.#waiters) wake();
  }

  send(command: object | string): void {
    this.#child.stdin.write(
      (typeof command === "string" ? command : JSON.stringify(command)) + "\n",
    );
  }

  /** The first event named `event` at index ≥ `since` that `match` accepts. */
  next(event: string, match: (e: Event) => boolean = () => true, since = 0): Promise<Event> {
    return waitFor(this.#waiters, () => {
      const found = this.events.slice(since).find((e) => e.event === event && match(e));
      if (found === undefined && this.#code !== undefined) {
        throw new Error(
          `the relay exited with ${this.#code} before a "${event}" event:\n${this.stderr}`,
        );
      }
      return found;
    }, `"${event}" event`);
  }

  /** The event answering the command with `id`. */
  answer(id: string | number): Promise<Event> {
    return waitFor(this.#waiters, () => this.events.find((e) => e.id === id), `answer to ${id}`);
  }

  /** The pid of the process started: the relay's, or its launcher's. */
  get pid(): number {
    return this.#child.pid!;
  }

  signal(signal: NodeJS.Signals): void {
    this.#child.kill(signal);
  }

  async close(): Promise<void> {
    this.#child.stdin.end();
    if (this.#code === undefined) this.#child.kill("SIGKILL");
    await this.exited;
  }
}

/**
 * An in-process guest agent (`createGuestPipeline`) behind a unix socket. Its byte streams
 * outlive connections, as when a proxy holds the port: the next connection continues them.
 */
export class GuestPort {
  readonly dir: string;
  readonly path: string;
  readonly guest: GuestPipeline;
  /** What the guest's `provide` serves, by `selection/type`. */
  readonly data = new Map<string, Uint8Array>();
  readonly hostGrabs: number[] = [];
  readonly #server: Server;
  readonly #toGuest: WritableStreamDefaultWriter<Uint8Array>;
  readonly #pending: Uint8Array[] = [];
  readonly #waiters = new Set<() => void>();
  #socket: Socket | undefined;

  private constructor(dir: string) {
    this.dir = dir;
    this.path = join(dir, "vdagent.sock");
    const toGuest = new TransformStream<Uint8Array, Uint8Array>();
    const fromGuest = new TransformStream<Uint8Array, Uint8Array>();
    this.#toGuest = toGuest.writable.getWriter();
    this.guest = createGuestPipeline({ readable: toGuest.readable, writable: fromGuest.writable }, {
      clipboard: {
        onHostGrab: (selection) => {
          this.hostGrabs.push(selection);
          this.#wake();
        },
        provide: (selection, type) => this.data.get(`${selection}/${type}`),
      },
    });
    void fromGuest.readable.pipeTo(
      new WritableStream({
        write: (bytes) => {
          this.#pending.push(bytes);
          this.#flush();
        },
      }),
    ).catch(() => {});
    this.#server = createServer((socket) => {
      this.#socket?.destroy();
      this.#socket = socket;
      socket.on("data", (bytes: Uint8Array) => void this.#toGuest.write(new Uint8Array(bytes)));
      socket.on("error", () => {});
      socket.on("close", () => {
        if (this.#socket === socket) this.#socket = undefined;
      });
      this.#flush();
    });
  }

  static async open(): Promise<GuestPort> {
    const port = new GuestPort(await mkdtemp(join(tmpdir(), "vdagent-relay-node-")));
    await new Promise<void>((resolve) => port.#server.listen(port.path, resolve));
    return port;
  }

  #wake(): void {
    for (const wake of this.#waiters) wake();
  }

  #flush(): void {
    while (this.#socket !== undefined && this.#pending.length > 0) {
      this.#socket.write(this.#pending.shift()!);
    }
  }

  /** Resolves once the guest has seen `count` host grabs. */
  hostGrabbed(count: number): Promise<true> {
    return waitFor(this.#waiters, () => this.hostGrabs.length >= count || undefined, "host grab");
  }

  /** Closes the relay's connection from the guest's side. */
  closeHost(): void {
    this.#socket?.destroy();
  }

  async close(): Promise<void> {
    this.#socket?.destroy();
    await new Promise<void>((resolve) => this.#server.close(() => resolve()));
    await this.#toGuest.close().catch(() => {});
    await this.guest.done.catch(() => {});
    await rm(this.dir, { recursive: true, force: true });
  }
}
