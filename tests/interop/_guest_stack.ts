// The real Linux SPICE guest agent (Debian's spice-vdagentd + spice-vdagent on Xvfb) without a
// VM, its virtio port exposed as a unix socket for a host endpoint. Deno APIs only; needs
// spice-vdagentd, spice-vdagent, socat, Xvfb, xclip, mkfifo, cat and sh
// (`apt-get install -y spice-vdagent socat xvfb xclip`).
//
// One private temp dir per stack:
//
//   host ─Deno.connect─▶ <dir>/host.sock ─relay (this module)─▶ socat STDIO ⇄ PTY <dir>/vport
//   spice-vdagentd -x -f -X -s <dir>/vport -S <dir>/agent.sock -u <dir>/uinput ──┘ (the "port")
//   spice-vdagent  -x -s <dir>/vport -S <dir>/agent.sock   (DISPLAY = the stack's Xvfb)
//   <dir>/uinput: a FIFO read by `cat 0<>fifo`, parsed as Linux input_event records
//   a guardian `sh` that kills every pid of the stack and removes <dir> if Deno dies first
//
// Why a relay of our own instead of `socat PTY,… UNIX-LISTEN:…,fork`: socat's default `-t 0.5`
// lets the child of a closed connection read the pty for 0.5 s more and throw the bytes away.
// The relay keeps the pty open across host connections, keeps guest bytes that arrive while no
// host is connected for the next one, lets a new connection replace the old one, and can put a
// new pty behind the port's path so that the guest sees its port close and reopen. A host that
// half-closes its socket is sent nothing more and can read what was sent to it until EOF: that
// is how a relay hands the guest's byte stream on without losing a byte (see _relay.ts).
// How the agent behaves here was found by experiment; see the README's interop section.

import { concat } from "../_helpers.ts";

/** An X selection, as xclip names it. */
export type SelectionName = "clipboard" | "primary" | "secondary";

/** Options of {@linkcode startGuestStack}. */
export interface GuestStackOptions {
  /** Daemon `-d -d` and session agent `-d`. Default `true`. */
  debug?: boolean;
  /** Budget for the whole start-up, in ms. Default 20 000. */
  startTimeoutMs?: number;
  /** Xvfb screen geometry. Default `"1024x768x24"`. */
  screen?: string;
  /**
   * What the guest's port does when the host connection closes: `"reopen-port"`, as QEMU's
   * socket chardev does (the guest sees its port close and reopen, see
   * {@linkcode GuestStack.reconnectTransport}; what it writes meanwhile waits for the next host;
   * what the next host writes before the daemon handled the close is dropped), or
   * `"keep-port"`, as a proxy that holds QEMU's socket across its clients does (the pty stays
   * open and the guest notices nothing). Default `"keep-port"`.
   */
  onHostDisconnect?: "keep-port" | "reopen-port";
  /** Keep the temp dir after `stop()`. Default `false`. */
  keepTempDir?: boolean;
  /** Echo every log line to stderr as it arrives. Default `false`. */
  echoLogs?: boolean;
  /** Extra environment for the agent processes. */
  env?: Record<string, string>;
}

/** One Linux `input_event` the daemon wrote to the fake uinput device. */
export interface InputEvent {
  type: number;
  code: number;
  value: number;
}

/** What `xclip -o` did. */
export interface PasteResult {
  /** xclip exited with status 0 before the timeout. */
  ok: boolean;
  data: Uint8Array;
  text: string;
  stderr: string;
  code: number | null;
  timedOut: boolean;
  elapsedMs: number;
}

/** Options of {@linkcode GuestStack.guestCopy}. */
export interface CopyOptions {
  /** Default `"clipboard"`. */
  selection?: SelectionName;
  /** X target xclip offers. Default `"UTF8_STRING"`; e.g. `"image/png"`. */
  target?: string;
  /** Default 10 000 ms. */
  timeoutMs?: number;
}

/** Options of {@linkcode GuestStack.guestPaste}. */
export interface PasteOptions {
  /** Default `"clipboard"`. */
  selection?: SelectionName;
  /** X target asked for. Default `"UTF8_STRING"`; e.g. `"image/png"` or `"TARGETS"`. */
  target?: string;
  /** xclip is killed after this. Default 10 000 ms. */
  timeoutMs?: number;
}

/** A line of the combined log. */
export interface LogLine {
  /** Milliseconds since the stack was created. */
  t: number;
  /** `vdagentd`, `vdagent`, `harness`, `Xvfb`, `socat#N`, `xclip-i:…`, `xclip-o:…`. */
  src: string;
  line: string;
}

/** Where to look in the log. */
export interface LogQuery {
  /** First line index to look at (from {@linkcode GuestStack.logMark}). Default 0. */
  since?: number;
  /** Only lines of this source. */
  src?: string;
}

/** Pids of the stack's processes, for diagnostics and leak checks. */
export interface StackPids {
  xvfb: number | null;
  socat: number | null;
  uinputReader: number | null;
  daemon: number | null;
  agent: number | null;
  xclipOwners: number[];
}

/** A running guest: Xvfb, the pty "virtio port", spice-vdagentd and spice-vdagent. */
export interface GuestStack {
  readonly dir: string;
  /** The unix socket a host endpoint connects to. */
  readonly socketPath: string;
  /** The emulated virtio port: a symlink to the current pty. */
  readonly portPath: string;
  /** The X display, e.g. `":3"`. */
  readonly display: string;
  /** Start-up time in ms. */
  readonly startMs: number;
  /**
   * Connects to the host socket; a new connection replaces (closes) the previous one. When the
   * host half-closes its connection, the relay sends nothing more to it and closes it once a
   * write in progress has finished: the host reads what it was sent, then EOF; guest bytes from
   * then on wait for the next connection.
   */
  connect(): Promise<Deno.UnixConn>;
  /** Host connections accepted so far. */
  hostConnections(): number;
  /**
   * Host bytes dropped because they arrived before the daemon handled the close of the
   * previous connection (`"reopen-port"` only), as QEMU's socket chardev loses them.
   */
  droppedHostBytes(): number;
  /** Closes the current host connection from the guest's side (the host reads EOF). */
  disconnectHost(): void;
  /** Guest bytes read and not yet delivered to a host connection. */
  pendingGuestBytes(): number;
  /** The guest user copies: xclip owns the selection (kept running). Resolves once it owns it. */
  guestCopy(data: string | Uint8Array, options?: CopyOptions): Promise<void>;
  /** Ends the xclip owner(s) of a selection: the selection has no owner any more. */
  guestRelease(selection?: SelectionName): Promise<void>;
  /** Sends a signal to the xclip owner(s) of a selection (SIGSTOP: an unresponsive owner). */
  guestSignalOwner(selection: SelectionName, signal: Deno.Signal): void;
  /** The guest user pastes (`xclip -o`); never rejects, reports exit and timeout. */
  guestPaste(options?: PasteOptions): Promise<PasteResult>;
  /** X targets offered for a selection (`xclip -o -t TARGETS`); `[]` if it has no owner. */
  guestTargets(selection?: SelectionName, timeoutMs?: number): Promise<string[]>;
  /**
   * Who owns the X selection: `"agent"` (spice-vdagent, i.e. a host grab is in effect: GTK
   * offers MULTIPLE, xclip does not), `"xclip"` (a guest copy) or `"none"`.
   */
  guestOwner(selection?: SelectionName): Promise<"agent" | "xclip" | "none">;
  /** Polls {@linkcode guestOwner} until it is `owner`. */
  waitForGuestOwner(
    selection: SelectionName,
    owner: "agent" | "xclip" | "none",
    timeoutMs?: number,
  ): Promise<void>;
  /** Records the daemon wrote to the fake uinput device so far. */
  uinputEvents(): InputEvent[];
  /** Resolves once at least `count` records arrived. */
  waitForUinput(count: number, timeoutMs?: number): Promise<InputEvent[]>;
  clearUinput(): void;
  /** The combined log (daemon, session agent, harness, helpers) as text. */
  log(): string;
  logLines(): LogLine[];
  /** The current log position, for `since`. */
  logMark(): number;
  /** Log lines matching `re`. */
  findLogs(re: RegExp, query?: LogQuery): LogLine[];
  /** Resolves with the first line matching `re`; rejects after `timeoutMs` (default 10 000). */
  waitForLog(re: RegExp, query?: LogQuery & { timeoutMs?: number }): Promise<LogLine>;
  /** Guest agent restart: stops spice-vdagentd and spice-vdagent, starts both again. */
  restartAgent(options?: { timeoutMs?: number }): Promise<void>;
  /** Restarts the session agent only (the daemon closes and reopens the port). */
  restartSessionAgent(options?: { timeoutMs?: number }): Promise<void>;
  /**
   * Reconnected transport: the guest sees its port close and reopen. A new pty is put behind
   * the port's path, then the old one is closed; the daemon reads EOF, logs "AIIEEE lost spice
   * client connection, reconnecting" and reopens the path. It does not resend its caps nor
   * reset serials. By default the host connection is closed too and undelivered guest bytes
   * are dropped.
   *
   * Right after (re)opening, the daemon takes 0-byte reads for "host not connected yet" until
   * it has read a byte (a real virtio port behaves the same). If the host sent nothing since,
   * the close would go unnoticed: the pty is kept and this resolves `{ guestNoticed: false }`,
   * unless `force` first writes a zero-length chunk, which the daemon ignores.
   */
  reconnectTransport(
    options?: { closeHost?: boolean; timeoutMs?: number; force?: boolean },
  ): Promise<{ guestNoticed: boolean }>;
  pids(): StackPids;
  /** Stops everything, awaits every process and stream, removes the temp dir. Idempotent. */
  stop(): Promise<void>;
  [Symbol.asyncDispose](): Promise<void>;
}

// input_event constants (linux/input-event-codes.h)
export const EV_SYN = 0, EV_KEY = 1, EV_REL = 2, EV_ABS = 3;
export const SYN_REPORT = 0, ABS_X = 0, ABS_Y = 1, REL_WHEEL = 8;
export const BTN_LEFT = 0x110, BTN_RIGHT = 0x111, BTN_MIDDLE = 0x112;
export const BTN_SIDE = 0x113, BTN_EXTRA = 0x114;

const BINARIES = [
  "spice-vdagentd",
  "spice-vdagent",
  "socat",
  "Xvfb",
  "xclip",
  "mkfifo",
  "cat",
  "sh",
];
// spice-vdagentd lives in sbin, which a user's PATH may lack.
const SYSTEM_PATH = ["/usr/local/sbin", "/usr/local/bin", "/usr/sbin", "/usr/bin", "/sbin", "/bin"];

function searchPath(): string[] {
  const dirs = (Deno.env.get("PATH") ?? "").split(":").filter((d) => d.length > 0);
  for (const d of SYSTEM_PATH) if (!dirs.includes(d)) dirs.push(d);
  return dirs;
}

function which(name: string): string | null {
  for (const dir of searchPath()) {
    const file = `${dir}/${name}`;
    try {
      const st = Deno.statSync(file);
      if (st.isFile && ((st.mode ?? 0o111) & 0o111) !== 0) return file;
    } catch { /* not here */ }
  }
  return null;
}

/** Which of the binaries the stack needs are installed (starts nothing). */
export function findGuestBinaries(): {
  ok: boolean;
  missing: string[];
  paths: Record<string, string>;
} {
  const missing: string[] = [];
  const paths: Record<string, string> = {};
  for (const name of BINARIES) {
    const path = which(name);
    if (path === null) missing.push(name);
    else paths[name] = path;
  }
  return { ok: missing.length === 0, missing, paths };
}

// ---------------------------------------------------------------------------------------------

const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms));

/** Races `promise` against a timer, which is always cleared. */
export async function withTimeout<T>(promise: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`Timed out after ${ms} ms: ${what}`)), ms);
  });
  try {
    return await Promise.race([promise, timeout]);
  } finally {
    clearTimeout(timer);
  }
}

/** Polls `check` every `stepMs` until it holds; rejects after `ms`. */
export async function pollUntil(
  check: () => boolean | Promise<boolean>,
  ms: number,
  what: string,
  stepMs = 10,
): Promise<void> {
  const end = performance.now() + ms;
  while (!(await check())) {
    if (performance.now() > end) throw new Error(`Timed out after ${ms} ms: ${what}`);
    await sleep(stepMs);
  }
}

function exists(path: string): boolean {
  try {
    Deno.lstatSync(path);
    return true;
  } catch {
    return false;
  }
}

// Everything alive, killed synchronously if the Deno process unloads with stacks running.
const liveProcs = new Set<Proc>();
const liveDirs = new Set<string>();
let unloadHooked = false;
function hookUnload(): void {
  if (unloadHooked) return;
  unloadHooked = true;
  globalThis.addEventListener("unload", () => {
    for (const p of liveProcs) {
      try {
        Deno.kill(p.pid, "SIGKILL");
      } catch { /* gone */ }
    }
    for (const d of liveDirs) {
      try {
        Deno.removeSync(d, { recursive: true });
      } catch { /* gone */ }
    }
  });
}

type LineSink = (src: string, line: string) => void;

interface ProcOptions {
  env: Record<string, string>;
  stdin?: "piped" | "null";
  /** `"log"`: stdout lines go to the log; `"raw"`: `onStdout` gets the bytes. */
  stdout: "log" | "raw" | "null";
  onStdout?: (bytes: Uint8Array) => void;
  sink: LineSink;
  logExit?: boolean;
  guard: Guardian;
}

/** A child process whose stderr (and optionally stdout) becomes log lines. */
class Proc {
  readonly child: Deno.ChildProcess;
  readonly pid: number;
  readonly status: Promise<Deno.CommandStatus>;
  exited = false;
  exitStatus: Deno.CommandStatus | null = null;
  readonly #name: string;
  readonly #readers: Promise<void>[] = [];

  constructor(name: string, cmd: string, args: string[], options: ProcOptions) {
    this.#name = name;
    const child = new Deno.Command(cmd, {
      args,
      env: options.env,
      clearEnv: true,
      stdin: options.stdin ?? "null",
      stdout: options.stdout === "null" ? "null" : "piped",
      stderr: "piped",
    }).spawn();
    this.child = child;
    this.pid = child.pid;
    liveProcs.add(this);
    options.guard.add(this.pid);
    this.status = child.status.then((status) => {
      this.exited = true;
      this.exitStatus = status;
      liveProcs.delete(this);
      options.guard.remove(this.pid);
      if (options.logExit) {
        options.sink(
          "harness",
          `${name} (pid ${this.pid}) exited: code=${status.code} signal=${status.signal}`,
        );
      }
      return status;
    });
    this.#readers.push(Proc.#lines(child.stderr, (line) => options.sink(name, line)));
    if (options.stdout === "log") {
      this.#readers.push(Proc.#lines(child.stdout, (line) => options.sink(name, line)));
    } else if (options.stdout === "raw") {
      const onStdout = options.onStdout!;
      this.#readers.push((async () => {
        try {
          for await (const bytes of child.stdout) onStdout(bytes);
        } catch { /* closed */ }
      })());
    }
  }

  static async #lines(stream: ReadableStream<Uint8Array>, onLine: (line: string) => void) {
    const decoder = new TextDecoder();
    let buffer = "";
    try {
      for await (const bytes of stream) {
        buffer += decoder.decode(bytes, { stream: true });
        let at;
        while ((at = buffer.indexOf("\n")) >= 0) {
          onLine(buffer.slice(0, at));
          buffer = buffer.slice(at + 1);
        }
      }
    } catch { /* closed */ }
    if (buffer.length > 0) onLine(buffer);
  }

  signal(signal: Deno.Signal): void {
    if (this.exited) return;
    try {
      this.child.kill(signal);
    } catch { /* gone */ }
  }

  /** SIGTERM (or `signal`), SIGKILL after `graceMs`; awaits the exit and the output readers. */
  async stop(graceMs = 2000, signal: Deno.Signal = "SIGTERM"): Promise<Deno.CommandStatus> {
    if (!this.exited) {
      this.signal(signal);
      if (signal !== "SIGKILL") this.signal("SIGCONT"); // a stopped process must run to die
      if (!(await this.waitExit(graceMs))) this.signal("SIGKILL");
    }
    const status = await withTimeout(this.status, 5000, `${this.#name} to exit after SIGKILL`);
    // A grandchild may hold the pipes open: give up on them after a while.
    await withTimeout(Promise.all(this.#readers), 2000, `${this.#name} output`).catch(() => {});
    return status;
  }

  /** Whether the process exited within `ms`. */
  async waitExit(ms: number): Promise<boolean> {
    if (this.exited) return true;
    return await withTimeout(this.status, ms, `${this.#name} to exit`).then(
      () => true,
      () => false,
    );
  }
}

/**
 * A small `sh` watchdog that outlives a crashed test process: it learns every pid we spawn and
 * every exit on its stdin; if that pipe closes without "done" (Deno died without `stop()`, e.g.
 * SIGKILL), it SIGKILLs the pids left and removes the temp dir.
 */
const GUARD_SCRIPT = `trap '' INT HUP
dir="$1"; pids=" "
while IFS= read -r line; do
  case "$line" in
    +*) pids="$pids\${line#+} " ;;
    -*) n=" "; for p in $pids; do [ "$p" = "\${line#-}" ] || n="$n$p "; done; pids="$n" ;;
    done) exit 0 ;;
  esac
done
for p in $pids; do kill -9 "$p" 2>/dev/null; done
rm -rf "$dir"
`;

class Guardian {
  readonly #child: Deno.ChildProcess;
  readonly #writer: WritableStreamDefaultWriter<Uint8Array>;
  #chain: Promise<void> = Promise.resolve();
  #closed = false;

  constructor(sh: string, dir: string) {
    this.#child = new Deno.Command(sh, {
      args: ["-c", GUARD_SCRIPT, "guard", dir],
      clearEnv: true,
      env: { PATH: searchPath().join(":") },
      stdin: "piped",
      stdout: "null",
      stderr: "null",
    }).spawn();
    this.#writer = this.#child.stdin.getWriter();
    this.#writer.closed.catch(() => {});
  }

  #send(line: string): void {
    if (this.#closed) return;
    const bytes = new TextEncoder().encode(line + "\n");
    this.#chain = this.#chain.then(() => this.#writer.write(bytes)).catch(() => {});
  }

  add(pid: number): void {
    this.#send(`+${pid}`);
  }

  remove(pid: number): void {
    this.#send(`-${pid}`);
  }

  /** Normal shutdown: the guardian exits without touching anything. */
  async done(): Promise<void> {
    this.#send("done");
    this.#closed = true;
    await this.#chain;
    await this.#writer.close().catch(() => {});
    if (!(await withTimeout(this.#child.status, 2000, "guardian").then(() => true, () => false))) {
      try {
        this.#child.kill("SIGKILL");
      } catch { /* gone */ }
      await withTimeout(this.#child.status, 5000, "guardian after SIGKILL");
    }
  }
}

interface Port {
  proc: Proc;
  writer: WritableStreamDefaultWriter<Uint8Array>;
  gen: number;
}

interface LogWaiter {
  check(): void;
  fail(error: Error): void;
}

class Stack implements GuestStack {
  dir = "";
  socketPath = "";
  portPath = "";
  display = "";
  startMs = 0;

  readonly #options: Required<GuestStackOptions>;
  readonly #t0 = performance.now();
  readonly #lines: LogLine[] = [];
  readonly #waiters = new Set<LogWaiter>();
  #bins: Record<string, string> = {};
  #baseEnv: Record<string, string> = {};
  #agentSock = "";
  #uinputPath = "";
  #guard: Guardian | undefined;
  #xvfb: Proc | undefined;
  #uinputReader: Proc | undefined;
  #daemon: Proc | undefined;
  #agent: Proc | undefined;
  #port: Port | undefined;
  #oldPorts: Proc[] = [];
  #portGen = 0;
  #listener: Deno.Listener<Deno.UnixConn, Deno.UnixAddr> | undefined;
  #acceptLoop: Promise<void> | undefined;
  #host: Deno.UnixConn | undefined;
  #hostCount = 0;
  #droppedHostBytes = 0;
  readonly #hostPumps = new Set<Promise<void>>();
  #pending: Uint8Array[] = [];
  #pendingBytes = 0;
  #flushing = false;
  #flushDone: Promise<void> = Promise.resolve();
  /** The write to a host in progress. */
  #writing: { conn: Deno.UnixConn; done: Promise<unknown> } | undefined;
  #guestBytes = 0;
  #uinputRest = new Uint8Array(0);
  #events: InputEvent[] = [];
  readonly #owners = new Map<SelectionName, Proc[]>();
  readonly #pasters = new Set<Proc>();
  #stopping = false;
  #stopDone: Promise<void> | undefined;
  #reconnecting: Promise<{ guestNoticed: boolean }> | undefined;
  /** Host bytes written to the pty, and that count when the daemon last (re)opened its port. */
  #hostBytes = 0;
  #hostBytesAtOpen = 0;

  constructor(options: Required<GuestStackOptions>) {
    this.#options = options;
  }

  // ---- log ----------------------------------------------------------------------------------

  #sink: LineSink = (src, line) => {
    const entry = { t: performance.now() - this.#t0, src, line };
    if (
      src === "vdagentd" && /opening vdagent virtio channel|lost spice client connection/.test(line)
    ) {
      this.#hostBytesAtOpen = this.#hostBytes;
    }
    this.#lines.push(entry);
    if (this.#options.echoLogs) {
      // deno-lint-ignore no-console
      console.error(formatLine(entry));
    }
    for (const waiter of [...this.#waiters]) waiter.check();
  };

  #note(line: string): void {
    this.#sink("harness", line);
  }

  log(): string {
    return this.#lines.map(formatLine).join("\n");
  }

  logLines(): LogLine[] {
    return [...this.#lines];
  }

  logMark(): number {
    return this.#lines.length;
  }

  findLogs(re: RegExp, query: LogQuery = {}): LogLine[] {
    return this.#lines.slice(query.since ?? 0).filter((l) =>
      (query.src === undefined || l.src === query.src) && re.test(l.line)
    );
  }

  waitForLog(re: RegExp, query: LogQuery & { timeoutMs?: number } = {}): Promise<LogLine> {
    const timeoutMs = query.timeoutMs ?? 10_000;
    const find = () => this.findLogs(re, query)[0];
    const hit = find();
    if (hit !== undefined) return Promise.resolve(hit);
    if (this.#stopping) return Promise.reject(new Error(`The stack stopped; no log ${re}`));
    return new Promise<LogLine>((resolve, reject) => {
      const waiter: LogWaiter = {
        check: () => {
          const found = find();
          if (found === undefined) return;
          this.#waiters.delete(waiter);
          clearTimeout(timer);
          resolve(found);
        },
        fail: (error) => {
          this.#waiters.delete(waiter);
          clearTimeout(timer);
          reject(error);
        },
      };
      const timer = setTimeout(
        () => waiter.fail(new Error(`Timed out after ${timeoutMs} ms waiting for log ${re}`)),
        timeoutMs,
      );
      this.#waiters.add(waiter);
    });
  }

  // ---- start --------------------------------------------------------------------------------

  async start(): Promise<void> {
    const found = findGuestBinaries();
    if (!found.ok) throw new Error(`Missing binaries: ${found.missing.join(", ")}`);
    this.#bins = found.paths;
    hookUnload();
    const deadline = performance.now() + this.#options.startTimeoutMs;
    const left = (what: string) => {
      const ms = Math.floor(deadline - performance.now());
      if (ms <= 0) throw new Error(`Start-up budget exhausted before ${what}`);
      return ms;
    };

    this.dir = await Deno.makeTempDir({ prefix: "vdagent-interop-" });
    liveDirs.add(this.dir);
    this.#guard = new Guardian(this.#bins["sh"]!, this.dir);
    this.socketPath = `${this.dir}/host.sock`;
    this.portPath = `${this.dir}/vport`;
    this.#agentSock = `${this.dir}/agent.sock`;
    this.#uinputPath = `${this.dir}/uinput`;
    await Deno.mkdir(`${this.dir}/xdg`, { mode: 0o700 });
    await Deno.mkdir(`${this.dir}/home`, { mode: 0o700 });
    this.#baseEnv = {
      PATH: searchPath().join(":"),
      HOME: `${this.dir}/home`,
      XDG_RUNTIME_DIR: `${this.dir}/xdg`,
      LANG: "C.UTF-8",
      NO_AT_BRIDGE: "1",
      GDK_BACKEND: "x11",
    };

    // The uinput FIFO, opened read-write by its reader: the open never blocks, the reader never
    // sees EOF, and a restarted daemon's blocking O_WRONLY open always finds a reader.
    const mkfifo = await new Deno.Command(this.#bins["mkfifo"]!, {
      args: [this.#uinputPath],
      stdout: "null",
      stderr: "piped",
    }).output();
    if (!mkfifo.success) {
      throw new Error(`mkfifo failed: ${new TextDecoder().decode(mkfifo.stderr)}`);
    }
    this.#uinputReader = this.#spawn("uinput", "sh", [
      "-c",
      'exec cat 0<>"$1"',
      "sh",
      this.#uinputPath,
    ], {
      stdout: "raw",
      onStdout: (bytes) => this.#onUinputBytes(bytes),
    });

    // Xvfb on a free display: -displayfd 1 makes it pick one and print it once ready.
    this.#xvfb = this.#spawn(
      "Xvfb",
      "Xvfb",
      ["-displayfd", "1", "-screen", "0", this.#options.screen, "-nolisten", "tcp", "-noreset"],
      { stdout: "raw", onStdout: (bytes) => this.#onXvfbStdout(bytes) },
    );
    await pollUntil(() => this.display !== "" || this.#xvfb!.exited, left("Xvfb"), "Xvfb");
    if (this.display === "") throw new Error("Xvfb exited during start-up");
    this.#note(`Xvfb on ${this.display}`);

    this.#port = await this.#startPort(this.portPath, left("socat"));
    this.#listener = Deno.listen({ transport: "unix", path: this.socketPath });
    this.#acceptLoop = this.#runAccept(this.#listener);

    // The session agent exits at once if the port is missing and retries the daemon's socket
    // only once a second: daemon first, wait for its socket, then the agent.
    const mark = this.logMark();
    this.#daemon = this.#startDaemon();
    await pollUntil(
      () => exists(this.#agentSock) || this.#daemon!.exited,
      left("the daemon's socket"),
      "the daemon's socket",
    );
    if (this.#daemon.exited) throw new Error("spice-vdagentd exited during start-up");
    this.#agent = this.#startAgent();
    await this.waitForLog(/opening vdagent virtio channel/, {
      since: mark,
      src: "vdagentd",
      timeoutMs: left("the port to open"),
    });
    // The guest's ANNOUNCE_CAPABILITIES (36 bytes) waits in the relay for the first host.
    await pollUntil(() => this.#guestBytes >= 36, left("guest caps"), "the guest's caps");
    this.startMs = performance.now() - this.#t0;
    this.#note(`stack ready in ${this.startMs.toFixed(0)} ms`);
  }

  #spawn(
    name: string,
    bin: string,
    args: string[],
    options: Omit<ProcOptions, "env" | "sink" | "guard"> & { env?: Record<string, string> },
  ): Proc {
    return new Proc(name, this.#bins[bin]!, args, {
      ...options,
      env: options.env ?? this.#baseEnv,
      sink: this.#sink,
      guard: this.#guard!,
    });
  }

  #onXvfbStdout(bytes: Uint8Array): void {
    if (this.display !== "") return;
    const text = new TextDecoder().decode(bytes).trim();
    if (/^\d+$/.test(text)) this.display = `:${text}`;
  }

  #onUinputBytes(bytes: Uint8Array): void {
    const buffer = concat(this.#uinputRest, bytes);
    const view = new DataView(buffer.buffer);
    let at = 0;
    // struct input_event on 64-bit Linux: timeval (16 bytes, left zero by the daemon), then
    // type u16, code u16, value i32.
    for (; buffer.length - at >= 24; at += 24) {
      this.#events.push({
        type: view.getUint16(at + 16, true),
        code: view.getUint16(at + 18, true),
        value: view.getInt32(at + 20, true),
      });
    }
    this.#uinputRest = buffer.slice(at);
  }

  #agentEnv(daemon: boolean): Record<string, string> {
    // G_MESSAGES_DEBUG=all shows the daemon's g_debug() lines ("client grab wins", "grab
    // discard, serial …"), which -d alone does not.
    const env: Record<string, string> = { ...this.#baseEnv, DISPLAY: this.display };
    if (daemon) env.G_MESSAGES_DEBUG = "all";
    return { ...env, ...this.#options.env };
  }

  #startDaemon(): Proc {
    // -X: no systemd-logind; -f: the uinput path is a plain file (our FIFO), not /dev/uinput.
    const args = ["-x", "-f", "-X", "-s", this.portPath, "-S", this.#agentSock];
    args.push("-u", this.#uinputPath);
    if (this.#options.debug) args.unshift("-d", "-d");
    return this.#spawn("vdagentd", "spice-vdagentd", args, {
      env: this.#agentEnv(true),
      stdout: "log",
      logExit: true,
    });
  }

  #startAgent(): Proc {
    const args = ["-x", "-s", this.portPath, "-S", this.#agentSock];
    if (this.#options.debug) args.unshift("-d");
    return this.#spawn("vdagent", "spice-vdagent", args, {
      env: this.#agentEnv(false),
      stdout: "log",
      logExit: true,
    });
  }

  /** Starts socat holding a pty linked at `link`; guest bytes go to the relay. */
  async #startPort(link: string, timeoutMs: number): Promise<Port> {
    const gen = ++this.#portGen;
    const proc = this.#spawn(
      `socat#${gen}`,
      "socat",
      ["-d", "-d", `PTY,link=${link},raw,echo=0,unlink-close=0`, "STDIO"],
      { stdin: "piped", stdout: "raw", onStdout: (bytes) => this.#onGuestBytes(gen, bytes) },
    );
    const writer = proc.child.stdin.getWriter();
    writer.closed.catch(() => {});
    try {
      await pollUntil(() => exists(link) || proc.exited, timeoutMs, `pty link ${link}`);
      if (proc.exited) throw new Error("socat exited during start-up");
    } catch (error) {
      await writer.close().catch(() => {});
      await proc.stop(500);
      throw error;
    }
    return { proc, writer, gen };
  }

  // ---- relay --------------------------------------------------------------------------------

  #onGuestBytes(gen: number, bytes: Uint8Array): void {
    if (this.#port?.gen !== gen) return; // a port being torn down: lost, as with virtio
    this.#guestBytes += bytes.length;
    this.#pending.push(bytes);
    this.#pendingBytes += bytes.length;
    this.#flushToHost();
  }

  pendingGuestBytes(): number {
    return this.#pendingBytes;
  }

  #flushToHost(): void {
    if (!this.#flushing) this.#flushDone = this.#flush();
  }

  async #flush(): Promise<void> {
    this.#flushing = true;
    try {
      while (this.#pending.length > 0 && this.#host !== undefined) {
        const conn = this.#host;
        const bytes = this.#pending[0]!;
        let at = 0;
        try {
          while (at < bytes.length) {
            const write = conn.write(bytes.subarray(at));
            this.#writing = { conn, done: write.catch(() => {}) };
            at += await write;
          }
          this.#pending.shift();
          this.#pendingBytes -= bytes.length;
        } catch {
          // The host left mid-write: the rest goes to the next host.
          this.#pending[0] = bytes.subarray(at);
          this.#pendingBytes -= at;
          this.#hostClosed(conn);
        } finally {
          this.#writing = undefined;
        }
      }
    } finally {
      this.#flushing = false;
    }
  }

  async #runAccept(listener: Deno.Listener<Deno.UnixConn, Deno.UnixAddr>): Promise<void> {
    for (;;) {
      let conn: Deno.UnixConn;
      try {
        conn = await listener.accept();
      } catch {
        return; // the listener closed
      }
      if (this.#stopping) {
        conn.close();
        continue;
      }
      if (this.#host !== undefined) {
        this.#note("a new host connection replaces the previous one");
        this.#closeHostConn(this.#host);
      }
      this.#host = conn;
      this.#hostCount++;
      this.#note(`host connected (#${this.#hostCount})`);
      const pump = this.#pumpHostToGuest(conn);
      this.#hostPumps.add(pump);
      pump.finally(() => this.#hostPumps.delete(pump));
      this.#flushToHost();
    }
  }

  async #pumpHostToGuest(conn: Deno.UnixConn): Promise<void> {
    const buffer = new Uint8Array(65536);
    try {
      for (;;) {
        const n = await conn.read(buffer);
        if (n === null || this.#host !== conn || this.#port === undefined) break;
        if (this.#reconnecting !== undefined) {
          // As with QEMU's chardev: what a new client writes before the daemon has handled the
          // previous close goes with the old port.
          this.#droppedHostBytes += n;
          this.#note(`${n} host bytes dropped: the daemon has not handled the close yet`);
          continue;
        }
        try {
          await this.#port.writer.write(buffer.slice(0, n));
          this.#hostBytes += n;
        } catch {
          this.#note("a write to the pty failed; host bytes dropped");
        }
      }
    } catch { /* closed */ }
    this.#hostClosed(conn);
  }

  #hostClosed(conn: Deno.UnixConn): void {
    if (this.#host !== conn) return;
    this.#host = undefined;
    // The host half-closed (or left): nothing more is sent to it. A write in progress finishes
    // first, so that a host that reads on until EOF gets every byte counted as delivered to it,
    // and the next host gets the rest.
    const close = () => {
      try {
        conn.close();
      } catch { /* closed already */ }
    };
    const writing = this.#writing;
    if (writing?.conn === conn) {
      const closed = withTimeout(writing.done, 5000, "a write to the host").then(close, close);
      this.#hostPumps.add(closed);
      closed.finally(() => this.#hostPumps.delete(closed));
    } else {
      close();
    }
    this.#note("host disconnected");
    if (this.#options.onHostDisconnect === "reopen-port" && !this.#stopping) {
      this.reconnectTransport({ closeHost: false }).catch((error) =>
        this.#note(`port reopen failed: ${error}`)
      );
    }
  }

  #closeHostConn(conn: Deno.UnixConn): void {
    this.#host = undefined;
    try {
      conn.close();
    } catch { /* closed already */ }
    this.#note("host connection closed by the harness");
  }

  disconnectHost(): void {
    if (this.#host !== undefined) this.#closeHostConn(this.#host);
  }

  hostConnections(): number {
    return this.#hostCount;
  }

  droppedHostBytes(): number {
    return this.#droppedHostBytes;
  }

  connect(): Promise<Deno.UnixConn> {
    if (this.#stopping) return Promise.reject(new Error("The stack is stopped"));
    return Deno.connect({ transport: "unix", path: this.socketPath });
  }

  // ---- reconnected transport ----------------------------------------------------------------

  reconnectTransport(
    options: { closeHost?: boolean; timeoutMs?: number; force?: boolean } = {},
  ): Promise<{ guestNoticed: boolean }> {
    if (this.#reconnecting) return this.#reconnecting;
    const run = this.#reconnect(
      options.closeHost ?? true,
      options.timeoutMs ?? 10_000,
      options.force ?? false,
    );
    this.#reconnecting = run;
    return run.finally(() => this.#reconnecting = undefined);
  }

  async #reconnect(
    closeHost: boolean,
    timeoutMs: number,
    force: boolean,
  ): Promise<{ guestNoticed: boolean }> {
    const old = this.#port;
    if (old === undefined) throw new Error("The stack has no port");
    if (closeHost) {
      if (this.#host !== undefined) this.#closeHostConn(this.#host);
      this.#pending = [];
      this.#pendingBytes = 0;
    }
    const daemonUp = this.#daemon !== undefined && !this.#daemon.exited;
    const portLive = this.#hostBytes > this.#hostBytesAtOpen;
    if (daemonUp && !portLive && !force) {
      this.#note(
        "transport reconnect: the daemon read nothing since it opened its port, so it cannot " +
          "notice a close (like a virtio port); keeping the pty",
      );
      return { guestNoticed: false };
    }
    if (daemonUp && !portLive) {
      // A zero-length chunk: the daemon ignores it, but has now read a byte.
      await old.writer.write(new Uint8Array([1, 0, 0, 0, 0, 0, 0, 0])).catch(() => {});
      this.#hostBytes += 8;
    }
    const mark = this.logMark();
    const nextLink = `${this.dir}/vport.next`;
    await Deno.remove(nextLink).catch(() => {});
    const next = await this.#startPort(nextLink, timeoutMs);
    // Point the port's path at the new pty atomically, then let the old one go: the daemon
    // reads EOF, logs "lost spice client connection" and reopens the path.
    await Deno.rename(nextLink, this.portPath);
    this.#port = next;
    this.#note(`transport reconnect: the port is socat#${next.gen}, closing socat#${old.gen}`);
    await sleep(50); // let the daemon drain what is in the old pty
    await old.writer.close().catch(() => {});
    this.#oldPorts.push(old.proc);
    await old.proc.stop(1000);
    this.#oldPorts = this.#oldPorts.filter((p) => p !== old.proc);
    if (daemonUp) {
      await this.waitForLog(/lost spice client connection/, {
        since: mark,
        src: "vdagentd",
        timeoutMs,
      });
    }
    return { guestNoticed: daemonUp };
  }

  // ---- agent restarts -----------------------------------------------------------------------

  async restartAgent(options: { timeoutMs?: number } = {}): Promise<void> {
    const timeoutMs = options.timeoutMs ?? 15_000;
    this.#note("restarting spice-vdagentd and spice-vdagent");
    await this.#daemon?.stop(3000);
    // With -x the session agent exits when the daemon goes (0.22.1 segfaults doing so).
    if (this.#agent && !(await this.#agent.waitExit(2000))) await this.#agent.stop(2000);
    await Deno.remove(this.#agentSock).catch(() => {});
    const mark = this.logMark();
    this.#daemon = this.#startDaemon();
    await pollUntil(
      () => exists(this.#agentSock) || this.#daemon!.exited,
      timeoutMs,
      "the daemon's socket",
    );
    if (this.#daemon.exited) throw new Error("spice-vdagentd exited during the restart");
    this.#agent = this.#startAgent();
    await this.waitForLog(/opening vdagent virtio channel/, {
      since: mark,
      src: "vdagentd",
      timeoutMs,
    });
  }

  async restartSessionAgent(options: { timeoutMs?: number } = {}): Promise<void> {
    const timeoutMs = options.timeoutMs ?? 15_000;
    this.#note("restarting spice-vdagent (the session agent)");
    await this.#agent?.stop(3000);
    const mark = this.logMark();
    this.#agent = this.#startAgent();
    await this.waitForLog(/opening vdagent virtio channel/, {
      since: mark,
      src: "vdagentd",
      timeoutMs,
    });
  }

  // ---- the guest user (xclip) ---------------------------------------------------------------

  #xclipEnv(): Record<string, string> {
    return { ...this.#baseEnv, DISPLAY: this.display };
  }

  async guestCopy(data: string | Uint8Array, options: CopyOptions = {}): Promise<void> {
    const selection = options.selection ?? "clipboard";
    const target = options.target ?? "UTF8_STRING";
    const timeoutMs = options.timeoutMs ?? 10_000;
    const bytes = typeof data === "string" ? new TextEncoder().encode(data) : data;
    const mark = this.logMark();
    const name = `xclip-i:${selection}`;
    // -quiet keeps xclip in the foreground; it says "Waiting for selection requests" once it
    // owns the selection.
    const proc = this.#spawn(
      name,
      "xclip",
      ["-quiet", "-i", "-selection", selection, "-t", target],
      {
        env: this.#xclipEnv(),
        stdin: "piped",
        stdout: "log",
      },
    );
    this.#owners.set(selection, [...(this.#owners.get(selection) ?? []), proc]);
    proc.status.then(() =>
      this.#owners.set(selection, (this.#owners.get(selection) ?? []).filter((p) => p !== proc))
    );
    const owns = () => this.findLogs(/Waiting for selection request/, { since: mark, src: name });
    try {
      const writer = proc.child.stdin.getWriter();
      await withTimeout(writer.write(bytes), timeoutMs, "xclip's stdin");
      await withTimeout(writer.close(), timeoutMs, "xclip's stdin");
      await pollUntil(() => owns().length > 0 || proc.exited, timeoutMs, "xclip -i to own", 5);
      if (owns().length === 0) {
        throw new Error(`xclip -i exited early (code ${proc.exitStatus?.code})`);
      }
    } catch (error) {
      await proc.stop(500);
      throw error;
    }
  }

  async guestRelease(selection: SelectionName = "clipboard"): Promise<void> {
    const owners = this.#owners.get(selection) ?? [];
    this.#owners.set(selection, []);
    await Promise.all(owners.map((p) => p.stop(1000)));
  }

  guestSignalOwner(selection: SelectionName, signal: Deno.Signal): void {
    for (const proc of this.#owners.get(selection) ?? []) proc.signal(signal);
  }

  async guestPaste(options: PasteOptions = {}): Promise<PasteResult> {
    const selection = options.selection ?? "clipboard";
    const target = options.target ?? "UTF8_STRING";
    const timeoutMs = options.timeoutMs ?? 10_000;
    const out: Uint8Array[] = [];
    const errors: string[] = [];
    const t0 = performance.now();
    const proc = new Proc(
      `xclip-o:${selection}`,
      this.#bins["xclip"]!,
      ["-o", "-selection", selection, "-t", target],
      {
        env: this.#xclipEnv(),
        stdout: "raw",
        onStdout: (bytes) => out.push(bytes.slice()),
        sink: (src, line) => {
          errors.push(line);
          this.#sink(src, line);
        },
        guard: this.#guard!,
      },
    );
    this.#pasters.add(proc);
    try {
      // xclip -o has no timeout of its own: a paste the host never answers hangs.
      const timedOut = !(await proc.waitExit(timeoutMs));
      if (timedOut) this.#note(`xclip -o ${selection} ${target}: no answer in ${timeoutMs} ms`);
      const status = await proc.stop(500, "SIGKILL");
      const data = concat(...out);
      return {
        ok: !timedOut && status.success,
        data,
        text: new TextDecoder().decode(data),
        stderr: errors.join("\n"),
        code: timedOut ? null : status.code,
        timedOut,
        elapsedMs: performance.now() - t0,
      };
    } finally {
      this.#pasters.delete(proc);
    }
  }

  async guestTargets(selection: SelectionName = "clipboard", timeoutMs = 3000): Promise<string[]> {
    const result = await this.guestPaste({ selection, target: "TARGETS", timeoutMs });
    if (!result.ok) return [];
    return result.text.split("\n").map((t) => t.trim()).filter((t) => t.length > 0);
  }

  async guestOwner(selection: SelectionName = "clipboard"): Promise<"agent" | "xclip" | "none"> {
    const targets = await this.guestTargets(selection);
    if (targets.length === 0) return "none";
    return targets.includes("MULTIPLE") ? "agent" : "xclip";
  }

  async waitForGuestOwner(
    selection: SelectionName,
    owner: "agent" | "xclip" | "none",
    timeoutMs = 5000,
  ): Promise<void> {
    let last = "";
    await pollUntil(
      async () => (last = await this.guestOwner(selection)) === owner,
      timeoutMs,
      `the owner of ${selection} to become ${owner}`,
      20,
    ).catch((error) => {
      throw new Error(`${error.message} (last seen: ${last})`);
    });
  }

  // ---- uinput -------------------------------------------------------------------------------

  uinputEvents(): InputEvent[] {
    return [...this.#events];
  }

  clearUinput(): void {
    this.#events = [];
  }

  async waitForUinput(count: number, timeoutMs = 5000): Promise<InputEvent[]> {
    await pollUntil(() => this.#events.length >= count, timeoutMs, `${count} uinput events`);
    return this.uinputEvents();
  }

  pids(): StackPids {
    const alive = (p: Proc | undefined) => p !== undefined && !p.exited ? p.pid : null;
    return {
      xvfb: alive(this.#xvfb),
      socat: alive(this.#port?.proc),
      uinputReader: alive(this.#uinputReader),
      daemon: alive(this.#daemon),
      agent: alive(this.#agent),
      xclipOwners: [...this.#owners.values()].flat().map((p) => p.pid),
    };
  }

  // ---- stop ---------------------------------------------------------------------------------

  stop(): Promise<void> {
    this.#stopDone ??= this.#stop();
    return this.#stopDone;
  }

  async #stop(): Promise<void> {
    this.#stopping = true;
    for (const waiter of [...this.#waiters]) waiter.fail(new Error("The stack stopped"));
    if (this.#reconnecting) await this.#reconnecting.catch(() => {});
    if (this.#host !== undefined) this.#closeHostConn(this.#host);
    try {
      this.#listener?.close();
    } catch { /* closed */ }
    await this.#acceptLoop;
    await Promise.all(
      [...this.#pasters, ...[...this.#owners.values()].flat(), this.#agent, this.#daemon]
        .map((p) => p?.stop(2000)),
    );
    const port = this.#port;
    this.#port = undefined;
    if (port !== undefined) {
      await port.writer.close().catch(() => {});
      await port.proc.stop(2000);
    }
    await Promise.all(this.#oldPorts.map((p) => p.stop(1000)));
    await Promise.all([this.#uinputReader?.stop(1000), this.#xvfb?.stop(3000)]);
    await withTimeout(Promise.all([...this.#hostPumps]), 5000, "the relay's pumps");
    await withTimeout(this.#flushDone, 5000, "the relay's flush");
    await this.#guard?.done();
    if (this.dir !== "" && !this.#options.keepTempDir) {
      await Deno.remove(this.dir, { recursive: true }).catch(() => {});
    }
    liveDirs.delete(this.dir);
  }

  [Symbol.asyncDispose](): Promise<void> {
    return this.stop();
  }
}

function formatLine(line: LogLine): string {
  return `[${(line.t / 1000).toFixed(3)} ${line.src}] ${line.line}`;
}

/** Starts Xvfb, the pty "virtio port", spice-vdagentd and spice-vdagent in a fresh temp dir. */
export async function startGuestStack(options: GuestStackOptions = {}): Promise<GuestStack> {
  const stack = new Stack({
    debug: options.debug ?? true,
    startTimeoutMs: options.startTimeoutMs ?? 20_000,
    screen: options.screen ?? "1024x768x24",
    onHostDisconnect: options.onHostDisconnect ?? "keep-port",
    keepTempDir: options.keepTempDir ?? false,
    echoLogs: options.echoLogs ?? false,
    env: options.env ?? {},
  });
  try {
    await stack.start();
  } catch (error) {
    const log = stack.log();
    await stack.stop().catch(() => {});
    throw new Error(
      `Cannot start the guest stack: ${error instanceof Error ? error.message : error}\n` +
        `--- agent log ---\n${log}`,
    );
  }
  return stack;
}
