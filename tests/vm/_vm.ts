/**
 * The real-VM harness: the real Linux SPICE guest agent in a real QEMU guest, its
 * `com.redhat.spice.0` virtio-serial port exposed on the host as a unix socket, for tests that
 * need what the pty stand-in of `tests/interop/` cannot give: QEMU's own chardev deciding what
 * the guest sees when a host connects and disconnects, and real live migrations.
 *
 * ## The guest
 *
 * No disk image. `_build_guest.sh` (driven by `_build.ts`) builds
 *
 * - the kernel: Debian's, from the package behind `linux-image-amd64` (fetched once with
 *   `apt-get download`, about 71 MB). The uncompressed ELF is extracted from the bzImage and
 *   booted through its PVH entry: no real-mode setup, no decompressor, `/init` runs after about
 *   3 s under TCG;
 * - an initramfs (about 56 MiB, uncompressed cpio) holding busybox (from the installed
 *   `busybox-static`, or its downloaded package), the modules `virtio_pci virtio_console uinput
 *   evdev` and their dependencies, and this machine's own `spice-vdagentd`, `spice-vdagent`,
 *   `Xvfb`, `xkbcomp`, `xclip` and util-linux `setpriv` with every library `ldd` lists, plus the
 *   X keyboard, locale and font data and the gdk-pixbuf loaders. So the host must be a Debian 12
 *   x86_64 machine with `spice-vdagent xvfb xclip x11-xkb-utils` installed: the guest runs the
 *   very binaries `tests/interop/` runs without a VM.
 *
 * Everything lives in guest RAM. A 9p root would have been simpler but blocks migration (QEMU
 * 7.2: `Migration is disabled when VirtFS export path '...' is mounted in the guest`).
 *
 * `_guest_init.sh` is `/init`: it loads the modules, creates `/dev/virtio-ports/<name>` itself
 * (no udev), starts `Xvfb :0` as the user `guest` (uid 1000), `G_MESSAGES_DEBUG=all
 * spice-vdagentd -x -d -d -X` (the real `/dev/uinput`; `G_MESSAGES_DEBUG` adds lines such as
 * `grab discard, serial …` and `client grab wins`) and `spice-vdagent -x -d` as `guest`, and a
 * command agent on a second port; the logs of all of them go, one
 * `<guest uptime> <source>: <line>` per line, to a third port backed by a host file. The guest is
 * ready (`init: READY` in that log) once the daemon logged `opening vdagent virtio channel`.
 *
 * ## The cache
 *
 * `VDAGENT_VM_CACHE`, default `${XDG_CACHE_HOME:-$HOME/.cache}/vdagent-streams/vm`: the
 * downloaded packages in `debs/`, and one `guest-<hash>/` per set of inputs (the build script,
 * `/init`, the kernel package, busybox, and the size and mtime of every file copied into the
 * guest), so upgrading a package rebuilds the image (about 8 s) and nothing else does. Builds
 * and downloads go to temp dirs that are renamed into place, so concurrent runs are safe.
 * `VDAGENT_VM_KERNEL_DEB` and `VDAGENT_VM_BUSYBOX` (a static binary or a `.deb`) replace the
 * downloads on a machine without apt access.
 *
 * ## QEMU
 *
 * Per guest, in a private temp dir (`vdagent.sock`, `ctl.sock`, `qmp.sock`, `mig.sock`,
 * `guest.log`, `console.log`):
 *
 * ```
 * qemu-system-x86_64 -machine pc,accel=tcg -cpu max -m 512 -smp 1 -nodefaults -display none
 *   -kernel vmlinux -initrd initrd.cpio -append "console=ttyS0 … clocksource=hpet tsc=unstable"
 *   -serial file:console.log -device virtio-serial-pci,id=vser0,max_ports=8
 *   -chardev socket,id=vda,path=vdagent.sock,server=on,wait=off
 *   -device virtserialport,bus=vser0.0,nr=1,chardev=vda,name=com.redhat.spice.0
 *   -chardev socket,id=ctl,path=ctl.sock,… -device virtserialport,…,name=org.vdagent-streams.ctl
 *   -chardev file,id=log,path=guest.log -device virtserialport,…,name=org.vdagent-streams.log
 *   -qmp unix:qmp.sock,server=on,wait=off [-incoming unix:mig.sock [-S]]
 * ```
 *
 * `qemuVdagent` replaces the socket with QEMU's own agent,
 * `-chardev qemu-vdagent,id=vda,name=vdagent,clipboard=on,mouse=on` (it refuses to migrate).
 *
 * TCG, not KVM, unless `/dev/kvm` is real hardware virtualization (`kvm_intel` or `kvm_amd`
 * loaded, no `kvm_pvm`), or `VDAGENT_VM_ACCEL=kvm|tcg` says otherwise. Our build machines serve
 * `/dev/kvm` with kvm-pvm, a software nested hypervisor, on which Debian's kernel does not boot
 * (the bzImage never leaves its decompressor; the ELF stops on `KVM internal error … emulation
 * failure`). Under TCG the guest keeps time with the HPET: with the TSC, its calibration on a
 * loaded two-core host once gave a guest clock running 8 times too fast. On two cores a boot to
 * READY takes 6–10 s, a migration of the idle 512 MiB guest about 1 s.
 *
 * ## Boots: fresh, or from the booted-guest snapshot
 *
 * The first guest a process boots fresh (kernel, `/init`, READY) also saves its state at READY
 * into the image's directory in the cache (a migration to `exec:cat > state.bin`, about 185 MB
 * and 0.3 s, keyed by accelerator, RAM and QEMU build), before any host connected to any of its
 * ports, and then runs on. Later boots restore it instead: a QEMU with `-incoming` is fed the
 * file, and the guest is READY in about a second instead of 6–10 s. Such a guest is exactly the
 * saved one, resumed (its log starts with the saved boot's lines, which carry the restore's host
 * time; its uptime goes on from the save; every restored guest has the same pids); for the
 * guest it is as if it had been live-migrated once before any client connected, which changes
 * nothing the agent can see. `fresh: true` or `VDAGENT_VM_FRESH=1` boots the kernel; guests
 * with `qemuVdagent` always do ({@linkcode Guest.restored} says which).
 *
 * QEMU runs under a small `sh` that kills it and removes its temp dir when the test process's
 * pipe to it closes, so a test process that dies (even by SIGKILL) leaves no QEMU behind;
 * {@linkcode Guest.stop} quits it through QMP, and Deno's sanitizers check that everything was
 * awaited.
 *
 * ## What differs from the pty stand-in of tests/interop/
 *
 * - A host disconnect closes the guest's port: QEMU's socket chardev tells the guest, the daemon
 *   logs `AIIEEE lost spice client connection, reconnecting (err: )` 5–20 ms later, tells the
 *   session agent `client disconnected` (it drops the host's grabs and releases what its user
 *   offered), and reopens the port without announcing itself again. There is no "keep-port".
 *   Two exceptions, measured: a client that never wrote a byte since the daemon (re)opened its
 *   port goes unnoticed (the daemon takes 0-byte reads for "no host yet" until it read one),
 *   and so does the first client after the daemon opened its port if it leaves within about
 *   100 ms of receiving the guest's caps (at 300 ms and more it is seen): the daemon then logs
 *   `New client connected` for it after it left, and the next client's announcement gives
 *   `sent client disconnected` and `New client connected` with no port close.
 * - What the guest writes while no host is connected is held (the port is not writable) and
 *   delivered to the next client, in order, e.g. a grab made meanwhile, or the daemon's answer
 *   to a client that already left.
 * - What a new client writes before the daemon has processed the close of the previous
 *   connection can be lost with the old port (seen after live migrations).
 * - After a live migration the destination's port is closed for the guest if no client is
 *   connected to the destination's socket when the guest resumes there (`AIIEEE …`, then
 *   `client disconnected`), and stays open if one is, also when the destination was paused
 *   (`-S`) until `cont`; the guest's next writes go to that client. Bytes written to the
 *   source's socket after the source stopped are lost.
 * - The uinput device is the kernel's: its events are read from `/dev/input/eventN` of the
 *   `spice vdagent tablet` ({@linkcode Guest.captureInput}).
 *
 * ## Use
 *
 * ```ts ignore
 * await using guests = new Guests();
 * const [a, b] = await Promise.all([guests.boot("a"), guests.boot("b", { incoming: true })]);
 * const conn = await Deno.connect({ transport: "unix", path: a.vdagentSocket });
 * await a.copy("from the guest");                 // the guest user copies (xclip -i)
 * const pids = await a.agentPids();
 * const mark = a.mark();
 * const { downtimeMs } = await migrate(a, b);     // QMP migrate; b is now "the guest"
 * assert.deepEqual(await b.agentPids(), pids);    // the same agent, never restarted
 * await b.waitFor(/AIIEEE lost spice client/, { since: mark });   // the log goes on in b
 * conn.close();                                   // (the source's socket: dead since the STOP)
 * ```
 *
 * Environment: `VDAGENT_VM` (the gate, `_gate.ts`), `VDAGENT_VM_CACHE`, `VDAGENT_VM_ACCEL`,
 * `VDAGENT_VM_KERNEL_DEB`, `VDAGENT_VM_BUSYBOX`, `VDAGENT_VM_FRESH=1` (no snapshot),
 * `VDAGENT_VM_KEEP=1` (keep the temp dirs), `VDAGENT_VM_ECHO=1` (print every guest log line as
 * it arrives).
 *
 * @module
 */

import { ensureGuestImage, type GuestImage } from "./_build.ts";
import { Qmp, QmpError, type QmpEvent, withDeadline, writeAll } from "./_qmp.ts";

export { ensureGuestImage, type GuestImage, Qmp, QmpError, type QmpEvent };

/** An X selection, as xclip names it. */
export type SelectionName = "clipboard" | "primary" | "secondary";

/** Options of {@linkcode boot}. */
export interface BootOptions {
  /** A migration destination: `-incoming unix:<dir>/mig.sock`; nothing boots until then. */
  incoming?: boolean;
  /** With `incoming`: `-S`, the guest stays paused after a migration until `cont()`. */
  paused?: boolean;
  /** QEMU's own `-chardev qemu-vdagent` instead of the socket (there is no `vdagentSocket`). */
  qemuVdagent?: boolean;
  /** Guest RAM in MiB. Default 512. */
  memMb?: number;
  /** Budget from QEMU's start to READY. Default 120 000 ms. */
  readyTimeoutMs?: number;
  /** Default: {@linkcode pickAccel}. */
  accel?: "kvm" | "tcg";
  /**
   * Boot the kernel even if the booted-guest snapshot could be restored (see "Boots" in the
   * module documentation). `VDAGENT_VM_FRESH=1` makes every boot fresh. Guests with
   * `qemuVdagent` always boot fresh.
   */
  fresh?: boolean;
  /** Aborts the boot (QEMU is stopped). */
  signal?: AbortSignal;
}

/** Options of {@linkcode Guest.exec}. */
export interface ExecOptions {
  /** Run as root instead of the user `guest` (uid 1000, `DISPLAY=:0`, in its home). */
  root?: boolean;
  /**
   * The guest kills the script (SIGTERM) after this; what it started in the background runs
   * on. Default 30 000 ms.
   */
  timeoutMs?: number;
}

/** What a script run in the guest did. */
export interface ExecResult {
  /** Exit status; 143 when the guest killed it at the timeout. */
  code: number;
  stdout: Uint8Array;
  /** `stdout` as UTF-8. */
  text: string;
  stderr: string;
  timedOut: boolean;
  /** Round trip from the host's request to the answer. */
  ms: number;
}

/** Options of {@linkcode Guest.copy}. */
export interface CopyOptions {
  /** Default `"clipboard"`. */
  selection?: SelectionName;
  /** The X target xclip offers. Default `"UTF8_STRING"`; e.g. `"image/png"`. */
  target?: string;
}

/** Options of {@linkcode Guest.paste}. */
export interface PasteOptions {
  /** Default `"clipboard"`. */
  selection?: SelectionName;
  /** The X target asked for. Default `"UTF8_STRING"`; e.g. `"image/png"` or `"TARGETS"`. */
  target?: string;
  /** The guest kills xclip after this. Default 10 000 ms. */
  timeoutMs?: number;
}

/** What the guest user's `xclip -o` got. */
export interface PasteResult {
  /** xclip exited 0 before the timeout. */
  ok: boolean;
  code: number;
  timedOut: boolean;
  size: number;
  /** Hex SHA-256 of `bytes`. */
  sha256: string;
  bytes: Uint8Array;
  /** `bytes` as UTF-8. */
  text: string;
  stderr: string;
  ms: number;
}

/** A line of the guest's log port. */
export interface LogLine {
  /** Its position in the log: what {@linkcode Guest.mark} returns. */
  index: number;
  /** Guest uptime in seconds when the guest logged it (10 ms resolution). */
  uptime: number;
  /** `init`, `Xvfb`, `vdagentd`, `vdagent`, `ctl`, `note` (`vm-log TEXT` in the guest). */
  src: string;
  line: string;
  /** `performance.now()` when the host read it (the file is polled every 15 ms). */
  hostMs: number;
  /** The QEMU whose log file carried it (after a migration: the destination's name). */
  vm: string;
}

/** Where to look in the log. */
export interface LogQuery {
  /** First line index to look at (from {@linkcode Guest.mark}). Default 0. */
  since?: number;
  /** Only lines of this source. */
  src?: string;
}

/** Pids of the guest's agent processes (`pidof`), to check that none restarted. */
export interface AgentPids {
  vdagentd: number[];
  vdagent: number[];
  xvfb: number[];
}

/** A Linux `struct input_event` read from the guest's uinput device. */
export interface InputEvent {
  sec: number;
  usec: number;
  type: number;
  code: number;
  value: number;
}

/** Events of the `spice vdagent tablet`, read in the guest as root (`captureInput()`). */
export interface InputCapture {
  /** E.g. `"event1"`. */
  readonly device: string;
  /** Every event read so far. */
  events(): Promise<InputEvent[]>;
  /** Reads until `done(events)` holds; rejects after `timeoutMs` (default 5000). */
  waitFor(done: (events: InputEvent[]) => boolean, timeoutMs?: number): Promise<InputEvent[]>;
  /** Stops reading; resolves with every event read. Idempotent. */
  stop(): Promise<InputEvent[]>;
}

/** Options of {@linkcode migrate}. */
export interface MigrateOptions {
  /** `max-bandwidth` in bytes per second. Default 4 GiB/s (QEMU's default is 32 MiB/s). */
  maxBandwidth?: number;
  /** Budget for the migration. Default 120 000 ms. */
  timeoutMs?: number;
}

/** A completed live migration, with QEMU's own figures. */
export interface MigrationResult {
  status: "completed";
  /** QEMU's `total-time`. */
  totalTimeMs: number;
  /** QEMU's `downtime`: how long the guest was stopped. */
  downtimeMs: number;
  /** QEMU's `setup-time`. */
  setupTimeMs: number;
  /** `performance.now()` when `migrate` was sent, and when `query-migrate` first said completed. */
  startedMs: number;
  completedMs: number;
  /** `performance.now()` when the destination's command port was connected again. */
  handedOverMs: number;
  /** The last `query-migrate`. */
  info: Record<string, unknown>;
  /** The source's QMP events during the migration (MIGRATION, STOP, …). */
  events: QmpEvent[];
}

// input_event constants (linux/input-event-codes.h)
export const EV_SYN = 0, EV_KEY = 1, EV_REL = 2, EV_ABS = 3;
export const SYN_REPORT = 0, ABS_X = 0, ABS_Y = 1, REL_WHEEL = 8;
export const BTN_LEFT = 0x110, BTN_RIGHT = 0x111, BTN_MIDDLE = 0x112;

const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms));
const encoder = new TextEncoder();
const decoder = new TextDecoder();

/** Quotes a word for sh. */
export function shQuote(word: string): string {
  return `'${word.replaceAll("'", `'\\''`)}'`;
}

/** Hex SHA-256. */
export async function sha256(bytes: Uint8Array): Promise<string> {
  const digest = new Uint8Array(await crypto.subtle.digest("SHA-256", bytes as BufferSource));
  return [...digest].map((b) => b.toString(16).padStart(2, "0")).join("");
}

/** The events between SYN_REPORTs, empty frames left out. */
export function inputFrames(events: readonly InputEvent[]): InputEvent[][] {
  const frames: InputEvent[][] = [];
  let frame: InputEvent[] = [];
  for (const e of events) {
    if (e.type === EV_SYN && e.code === SYN_REPORT) {
      if (frame.length > 0) frames.push(frame);
      frame = [];
    } else {
      frame.push(e);
    }
  }
  if (frame.length > 0) frames.push(frame);
  return frames;
}

function exists(path: string): boolean {
  try {
    Deno.statSync(path);
    return true;
  } catch {
    return false;
  }
}

/**
 * `kvm` where `/dev/kvm` is usable and is real hardware virtualization (`kvm_intel` or
 * `kvm_amd`, not `kvm_pvm`), `tcg` otherwise; `VDAGENT_VM_ACCEL` overrides.
 */
export function pickAccel(): "kvm" | "tcg" {
  const env = Deno.env.get("VDAGENT_VM_ACCEL");
  if (env === "kvm" || env === "tcg") return env;
  if (env !== undefined && env !== "") {
    throw new RangeError(`VDAGENT_VM_ACCEL must be kvm or tcg, got "${env}"`);
  }
  if (exists("/sys/module/kvm_pvm")) return "tcg";
  if (!exists("/sys/module/kvm_intel") && !exists("/sys/module/kvm_amd")) return "tcg";
  try {
    Deno.openSync("/dev/kvm", { read: true, write: true }).close();
    return "kvm";
  } catch {
    return "tcg";
  }
}

// ---- the log port ---------------------------------------------------------------------------

const LOG_LINE = /^(\d+(?:\.\d+)?) ([^:]+): (.*)$/;

/** The guest's log: the lines of its log port's file, followed across a migration. */
class GuestLog {
  readonly lines: LogLine[] = [];
  readonly #waiters = new Set<() => void>();
  readonly #echo = Deno.env.get("VDAGENT_VM_ECHO") === "1";
  #file: Deno.FsFile | undefined;
  #vm = "";
  #rest = "";
  #decoder = new TextDecoder();
  #timer: ReturnType<typeof setInterval> | undefined;
  #polling: Promise<void> | undefined;
  #closed = false;

  /** Reads `path` (a QEMU `-chardev file`) from its start, and every 15 ms from then on. */
  async follow(path: string, vm: string): Promise<void> {
    this.#file = await Deno.open(path, { read: true });
    this.#vm = vm;
    this.#timer ??= setInterval(() => void this.poll(), 15);
  }

  /** Lines from another file first (a snapshot's log), as if `vm` had logged them now. */
  replay(text: string, vm: string): void {
    this.#vm = vm;
    this.#push(encoder.encode(text.endsWith("\n") || text === "" ? text : text + "\n"));
  }

  /** Reads what was appended since the last poll. */
  poll(): Promise<void> {
    this.#polling ??= this.#drain(this.#file).finally(() => (this.#polling = undefined));
    return this.#polling;
  }

  /** Reads the current file to its end and lets go of it (the guest writes elsewhere now). */
  async detach(): Promise<void> {
    while (this.#polling !== undefined) await this.#polling;
    const file = this.#file;
    this.#file = undefined;
    if (file === undefined) return;
    await this.#drain(file);
    file.close();
  }

  async close(): Promise<void> {
    clearInterval(this.#timer);
    this.#timer = undefined;
    await this.detach();
    this.#closed = true;
    for (const waiter of [...this.#waiters]) waiter();
  }

  async #drain(file: Deno.FsFile | undefined): Promise<void> {
    if (file === undefined) return;
    const buffer = new Uint8Array(65536);
    for (;;) {
      const n = await file.read(buffer);
      if (n === null || n === 0) break;
      this.#push(buffer.subarray(0, n));
    }
  }

  #push(bytes: Uint8Array): void {
    this.#rest += this.#decoder.decode(bytes, { stream: true });
    const parts = this.#rest.split("\n");
    this.#rest = parts.pop()!;
    if (parts.length === 0) return;
    const hostMs = performance.now();
    for (const raw of parts) {
      const m = LOG_LINE.exec(raw);
      const line: LogLine = {
        index: this.lines.length,
        uptime: m === null ? NaN : Number(m[1]),
        src: m === null ? "?" : m[2]!,
        line: m === null ? raw : m[3]!,
        hostMs,
        vm: this.#vm,
      };
      this.lines.push(line);
      if (this.#echo) {
        // deno-lint-ignore no-console
        console.error(formatLine(line));
      }
    }
    for (const waiter of [...this.#waiters]) waiter();
  }

  find(re: RegExp, query: LogQuery = {}): LogLine[] {
    return this.lines.slice(query.since ?? 0).filter((l) =>
      (query.src === undefined || l.src === query.src) && re.test(l.line)
    );
  }

  /** Resolves with the first matching line; `undefined` after `timeoutMs` or when closed. */
  wait(re: RegExp, query: LogQuery, timeoutMs: number): Promise<LogLine | undefined> {
    const hit = this.find(re, query)[0];
    if (hit !== undefined || this.#closed) return Promise.resolve(hit);
    return new Promise((resolve) => {
      const check = () => {
        const found = this.find(re, query)[0];
        if (found === undefined && !this.#closed) return;
        this.#waiters.delete(check);
        clearTimeout(timer);
        resolve(found);
      };
      const timer = setTimeout(() => {
        this.#waiters.delete(check);
        resolve(undefined);
      }, timeoutMs);
      this.#waiters.add(check);
    });
  }

  /** The last `n` lines, formatted. */
  tail(n = 25): string {
    return this.lines.slice(-n).map(formatLine).join("\n");
  }
}

function formatLine(l: LogLine): string {
  return `[${(l.hostMs / 1000).toFixed(3)} up ${l.uptime.toFixed(2)} ${l.vm}/${l.src}] ${l.line}`;
}

// ---- the command port -----------------------------------------------------------------------

interface RawAnswer {
  code: number;
  stdout: Uint8Array;
  stderr: Uint8Array;
}

interface Pending {
  what: string;
  put: boolean;
  /** Its bytes are being written. */
  sending: boolean;
  /** Its bytes were written. */
  sent: boolean;
  /** The guest said it read the script (`<id> +`). */
  acked: boolean;
  resolve(answer: RawAnswer): void;
  reject(error: Error): void;
  timer: ReturnType<typeof setTimeout>;
}

/**
 * The host side of the guest's command agent (protocol at the top of _guest_init.sh): requests
 * with ids, answers in any order. It outlives a QEMU: after a migration it is attached to the
 * destination's socket and what the guest answers from then on arrives there. Requests made
 * while it is held (during a migration) are sent once it is released.
 */
class CommandChannel {
  name: string;
  /** Context for error messages (the guest's log tail). */
  describe: () => string;
  readonly #pending = new Map<string, Pending>();
  #conn: Deno.UnixConn | undefined;
  #reader: Promise<void> | undefined;
  #writes: Promise<void> = Promise.resolve();
  #held: PromiseWithResolvers<void> | undefined;
  #partial: string[] = [];
  #seq = 0;
  #lastRead = 0;
  #closed: Error | undefined;

  constructor(name: string, describe: () => string) {
    this.name = name;
    this.describe = describe;
  }

  /** Connects to a `ctl.sock` (retrying while QEMU has not created it) and starts reading. */
  async attach(path: string, timeoutMs: number, alive: () => boolean): Promise<void> {
    const end = performance.now() + timeoutMs;
    for (;;) {
      try {
        this.#conn = await Deno.connect({ transport: "unix", path });
        break;
      } catch (error) {
        if (!alive() || performance.now() > end) {
          throw new Error(`guest ${this.name}: cannot connect to its command port: ${error}`);
        }
        await sleep(20);
      }
    }
    this.#reader = this.#read(this.#conn);
  }

  /** Waits until the connection was quiet for 100 ms (at most 2 s), then closes it. */
  async detach(): Promise<void> {
    const end = performance.now() + 2000;
    while (performance.now() - this.#lastRead < 100 && performance.now() < end) await sleep(20);
    const conn = this.#conn;
    this.#conn = undefined;
    try {
      conn?.close();
    } catch { /* closed */ }
    await this.#reader;
    this.#reader = undefined;
  }

  /** New requests wait (a migration is under way). */
  hold(): void {
    this.#held ??= Promise.withResolvers<void>();
  }

  release(): void {
    this.#held?.resolve();
    this.#held = undefined;
  }

  /**
   * Resolves once the guest has received everything sent so far: no write under way, every
   * script acknowledged, every file answered. Requests still queued (held) do not count.
   */
  async quiesce(timeoutMs: number): Promise<void> {
    const end = performance.now() + timeoutMs;
    const busy = () =>
      [...this.#pending.values()].filter((p) => p.sending || (p.sent && (p.put || !p.acked)));
    for (;;) {
      if (busy().length === 0) return;
      if (performance.now() > end) {
        throw new Error(
          `guest ${this.name}: the command port did not settle within ${timeoutMs} ms ` +
            `(${busy().map((p) => p.what).join(", ")})`,
        );
      }
      await sleep(10);
    }
  }

  /** Runs `script` in the guest. */
  exec(script: string, root: boolean, timeoutMs: number): Promise<RawAnswer> {
    const seconds = Math.max(0.1, timeoutMs / 1000).toFixed(3);
    const b64 = encoder.encode(script).toBase64();
    const what = `exec ${
      JSON.stringify(script.length > 60 ? script.slice(0, 57) + "..." : script)
    }`;
    return this.#request(what, false, timeoutMs + 10_000, (id) => {
      const line = encoder.encode(`${id} x ${root ? "r" : "u"} ${seconds} ${b64}\n`);
      return async (conn) => await writeAll(conn, line);
    });
  }

  /** Writes a file in the guest; nothing else is sent until the guest answered. */
  put(path: string, bytes: Uint8Array, root: boolean, timeoutMs: number): Promise<RawAnswer> {
    if (/\s/.test(path)) throw new TypeError(`put: no spaces in guest paths (${path})`);
    return this.#request(`put ${path} (${bytes.length} B)`, true, timeoutMs, (id, answered) => {
      const header = encoder.encode(`${id} p ${bytes.length} ${root ? "r" : "u"} ${path}\n`);
      return async (conn) => {
        await writeAll(conn, header);
        await writeAll(conn, bytes);
        await answered.catch(() => {});
      };
    });
  }

  /** Rejects every request and closes the connection. */
  async close(reason: Error): Promise<void> {
    this.#closed ??= reason;
    this.release();
    for (const id of [...this.#pending.keys()]) this.#settle(id, undefined, reason);
    const conn = this.#conn;
    this.#conn = undefined;
    try {
      conn?.close();
    } catch { /* closed */ }
    await this.#reader;
    await this.#writes;
  }

  #request(
    what: string,
    put: boolean,
    timeoutMs: number,
    write: (id: string, answered: Promise<RawAnswer>) => (conn: Deno.UnixConn) => Promise<void>,
  ): Promise<RawAnswer> {
    if (this.#closed !== undefined) return Promise.reject(this.#closed);
    const id = `c${++this.#seq}`;
    const answered = new Promise<RawAnswer>((resolve, reject) => {
      const timer = setTimeout(() => {
        this.#settle(
          id,
          undefined,
          new Error(
            `guest ${this.name}: no answer to ${what} within ${timeoutMs} ms\n${this.describe()}`,
          ),
        );
      }, timeoutMs);
      this.#pending.set(id, {
        what,
        put,
        sending: false,
        sent: false,
        acked: false,
        resolve,
        reject,
        timer,
      });
    });
    const step = write(id, answered);
    this.#writes = this.#writes.then(async () => {
      while (this.#held !== undefined) await this.#held.promise;
      const pending = this.#pending.get(id);
      if (pending === undefined) return; // timed out or closed meanwhile
      const conn = this.#conn;
      if (conn === undefined) throw new Error("not connected");
      pending.sending = true;
      try {
        await step(conn);
      } finally {
        pending.sending = false;
        pending.sent = true;
      }
    }).catch((error) => {
      this.#settle(id, undefined, new Error(`guest ${this.name}: cannot send ${what}: ${error}`));
    });
    return answered;
  }

  #settle(id: string, answer: RawAnswer | undefined, error?: Error): void {
    const pending = this.#pending.get(id);
    if (pending === undefined) return;
    this.#pending.delete(id);
    clearTimeout(pending.timer);
    if (answer !== undefined) pending.resolve(answer);
    else pending.reject(error ?? new Error("no answer"));
  }

  async #read(conn: Deno.UnixConn): Promise<void> {
    const buffer = new Uint8Array(256 * 1024);
    const text = new TextDecoder();
    try {
      for (;;) {
        const n = await conn.read(buffer);
        if (n === null) break;
        this.#lastRead = performance.now();
        const chunk = text.decode(buffer.subarray(0, n), { stream: true });
        let at = 0;
        let nl;
        while ((nl = chunk.indexOf("\n", at)) >= 0) {
          this.#partial.push(chunk.slice(at, nl));
          this.#line(this.#partial.join(""));
          this.#partial = [];
          at = nl + 1;
        }
        if (at < chunk.length) this.#partial.push(chunk.slice(at));
      }
    } catch { /* closed by us */ }
    if (this.#conn === conn && this.#closed === undefined) {
      // QEMU closed it: it exited
      await this.close(new Error(`guest ${this.name}: the command port closed (QEMU exited?)`));
    }
  }

  #line(line: string): void {
    const [id = "", status = "", out = "", err = ""] = line.split(" ");
    const pending = this.#pending.get(id);
    if (pending === undefined) return;
    if (status === "+") {
      pending.acked = true;
      return;
    }
    this.#settle(id, {
      code: Number(status),
      stdout: Uint8Array.fromBase64(out),
      stderr: Uint8Array.fromBase64(err),
    });
  }
}

// ---- QEMU -----------------------------------------------------------------------------------

/**
 * Runs QEMU (its argv after the script's name) with the test process's pipe as the script's
 * stdin: when that pipe closes (the guest was stopped, or the test process died), QEMU is
 * killed. `exec` keeps QEMU's pid the one Deno spawned.
 */
const WATCHDOG = `dir=$1; shift
exec 3<&0 </dev/null
( read -r _ <&3
  [ "$(cat /proc/$$/comm 2>/dev/null)" = qemu-system-x86 ] && kill -9 $$ 2>/dev/null
  [ -z "$dir" ] || { sleep 1; rm -rf "$dir"; } ) &
exec "$@" 3<&-
`;

const live = new Set<Guest>();
let unloadHooked = false;
function hookUnload(): void {
  if (unloadHooked) return;
  unloadHooked = true;
  globalThis.addEventListener("unload", () => {
    for (const guest of live) guest.killNow();
  });
}

type State = "booting" | "running" | "incoming" | "migrated" | "stopped";

/**
 * One QEMU and, while it runs the guest, the guest in it: its command port, its log, the guest
 * user's clipboard, its uinput device. Made by {@linkcode boot}. After {@linkcode migrate} the
 * destination's `Guest` carries on (command port, log, pids: the same guest) and the source's
 * throws if asked to do anything in the guest.
 */
export class Guest implements AsyncDisposable {
  readonly name: string;
  /** The private temp dir with the sockets and files. */
  readonly dir: string;
  readonly accel: "kvm" | "tcg";
  readonly memMb: number;
  readonly qemuVdagent: boolean;
  /** The agent port's socket (`-chardev socket,…,server=on,wait=off`); none with `qemuVdagent`. */
  readonly vdagentSocket: string;
  readonly qmpSocket: string;
  /** Where a migration into this guest goes (`-incoming unix:…`). */
  readonly migrationSocket: string;
  /** The serial console (kernel messages and init's). */
  readonly consoleLog: string;
  /** QMP, connected for the guest's lifetime. */
  qmp!: Qmp;
  /** Milliseconds from QEMU's start to READY (0 for a migration destination). */
  bootMs = 0;
  /** Whether the guest was restored from the booted-guest snapshot instead of booted. */
  restored = false;
  readonly #child: Deno.ChildProcess;
  readonly #stdin: WritableStreamDefaultWriter<Uint8Array>;
  readonly #status: Promise<Deno.CommandStatus>;
  readonly #stderrDone: Promise<void>;
  #stderr = "";
  #exited = false;
  #state: State;
  #migratedTo: Guest | undefined;
  /** A paused destination's command port, attached by `cont()` once the guest runs. */
  #attachOnCont: (() => Promise<void>) | undefined;
  #log: GuestLog | undefined;
  #ctl: CommandChannel | undefined;
  #stopDone: Promise<void> | undefined;
  #seq = 0;
  /** The snapshot's console, for a restored guest. */
  #consolePrefix = "";

  /** @internal Use {@linkcode boot}. */
  constructor(
    name: string,
    dir: string,
    image: GuestImage,
    options: BootOptions,
    restoring = false,
  ) {
    this.name = name;
    this.dir = dir;
    this.accel = options.accel ?? pickAccel();
    this.memMb = options.memMb ?? 512;
    this.qemuVdagent = options.qemuVdagent ?? false;
    this.vdagentSocket = `${dir}/vdagent.sock`;
    this.qmpSocket = `${dir}/qmp.sock`;
    this.migrationSocket = `${dir}/mig.sock`;
    this.consoleLog = `${dir}/console.log`;
    this.#state = options.incoming ? "incoming" : "booting";
    const tcg = this.accel === "tcg";
    const keep = Deno.env.get("VDAGENT_VM_KEEP") === "1";
    const port = (nr: number, chardev: string, name: string) => [
      "-device",
      `virtserialport,bus=vser0.0,nr=${nr},chardev=${chardev},name=${name}`,
    ];
    const args = [
      ...["-name", `vdagent-vm-${name}`, "-machine", `pc,accel=${this.accel}`],
      ...["-cpu", tcg ? "max" : "host", "-m", String(this.memMb), "-smp", "1"],
      ...["-nodefaults", "-display", "none", "-vga", "none", "-no-reboot"],
      ...["-kernel", image.kernel, "-initrd", image.initrd],
      "-append",
      `console=ttyS0 panic=-1 quiet loglevel=3${tcg ? " clocksource=hpet tsc=unstable" : ""}`,
      ...["-serial", `file:${this.consoleLog}`],
      ...["-device", "virtio-serial-pci,id=vser0,max_ports=8"],
      "-chardev",
      this.qemuVdagent
        ? "qemu-vdagent,id=vda,name=vdagent,clipboard=on,mouse=on"
        : `socket,id=vda,path=${this.vdagentSocket},server=on,wait=off`,
      ...port(1, "vda", "com.redhat.spice.0"),
      ...["-chardev", `socket,id=ctl,path=${dir}/ctl.sock,server=on,wait=off`],
      ...port(2, "ctl", "org.vdagent-streams.ctl"),
      ...["-chardev", `file,id=log,path=${dir}/guest.log`],
      ...port(3, "log", "org.vdagent-streams.log"),
      ...["-qmp", `unix:${this.qmpSocket},server=on,wait=off`],
      ...(options.incoming || restoring ? ["-incoming", `unix:${this.migrationSocket}`] : []),
      ...(options.incoming && options.paused ? ["-S"] : []),
    ];
    const child = new Deno.Command("sh", {
      args: ["-c", WATCHDOG, "vm-watchdog", keep ? "" : dir, "qemu-system-x86_64", ...args],
      stdin: "piped",
      stdout: "null",
      stderr: "piped",
    }).spawn();
    this.#child = child;
    this.#stdin = child.stdin.getWriter();
    this.#stdin.closed.catch(() => {});
    this.#status = child.status.then((status) => {
      this.#exited = true;
      return status;
    });
    this.#stderrDone = (async () => {
      const text = new TextDecoder();
      try {
        for await (const chunk of child.stderr) {
          this.#stderr = (this.#stderr + text.decode(chunk, { stream: true })).slice(-16384);
        }
      } catch { /* closed */ }
    })();
    live.add(this);
    hookUnload();
  }

  /** QEMU's pid. */
  get pid(): number {
    return this.#child.pid;
  }

  /** `"booting"`, `"running"`, `"incoming"` (destination), `"migrated"` (source), `"stopped"`. */
  get state(): State {
    return this.#state;
  }

  /** The guest this one was migrated to, if any. */
  get migratedTo(): Guest | undefined {
    return this.#migratedTo;
  }

  /** Whether QEMU still runs. */
  get alive(): boolean {
    return !this.#exited;
  }

  /** Resolves when QEMU exits. */
  get exited(): Promise<Deno.CommandStatus> {
    return this.#status;
  }

  // ---- boot ---------------------------------------------------------------------------------

  /**
   * @internal Connects QMP; unless a migration destination: boots to READY (and saves the
   * snapshot, if `saveTo`) or restores the snapshot in `restoreFrom`, then connects the command
   * port.
   */
  async start(
    options: BootOptions,
    snapshot: { restoreFrom?: string | undefined; saveTo?: string | undefined } = {},
  ): Promise<void> {
    const t0 = performance.now();
    const budget = options.readyTimeoutMs ?? 120_000;
    const end = t0 + budget;
    const alive = () => !this.#exited && !(options.signal?.aborted ?? false);
    this.qmp = await Qmp.connect(this.qmpSocket, { label: this.name, timeoutMs: 20_000, alive });
    if (this.#state === "incoming" || snapshot.restoreFrom !== undefined) {
      const status = await this.status();
      if (status !== "inmigrate") {
        throw new Error(`guest ${this.name}: expected status inmigrate, got ${status}`);
      }
    }
    if (this.#state === "incoming") return;
    const log = new GuestLog();
    this.#log = log;
    if (snapshot.restoreFrom !== undefined) {
      const from = snapshot.restoreFrom;
      log.replay(await Deno.readTextFile(`${from}/guest.log`), this.name);
      this.#consolePrefix = await Deno.readTextFile(`${from}/console.log`).catch(() => "");
      await this.#restore(`${from}/state.bin`, end, alive);
      await log.follow(`${this.dir}/guest.log`, this.name);
      this.restored = true;
    } else {
      await log.follow(`${this.dir}/guest.log`, this.name);
      let ready: LogLine | undefined;
      while (ready === undefined) {
        if (!alive()) {
          throw new Error(
            options.signal?.aborted ? "the boot was aborted" : "QEMU exited before READY",
          );
        }
        if (performance.now() > end) throw new Error(`not READY within ${budget} ms`);
        ready = await log.wait(/^(NOT )?READY/, { src: "init" }, 100);
      }
      if (ready.line.startsWith("NOT")) throw new Error(`the guest said: ${ready.line}`);
      if (snapshot.saveTo !== undefined) await this.#saveSnapshot(snapshot.saveTo);
    }
    const ctl = new CommandChannel(this.name, () => this.#context());
    await ctl.attach(`${this.dir}/ctl.sock`, 10_000, alive);
    this.#ctl = ctl;
    this.bootMs = performance.now() - t0;
    this.#state = "running";
  }

  /** Streams a saved state into this QEMU's `-incoming` socket; resolves once it runs. */
  async #restore(state: string, end: number, alive: () => boolean): Promise<void> {
    const conn = await Deno.connect({ transport: "unix", path: this.migrationSocket });
    const file = await Deno.open(state, { read: true });
    await file.readable.pipeTo(conn.writable); // closes both
    for (;;) {
      const status = await this.status();
      if (status === "running") return;
      if (status !== "inmigrate") throw new Error(`restoring ${state}: status ${status}`);
      if (!alive()) throw new Error(`QEMU exited while restoring ${state}`);
      if (performance.now() > end) throw new Error(`restoring ${state}: not running in time`);
      await sleep(10);
    }
  }

  /**
   * Saves the READY guest's state into `target` (a migration to `exec:cat > FILE`, about
   * 0.3 s; the guest stops meanwhile), with its log and console so far, then lets it run on.
   * A failure is reported and otherwise ignored: this boot is fine, the next boots fresh.
   */
  async #saveSnapshot(target: string): Promise<void> {
    const parent = target.slice(0, target.lastIndexOf("/"));
    const tmp = await Deno.makeTempDir({ dir: parent, prefix: ".snapshot-" });
    try {
      await this.qmp.execute("migrate-set-parameters", { "max-bandwidth": 4 * 1024 ** 3 });
      await this.qmp.execute("migrate", { uri: `exec:cat > ${shQuote(`${tmp}/state.bin`)}` });
      const end = performance.now() + 60_000;
      for (;;) {
        const info = await this.qmp.execute<Record<string, unknown>>("query-migrate");
        if (info.status === "completed" && (await this.status()) === "postmigrate") break;
        if (info.status === "failed" || info.status === "cancelled") {
          throw new Error(`migration to the file ${info.status}: ${info["error-desc"] ?? "?"}`);
        }
        if (performance.now() > end) throw new Error("the migration to the file takes too long");
        await sleep(10);
      }
      await this.qmp.execute("cont");
      await this.#log?.poll();
      await Deno.copyFile(`${this.dir}/guest.log`, `${tmp}/guest.log`);
      await Deno.copyFile(this.consoleLog, `${tmp}/console.log`);
      await Deno.rename(tmp, target).catch((error) => {
        if (!exists(`${target}/state.bin`)) throw error; // else: another run saved it first
      });
    } catch (error) {
      // deno-lint-ignore no-console
      console.error(`[vm] guest ${this.name}: no snapshot saved: ${error}`);
      await this.qmp.execute("migrate_cancel").catch(() => {});
      if (["postmigrate", "paused"].includes(await this.status().catch(() => ""))) {
        await this.qmp.execute("cont").catch(() => {});
      }
    } finally {
      await Deno.remove(tmp, { recursive: true }).catch(() => {});
    }
  }

  // ---- the guest's log ----------------------------------------------------------------------

  #logOrThrow(): GuestLog {
    if (this.#log !== undefined) return this.#log;
    if (this.#migratedTo !== undefined) return this.#migratedTo.#logOrThrow();
    throw new Error(`guest ${this.name}: no log (a migration destination before the migration)`);
  }

  /** The log so far (shared with the source after a migration: the guest's whole log). */
  logLines(): readonly LogLine[] {
    return this.#log?.lines ?? this.#migratedTo?.logLines() ?? [];
  }

  /** The current log position, for `since`. */
  mark(): number {
    return this.logLines().length;
  }

  /** Log lines matching `re`. */
  find(re: RegExp, query: LogQuery = {}): LogLine[] {
    return this.#logOrThrow().find(re, query);
  }

  /** Resolves with the first line matching `re`; rejects after `timeoutMs` (default 10 000). */
  async waitFor(re: RegExp, query: LogQuery & { timeoutMs?: number } = {}): Promise<LogLine> {
    const timeoutMs = query.timeoutMs ?? 10_000;
    const line = await this.#logOrThrow().wait(re, query, timeoutMs);
    if (line !== undefined) return line;
    throw new Error(
      `guest ${this.name}: no log line ${re}${query.src ? ` from ${query.src}` : ""} ` +
        `since line ${query.since ?? 0} within ${timeoutMs} ms\n${this.#context()}`,
    );
  }

  /** Reads the log file now instead of at the next poll. */
  async pollLog(): Promise<void> {
    await this.#log?.poll();
  }

  /** The log (from line `since`), formatted, one line per entry. */
  logText(since = 0): string {
    return this.logLines().slice(since).map(formatLine).join("\n");
  }

  /** The serial console's last lines (kernel messages, init). */
  consoleTail(lines = 15): string {
    let text = this.#consolePrefix;
    try {
      text += Deno.readTextFileSync(this.consoleLog);
    } catch { /* not yet */ }
    return text.trimEnd().split("\n").slice(-lines).join("\n") || "(no console output)";
  }

  /** What QEMU printed on stderr (its last 16 KiB). */
  get qemuStderr(): string {
    return this.#stderr;
  }

  #context(): string {
    const log = this.#log ?? (this.#migratedTo === undefined ? undefined : this.#migratedTo.#log);
    return `--- guest ${this.name} log (last lines) ---\n${log?.tail() ?? "(none)"}\n` +
      `--- console ---\n${this.consoleTail(8)}` +
      (this.#stderr.trim() ? `\n--- qemu stderr ---\n${this.#stderr.trim()}` : "");
  }

  /** Everything known about this guest, for a failure report. */
  dump(): string {
    return `=== guest ${this.name} (${this.#state}, ${this.accel}, ${this.dir}) ===\n` +
      `--- log ---\n${this.#log === undefined ? "(not following)" : this.logText()}\n` +
      `--- console ---\n${this.consoleTail(120)}\n--- qemu stderr ---\n${this.#stderr.trim()}`;
  }

  // ---- commands -----------------------------------------------------------------------------

  #channel(): CommandChannel {
    if (this.#ctl !== undefined && this.#state === "running") return this.#ctl;
    const why = this.#state === "migrated"
      ? `it was migrated to ${this.#migratedTo?.name}: use that guest`
      : this.#state === "incoming"
      ? "it is a migration destination; nothing runs in it before migrate() into it"
      : `it is ${this.#state}`;
    throw new Error(`guest ${this.name}: cannot run commands: ${why}`);
  }

  /** Runs `script` with sh in the guest, as the user `guest` (DISPLAY=:0) or as root. */
  async exec(script: string, options: ExecOptions = {}): Promise<ExecResult> {
    const t0 = performance.now();
    const answer = await this.#channel().exec(
      script,
      options.root ?? false,
      options.timeoutMs ?? 30_000,
    );
    return {
      code: answer.code,
      stdout: answer.stdout,
      text: decoder.decode(answer.stdout),
      stderr: decoder.decode(answer.stderr),
      timedOut: answer.code === 143,
      ms: performance.now() - t0,
    };
  }

  /** {@linkcode exec}, which must exit 0; resolves with its stdout as text. */
  async run(script: string, options: ExecOptions = {}): Promise<string> {
    const r = await this.exec(script, options);
    if (r.code !== 0) {
      throw new Error(
        `guest ${this.name}: exit ${r.code}${r.timedOut ? " (timed out)" : ""}: ${script}\n` +
          `stdout: ${r.text.slice(0, 2000)}\nstderr: ${r.stderr.slice(0, 2000)}`,
      );
    }
    return r.text;
  }

  /** Writes `data` to `path` in the guest, owned by `guest` (or root). No spaces in `path`. */
  async put(
    path: string,
    data: string | Uint8Array,
    options: { root?: boolean; timeoutMs?: number } = {},
  ): Promise<void> {
    const bytes = typeof data === "string" ? encoder.encode(data) : data;
    const answer = await this.#channel().put(
      path,
      bytes,
      options.root ?? false,
      options.timeoutMs ?? 60_000,
    );
    if (answer.code !== 0) {
      throw new Error(`guest ${this.name}: put ${path} failed: ${decoder.decode(answer.stderr)}`);
    }
  }

  /** The guest's uptime in seconds. */
  async uptime(): Promise<number> {
    return Number((await this.run("cat /proc/uptime")).split(" ")[0]);
  }

  /** Pids of spice-vdagentd, spice-vdagent and Xvfb. */
  async agentPids(): Promise<AgentPids> {
    const out = await this.run(
      'for p in spice-vdagentd spice-vdagent Xvfb; do echo "$p $(pidof $p)"; done',
      { root: true },
    );
    const pids = (name: string) =>
      (new RegExp(`^${name}(?: (.*))?$`, "m").exec(out)?.[1] ?? "").split(" ").filter((p) => p)
        .map(Number).sort((a, b) => a - b);
    return { vdagentd: pids("spice-vdagentd"), vdagent: pids("spice-vdagent"), xvfb: pids("Xvfb") };
  }

  // ---- the guest user's clipboard -----------------------------------------------------------

  /**
   * The guest user copies `data`: it is written to a file and `xclip -i` takes the selection
   * (xclip forks and keeps serving it, as a desktop application would).
   */
  async copy(data: string | Uint8Array, options: CopyOptions = {}): Promise<void> {
    const path = `/tmp/vm-copy-${++this.#seq}`;
    await this.put(path, data);
    await this.copyFile(path, options);
  }

  /** The guest user copies the contents of a file in the guest. */
  async copyFile(path: string, options: CopyOptions = {}): Promise<void> {
    const selection = options.selection ?? "clipboard";
    const target = options.target ?? "UTF8_STRING";
    await this.run(
      `xclip -selection ${selection} -t ${shQuote(target)} -i ${shQuote(path)} > /dev/null`,
    );
  }

  /** The guest user pastes (`xclip -o`); never rejects for xclip's failure or timeout. */
  async paste(options: PasteOptions = {}): Promise<PasteResult> {
    const selection = options.selection ?? "clipboard";
    const target = options.target ?? "UTF8_STRING";
    const timeoutMs = options.timeoutMs ?? 10_000;
    const seconds = Math.max(0.1, timeoutMs / 1000).toFixed(3);
    const r = await this.exec(
      `timeout ${seconds} xclip -o -selection ${selection} -t ${shQuote(target)}`,
      { timeoutMs: timeoutMs + 5000 },
    );
    return {
      ok: r.code === 0,
      code: r.code,
      timedOut: r.code === 143,
      size: r.stdout.length,
      sha256: await sha256(r.stdout),
      bytes: r.stdout,
      text: r.text,
      stderr: r.stderr.trim(),
      ms: r.ms,
    };
  }

  /** The X targets the owner of `selection` offers (`xclip -o -t TARGETS`); `[]` if none. */
  async targets(selection: SelectionName = "clipboard", timeoutMs = 5000): Promise<string[]> {
    const r = await this.paste({ selection, target: "TARGETS", timeoutMs });
    if (!r.ok) return [];
    return r.text.split("\n").map((t) => t.trim()).filter((t) => t.length > 0);
  }

  /**
   * Who owns `selection` in the guest's X server: `"agent"` (spice-vdagent, i.e. a host grab is
   * in effect: GTK offers MULTIPLE, xclip does not), `"xclip"` (the guest user's copy) or
   * `"none"`.
   */
  async owner(selection: SelectionName = "clipboard"): Promise<"agent" | "xclip" | "none"> {
    const targets = await this.targets(selection);
    if (targets.length === 0) return "none";
    return targets.includes("MULTIPLE") ? "agent" : "xclip";
  }

  /**
   * Polls the targets of `selection` until `owner` owns it (and offers `target`, if given);
   * resolves with the targets. For a host grab: the agent took it and a paste now reaches the
   * host.
   */
  async waitForOwner(
    selection: SelectionName,
    owner: "agent" | "xclip" | "none",
    options: { target?: string; timeoutMs?: number } = {},
  ): Promise<string[]> {
    const timeoutMs = options.timeoutMs ?? 10_000;
    const end = performance.now() + timeoutMs;
    for (;;) {
      const targets = await this.targets(selection);
      const who = targets.length === 0 ? "none" : targets.includes("MULTIPLE") ? "agent" : "xclip";
      if (who === owner && (options.target === undefined || targets.includes(options.target))) {
        return targets;
      }
      if (performance.now() > end) {
        throw new Error(
          `guest ${this.name}: ${selection} not owned by ${owner}` +
            `${options.target ? ` with ${options.target}` : ""} within ${timeoutMs} ms ` +
            `(targets: ${targets.join(",") || "none"})\n${this.#context()}`,
        );
      }
      await sleep(30);
    }
  }

  // ---- the uinput device --------------------------------------------------------------------

  /**
   * Starts reading the `spice vdagent tablet`'s `/dev/input/eventN` in the guest (as root);
   * resolves once the reader has the device open.
   */
  async captureInput(): Promise<InputCapture> {
    const file = `/run/vm-input-${++this.#seq}.bin`;
    const out = await this.run(
      `dev=$(awk '/^N: Name="spice vdagent tablet"/ { f = 1 } ` +
        `f && /^H:/ { for (i = 1; i <= NF; i++) if ($i ~ /^event/) print $i; exit }' ` +
        `/proc/bus/input/devices)
[ -n "$dev" ] || { echo "no spice vdagent tablet in /proc/bus/input/devices" >&2; exit 1; }
cat /dev/input/$dev > ${file} 2> /dev/null &
pid=$!
i=0
until ls -l /proc/$pid/fd 2> /dev/null | grep -q "/dev/input/$dev$"; do
  i=$((i + 1)); [ $i -lt 500 ] || { echo "cat did not open /dev/input/$dev" >&2; exit 1; }
  sleep 0.01
done
echo "$dev $pid"`,
      { root: true },
    );
    const [device = "", pid = ""] = out.trim().split(" ");
    const read = async (script: string) =>
      parseInputEvents(Uint8Array.fromBase64((await this.run(script, { root: true })).trim()));
    let stopped: InputEvent[] | undefined;
    return {
      device,
      events: () => stopped ? Promise.resolve(stopped) : read(`base64 -w0 ${file}`),
      waitFor: async (done, timeoutMs = 5000) => {
        const end = performance.now() + timeoutMs;
        let events: InputEvent[] = [];
        while (!done(events = stopped ?? await read(`base64 -w0 ${file}`))) {
          if (performance.now() > end) {
            throw new Error(
              `guest ${this.name}: /dev/input/${device}: not the events expected within ` +
                `${timeoutMs} ms; got ${
                  JSON.stringify(events.map((e) => [e.type, e.code, e.value]))
                }\n${this.#context()}`,
            );
          }
          await sleep(50);
        }
        return events;
      },
      stop: async () => {
        stopped ??= await read(`kill ${pid}; base64 -w0 ${file}; rm -f ${file}`);
        return stopped;
      },
    };
  }

  // ---- QEMU ---------------------------------------------------------------------------------

  /** QMP `cont`: a guest started paused (`-S`) runs. */
  async cont(): Promise<void> {
    await this.qmp.execute("cont");
    const attach = this.#attachOnCont;
    this.#attachOnCont = undefined;
    if (attach === undefined) return;
    for (let t = 0; (await this.status()) !== "running"; t++) {
      if (t > 400) throw new Error(`guest ${this.name}: not running after cont`);
      await sleep(25);
    }
    await attach();
  }

  /** QMP `query-status`'s status, e.g. `"running"`, `"paused"`, `"inmigrate"`, `"postmigrate"`. */
  async status(): Promise<string> {
    return (await this.qmp.execute<{ status: string }>("query-status")).status;
  }

  /**
   * Live-migrates this guest into `to` (booted with `incoming`); see {@linkcode migrate}.
   * Rejects with a {@linkcode QmpError} when QEMU refuses (e.g. a migration blocker).
   */
  async migrateTo(to: Guest, options: MigrateOptions = {}): Promise<MigrationResult> {
    if (this.#state !== "running" || this.#ctl === undefined || this.#log === undefined) {
      throw new Error(`migrate: the source ${this.name} is ${this.#state}, not running`);
    }
    if (to.#state !== "incoming") {
      throw new Error(`migrate: the destination ${to.name} is ${to.#state}, not incoming`);
    }
    const timeoutMs = options.timeoutMs ?? 120_000;
    const qmp = this.qmp;
    await qmp.execute("migrate-set-capabilities", {
      capabilities: [{ capability: "events", state: true }],
    });
    await qmp.execute("migrate-set-parameters", {
      "max-bandwidth": options.maxBandwidth ?? 4 * 1024 ** 3,
    });
    const ctl = this.#ctl;
    const log = this.#log;
    // Nothing may be left in the source's command socket: it would be lost with the source.
    ctl.hold();
    let info: Record<string, unknown> = {};
    const since = qmp.events.length;
    let startedMs = 0;
    let completedMs = 0;
    try {
      await ctl.quiesce(5000);
      startedMs = performance.now();
      await qmp.execute("migrate", { uri: `unix:${to.migrationSocket}` });
      const end = startedMs + timeoutMs;
      for (;;) {
        info = await qmp.execute<Record<string, unknown>>("query-migrate");
        if (["completed", "failed", "cancelled"].includes(String(info.status))) {
          completedMs = performance.now();
          break;
        }
        if (performance.now() > end) {
          await qmp.execute("migrate_cancel").catch(() => {});
          throw new Error(
            `migrate ${this.name} → ${to.name}: not completed within ${timeoutMs} ms ` +
              `(${JSON.stringify(info)})\n${this.#context()}`,
          );
        }
        await sleep(10);
      }
      if (info.status === "completed") {
        // QEMU 7.2 says completed before it has computed total-time and downtime (they read
        // 0 until then); they are set by the time the source's run state is postmigrate.
        while ((await this.status()) !== "postmigrate") {
          if (performance.now() > end) throw new Error(`migrate: ${this.name} not postmigrate`);
          await sleep(5);
        }
        info = await qmp.execute<Record<string, unknown>>("query-migrate");
        // The source completes before the destination has loaded the last of the state.
        while ((await to.status()) === "inmigrate") {
          if (performance.now() > end) throw new Error(`migrate: ${to.name} still inmigrate`);
          await sleep(5);
        }
      } else {
        throw new Error(
          `migrate ${this.name} → ${to.name}: ${info.status}: ${info["error-desc"] ?? "?"}\n` +
            this.#context(),
        );
      }
    } catch (error) {
      ctl.release();
      throw error;
    }
    // The guest now runs in `to`: its log goes on in to's file, its command agent answers on
    // to's socket (it reads EOF while no host is connected there, then carries on).
    await log.detach();
    await log.follow(`${to.dir}/guest.log`, to.name);
    to.#log = log;
    this.#log = undefined;
    await ctl.detach();
    ctl.name = to.name;
    ctl.describe = () => to.#context();
    const attach = async () => {
      try {
        await ctl.attach(`${to.dir}/ctl.sock`, 10_000, () => to.alive);
      } finally {
        ctl.release();
      }
    };
    // Nothing connects to a destination paused after its migration (-S) before it runs: see
    // hand_off_test.ts. Its commands wait until cont().
    if ((await to.status()) === "paused") to.#attachOnCont = attach;
    else await attach();
    to.#ctl = ctl;
    this.#ctl = undefined;
    to.#state = "running";
    this.#state = "migrated";
    this.#migratedTo = to;
    return {
      status: "completed",
      totalTimeMs: Number(info["total-time"]),
      downtimeMs: Number(info["downtime"]),
      setupTimeMs: Number(info["setup-time"]),
      startedMs,
      completedMs,
      handedOverMs: performance.now(),
      info,
      events: qmp.events.slice(since),
    };
  }

  // ---- stop ---------------------------------------------------------------------------------

  /**
   * Quits QEMU (QMP `quit`, SIGKILL after 5 s), awaits it and everything read from it, and
   * removes the temp dir (kept with `VDAGENT_VM_KEEP=1`). Idempotent.
   */
  stop(): Promise<void> {
    this.#stopDone ??= this.#stop(false);
    return this.#stopDone;
  }

  /** Like {@linkcode stop}, but SIGKILLs QEMU at once (a host crash, as the guest sees it). */
  kill(): Promise<void> {
    this.#stopDone ??= this.#stop(true);
    return this.#stopDone;
  }

  /** @internal SIGKILL now, synchronously (the test process is unloading). */
  killNow(): void {
    if (this.#exited) return;
    try {
      Deno.kill(this.#child.pid, "SIGKILL");
    } catch { /* gone */ }
  }

  async #stop(kill: boolean): Promise<void> {
    const stopped = new Error(`guest ${this.name} was stopped`);
    this.#state = "stopped";
    await this.#ctl?.close(stopped);
    await this.#log?.close();
    if (kill) {
      this.killNow();
    } else if (!this.#exited && this.qmp !== undefined && !this.qmp.closed) {
      await this.qmp.execute("quit", undefined, { timeoutMs: 2000 }).catch(() => {});
    }
    const exited = await withDeadline(this.#status, 5000, "QEMU to quit").then(
      () => true,
      () => false,
    );
    if (!exited) this.killNow();
    await withDeadline(this.#status, 10_000, `QEMU of ${this.name} to exit after SIGKILL`);
    await this.#stdin.close().catch(() => {});
    await withDeadline(this.#stderrDone, 5000, "QEMU's stderr").catch(() => {});
    await this.qmp?.close();
    live.delete(this);
    if (Deno.env.get("VDAGENT_VM_KEEP") === "1") {
      // deno-lint-ignore no-console
      console.error(`[vm] kept ${this.dir}`);
    } else {
      await Deno.remove(this.dir, { recursive: true }).catch(() => {});
    }
  }

  [Symbol.asyncDispose](): Promise<void> {
    return this.stop();
  }
}

/** Parses `struct input_event` records (x86_64: 16 bytes of timeval, u16 type, u16 code, s32). */
export function parseInputEvents(bytes: Uint8Array): InputEvent[] {
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const events: InputEvent[] = [];
  for (let at = 0; at + 24 <= bytes.length; at += 24) {
    events.push({
      sec: Number(view.getBigInt64(at, true)),
      usec: Number(view.getBigInt64(at + 8, true)),
      type: view.getUint16(at + 16, true),
      code: view.getUint16(at + 18, true),
      value: view.getInt32(at + 20, true),
    });
  }
  return events;
}

/**
 * Boots a guest named `name` in a private temp dir: builds or takes the image from the cache,
 * starts QEMU and, unless `incoming`, resolves once the guest is READY (its agent opened its
 * port) and the command port answers. On failure QEMU is stopped and the error carries the
 * guest's log and console.
 */
export async function boot(name: string, options: BootOptions = {}): Promise<Guest> {
  if (!/^[a-z0-9-]+$/.test(name)) throw new TypeError(`boot: bad guest name ${name}`);
  if (options.paused && !options.incoming) throw new TypeError("boot: paused needs incoming");
  const image = await ensureGuestImage();
  options.signal?.throwIfAborted();
  const dir = await Deno.makeTempDir({ prefix: `vdagent-vm-${name}-` });
  if (`${dir}/vdagent.sock`.length > 100) {
    await Deno.remove(dir, { recursive: true });
    throw new Error(`boot: ${dir} is too long for unix socket paths (set TMPDIR)`);
  }
  const accel = options.accel ?? pickAccel();
  const memMb = options.memMb ?? 512;
  let restoreFrom: string | undefined;
  let saveTo: string | undefined;
  if (
    !options.incoming && !options.qemuVdagent && !options.fresh &&
    Deno.env.get("VDAGENT_VM_FRESH") !== "1"
  ) {
    const snapshot = await snapshotDir(image, accel, memMb);
    if (exists(`${snapshot}/state.bin`)) {
      restoreFrom = snapshot;
    } else if (!savingSnapshots.has(snapshot)) {
      savingSnapshots.add(snapshot); // one boot of this process saves it, the others boot too
      saveTo = snapshot;
    }
  }
  const guest = new Guest(
    name,
    dir,
    image,
    { ...options, accel, memMb },
    restoreFrom !== undefined,
  );
  const onAbort = () => guest.killNow();
  options.signal?.addEventListener("abort", onAbort);
  try {
    await guest.start(options, { restoreFrom, saveTo });
  } catch (error) {
    await guest.pollLog().catch(() => {});
    const context = guest.dump();
    await guest.stop();
    if (options.signal?.aborted) throw new Error(`boot ${name}: aborted`, { cause: error });
    throw new Error(
      `boot ${name}: ${error instanceof Error ? error.message : error}\n${context}`,
      { cause: error },
    );
  } finally {
    options.signal?.removeEventListener("abort", onAbort);
    if (saveTo !== undefined) savingSnapshots.delete(saveTo);
  }
  return guest;
}

// ---- the booted-guest snapshot ----------------------------------------------------------------

const savingSnapshots = new Set<string>();
let qemuVersion: Promise<string> | undefined;

/** Where the snapshot of a READY guest of `image` lives, per accelerator, RAM and QEMU build. */
async function snapshotDir(image: GuestImage, accel: string, memMb: number): Promise<string> {
  qemuVersion ??= new Deno.Command("qemu-system-x86_64", {
    args: ["--version"],
    stdin: "null",
    stdout: "piped",
    stderr: "null",
  }).output().then((out) => {
    const first = new TextDecoder().decode(out.stdout).split("\n")[0] ?? "";
    return first.replace(/^QEMU emulator version /, "").replace(/[^A-Za-z0-9.+~-]+/g, "_")
      .replace(/^_+|_+$/g, "");
  });
  return `${image.dir}/snapshot-${accel}-${memMb}m-qemu-${await qemuVersion}`;
}

/**
 * Live-migrates `from` into `to` (booted with `incoming`) over a unix socket, with QMP `migrate`
 * on the source, and waits until `query-migrate` says completed. Then `to` is the guest: its
 * command port is connected and its log goes on where `from`'s stopped (the same `LogLine`
 * indices, so marks taken on `from` hold on `to`); `from` stays in QEMU's `postmigrate` state
 * until stopped. Requests made during the migration wait for the destination. What the test's
 * own connections (the agent socket) do is up to the test.
 */
export function migrate(
  from: Guest,
  to: Guest,
  options: MigrateOptions = {},
): Promise<MigrationResult> {
  return from.migrateTo(to, options);
}

/**
 * The guests of one test: boots them, and stops every one (those still booting too) when
 * disposed, so a failing test leaves no QEMU behind.
 */
export class Guests implements AsyncDisposable {
  readonly all: Guest[] = [];
  readonly #booting = new Set<Promise<unknown>>();
  readonly #abort = new AbortController();

  /** {@linkcode boot}, tracked. */
  async boot(name: string, options: BootOptions = {}): Promise<Guest> {
    const booting = boot(name, { ...options, signal: this.#abort.signal });
    this.#booting.add(booting);
    try {
      const guest = await booting;
      this.all.push(guest);
      return guest;
    } finally {
      this.#booting.delete(booting);
    }
  }

  /** Every guest's log, console and QEMU stderr. */
  dump(): string {
    return this.all.map((g) => g.dump()).join("\n");
  }

  /** Aborts boots under way and stops every guest. */
  async stop(): Promise<void> {
    this.#abort.abort();
    await Promise.allSettled([...this.#booting]);
    await Promise.all(this.all.map((g) => g.stop()));
  }

  [Symbol.asyncDispose](): Promise<void> {
    return this.stop();
  }
}
