// vdagent-relay against a hostile guest and hostile or slow clients, measured: the relay's
// resident memory (VmRSS, Linux) while a guest floods it with grabs and standard output is not
// read, while a WebSocket client never reads, while a client sends one message in 1-byte
// fragments or a ping flood; the largest copy; the connection cap, the header timeout and
// accept errors. Written with node: modules only, so that the Deno relay (tests/cli/) and the
// npm package's Node bin (tests/node/) go through the same scenarios.
import assert from "node:assert/strict";
import { type ChildProcess, spawn } from "node:child_process";
import { mkdtemp, readdir, readFile, rm } from "node:fs/promises";
import { connect, createServer, type Server, type Socket } from "node:net";
import { tmpdir } from "node:os";
import { test } from "node:test";
import { join } from "node:path";
import process from "node:process";
import {
  ClipboardType,
  createGuestPipeline,
  encodeMessage,
  type GuestPipeline,
  type MessagePayload,
  Selection,
  type Transport,
} from "../mod.ts";
import {
  clientFrame,
  closeCode,
  closeReason,
  handshake,
  type ServerFrame,
  serverFrames,
} from "./_ws_frames.ts";
import { waitFor } from "./_helpers.ts";

export const MiB = 1024 * 1024;

// The bounds the tests hold the relay's RSS growth to (SECURITY.md gives them with the figures
// measured). Most of it is V8's garbage under a flood at full speed, not what the relay keeps:
// its queues hold at most 1 MiB in flight and 4 MiB (stdout) or 16 MiB (a client) waiting,
// beyond the largest event.
/** A grab flood of any length, standard output unread. */
export const GRAB_FLOOD_BOUND = 384 * MiB;
/** A client that never reads, pasting an 8 MiB clipboard (a 10.7 MiB event) 16 times a second. */
export const CLIENT_BOUND = 192 * MiB;
/** One 16 MiB message in 1-byte fragments (112 MiB on the wire). */
export const FRAGMENT_BOUND = 256 * MiB;
/** 100 MiB of pings, their pongs unread. */
export const PING_BOUND = 64 * MiB;

/** How to start the relay: a command and the arguments before the relay's own. */
export interface RelayCommand {
  command: string;
  args: string[];
  cwd?: string;
}

/** One event the relay printed. */
export type Event = { event: string; [field: string]: unknown };

/** Resident memory of process `pid`, in bytes. */
export async function rssOf(pid: number): Promise<number> {
  const status = await readFile(`/proc/${pid}/status`, "utf8");
  return Number(/VmRSS:\s+(\d+) kB/.exec(status)?.[1] ?? NaN) * 1024;
}

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

/** Resolves once `check` holds, looked at every 20 ms (for what no event announces); bounded. */
async function poll(check: () => boolean, what: string, timeoutMs: number): Promise<void> {
  const end = Date.now() + timeoutMs;
  while (!check()) {
    if (Date.now() > end) throw new Error(`no ${what} within ${timeoutMs} ms`);
    await sleep(20);
  }
}

/**
 * The relay as a process: its log, its events once standard output is read (it may stay
 * unread), its exit code, and the peak of its resident memory while sampled.
 */
export class Relay {
  readonly child: ChildProcess;
  readonly events: Event[] = [];
  stderr = "";
  exitCode: number | null | undefined;
  readonly exited: Promise<number | null>;
  /** The highest RSS sampled, and the RSS when sampling started. */
  peak = 0;
  baseline = 0;
  readonly #waiters = new Set<() => void>();
  #rest = "";
  #sampler: ReturnType<typeof setInterval> | undefined;

  constructor(relay: RelayCommand, args: string[], options: { readStdout?: boolean } = {}) {
    this.child = spawn(relay.command, [...relay.args, ...args], {
      cwd: relay.cwd,
      stdio: ["pipe", "pipe", "pipe"],
      env: { ...process.env, NO_COLOR: "1" },
    });
    this.child.stderr!.setEncoding("utf8").on("data", (text: string) => {
      this.stderr += text;
      this.#wake();
    });
    this.child.stdin!.on("error", () => {});
    this.exited = new Promise((resolve) =>
      this.child.once("exit", (code) => {
        this.exitCode = code;
        this.#wake();
        resolve(code);
      })
    );
    if (options.readStdout ?? true) this.readStdout();
  }

  get pid(): number {
    return this.child.pid!;
  }

  #wake(): void {
    for (const wake of this.#waiters) wake();
  }

  /** Starts reading standard output (left unread until then: the pipe fills). */
  readStdout(): void {
    this.child.stdout!.setEncoding("utf8").on("data", (text: string) => {
      const lines = (this.#rest + text).split("\n");
      this.#rest = lines.pop()!;
      for (const line of lines) this.events.push(JSON.parse(line));
      this.#wake();
    });
  }

  until<T>(check: () => T | undefined | false, what: string, timeoutMs = 20_000): Promise<T> {
    return waitFor(
      this.#waiters,
      () => {
        const value = check();
        if ((value === undefined || value === false) && this.exitCode !== undefined) {
          throw new Error(`the relay exited with ${this.exitCode} before ${what}:\n${this.stderr}`);
        }
        return value;
      },
      what,
      timeoutMs,
    );
  }

  next(event: string, match: (e: Event) => boolean = () => true, since = 0): Promise<Event> {
    return this.until(
      () => this.events.slice(since).find((e) => e.event === event && match(e)),
      `"${event}" event`,
    );
  }

  logged(re: RegExp, timeoutMs?: number): Promise<string> {
    return this.until(() => re.exec(this.stderr)?.[0], `log line ${re}`, timeoutMs);
  }

  send(command: object): void {
    this.child.stdin!.write(JSON.stringify(command) + "\n");
  }

  /** Samples RSS every 100 ms from now on; the first sample is the baseline. */
  async startSampling(): Promise<void> {
    this.baseline = this.peak = await rssOf(this.pid);
    this.#sampler = setInterval(() => void this.sample().catch(() => {}), 100);
  }

  async sample(): Promise<number> {
    const rss = await rssOf(this.pid);
    if (rss > this.peak) this.peak = rss;
    return rss;
  }

  /** Stops sampling (after one last sample); returns the peak over the baseline. */
  async stopSampling(): Promise<number> {
    clearInterval(this.#sampler);
    await this.sample().catch(() => {});
    return this.peak - this.baseline;
  }

  /**
   * SIGTERM; resolves once the relay exited, with whether it stopped as asked: it logged the
   * stop and nothing crashed. (Deno's node:child_process reports the signal sent rather than
   * the exit code of a child that handles it, so the log is what tells.)
   */
  async stop(): Promise<boolean> {
    if (this.exitCode === undefined) this.child.kill("SIGTERM");
    await this.exited;
    return /SIGTERM: no --state, so no checkpoint/.test(this.stderr) &&
      !/panicked|Uncaught|FATAL ERROR/.test(this.stderr);
  }

  async kill(): Promise<void> {
    clearInterval(this.#sampler);
    if (this.exitCode === undefined) this.child.kill("SIGKILL");
    await this.exited;
  }

  report(): string {
    return `--- stderr ---\n${this.stderr}--- events (${this.events.length}, last 20) ---\n${
      this.events.slice(-20).map((e) => JSON.stringify(e).slice(0, 200)).join("\n")
    }\n`;
  }
}

/** A temporary directory for the guest's socket; removed by `cleanup`. */
export async function tempDir(): Promise<{ dir: string; cleanup: () => Promise<void> }> {
  const dir = await mkdtemp(join(tmpdir(), "vdagent-relay-bounds-"));
  return { dir, cleanup: () => rm(dir, { recursive: true, force: true }) };
}

/** One chunk on port 1 holding one message of `type` with `payload`. */
function chunk(type: number, payload: Uint8Array): Uint8Array {
  const out = new Uint8Array(8 + 20 + payload.length);
  const view = new DataView(out.buffer);
  view.setUint32(0, 1, true);
  view.setUint32(4, 20 + payload.length, true);
  view.setUint32(8, 1, true);
  view.setUint32(12, type, true);
  view.setUint32(24, payload.length, true);
  out.set(payload, 28);
  return out;
}

const BOTH = { selection: true, grabSerial: true };

function message(payload: MessagePayload): Uint8Array {
  const m = encodeMessage(payload, BOTH);
  return chunk(m.type, m.data);
}

/**
 * A guest that does not play by the rules: it announces the Linux agent's caps, then writes
 * what it is told as fast as the relay takes it. It reads and drops what the relay sends.
 */
export class HostileGuest {
  readonly path: string;
  readonly #server: Server;
  #socket: Socket | undefined;
  readonly #waiters = new Set<() => void>();

  private constructor(path: string) {
    this.path = path;
    this.#server = createServer((socket) => {
      this.#socket = socket;
      socket.on("error", () => {});
      socket.resume(); // what the relay sends is dropped
      this.#wake();
    });
  }

  static async open(dir: string): Promise<HostileGuest> {
    const guest = new HostileGuest(join(dir, "hostile.sock"));
    await new Promise<void>((resolve) => guest.#server.listen(guest.path, resolve));
    return guest;
  }

  #wake(): void {
    for (const wake of this.#waiters) wake();
  }

  connected(): Promise<Socket> {
    return waitFor(this.#waiters, () => this.#socket, "relay connection", 20_000);
  }

  /** Announces the Linux agent's caps. */
  async announce(): Promise<void> {
    (await this.connected()).write(
      message({ kind: "announce_capabilities", request: false, caps: [0x00038de7] }),
    );
  }

  /**
   * Writes `batch(i)` for i = 0, 1, … for `ms` milliseconds, as fast as the socket takes
   * them; returns the bytes the socket took (written to the kernel) in that time.
   */
  async flood(batch: (i: number) => Uint8Array, ms: number): Promise<number> {
    const socket = await this.connected();
    const end = Date.now() + ms;
    let taken = 0;
    for (let i = 0; Date.now() < end; i++) {
      const bytes = batch(i);
      if (!socket.write(bytes, () => void (taken += bytes.length))) {
        // The relay stopped reading: wait for it, or for the end of the flood.
        await Promise.race([
          new Promise((resolve) => socket.once("drain", resolve)),
          sleep(Math.max(0, end - Date.now())),
        ]);
      }
    }
    return taken;
  }

  async close(): Promise<void> {
    this.#socket?.destroy();
    await new Promise<void>((resolve) => this.#server.close(() => resolve()));
  }
}

/** `n` CLIPBOARD grabs with serials from `first` on, in one buffer. */
export function grabs(first: number, n: number): Uint8Array {
  const one = message({ kind: "clipboard_grab", selection: 0, serial: 0, types: [1] });
  const out = new Uint8Array(one.length * n);
  for (let i = 0; i < n; i++) {
    out.set(one, i * one.length);
    // The serial: after the chunk (8) and message (20) headers and the selection word (4).
    new DataView(out.buffer).setUint32(i * one.length + 32, first + i, true);
  }
  return out;
}

/** `n` grabs too short to decode: each one a diagnostic event, none superseding another. */
export function invalidGrabs(n: number): Uint8Array {
  const one = chunk(7, new Uint8Array(2));
  const out = new Uint8Array(one.length * n);
  for (let i = 0; i < n; i++) out.set(one, i * one.length);
  return out;
}

/**
 * A socket as web streams, with backpressure both ways (written by hand: Deno's
 * `Duplex.toWeb` fails under this much traffic).
 */
function socketTransport(socket: Socket): Transport {
  const readable = new ReadableStream<Uint8Array>({
    start(controller) {
      socket.on("data", (bytes: Uint8Array) => {
        controller.enqueue(new Uint8Array(bytes));
        if ((controller.desiredSize ?? 0) <= 0) socket.pause();
      });
      socket.on("end", () => controller.close());
      socket.on("error", (error) => controller.error(error));
    },
    pull: () => void socket.resume(),
    cancel: () => void socket.destroy(),
  }, { highWaterMark: 1 });
  const writable = new WritableStream<Uint8Array>({
    write: (chunk) =>
      new Promise<void>((resolve, reject) =>
        socket.write(chunk, (error) => error ? reject(error) : resolve())
      ),
    close: () => new Promise<void>((resolve) => socket.end(resolve)),
    abort: () => void socket.destroy(),
  });
  return { readable, writable };
}

/** An in-process guest agent (the Linux agent's rules) behind a unix socket. */
export class Guest {
  readonly path: string;
  readonly data = new Map<string, Uint8Array>();
  readonly hostGrabs: number[] = [];
  guest: GuestPipeline | undefined;
  readonly #server: Server;
  readonly #waiters = new Set<() => void>();

  private constructor(path: string) {
    this.path = path;
    this.#server = createServer((socket) => {
      socket.on("error", () => {});
      this.guest = createGuestPipeline(socketTransport(socket), {
        clipboard: {
          onHostGrab: (selection) => {
            this.hostGrabs.push(selection);
            this.#wake();
          },
          provide: (selection, type) => this.data.get(`${selection}/${type}`),
        },
      });
      this.#wake();
    });
  }

  static async open(dir: string): Promise<Guest> {
    const guest = new Guest(join(dir, "guest.sock"));
    await new Promise<void>((resolve) => guest.#server.listen(guest.path, resolve));
    return guest;
  }

  #wake(): void {
    for (const wake of this.#waiters) wake();
  }

  connected(): Promise<GuestPipeline> {
    return waitFor(this.#waiters, () => this.guest, "relay connection", 20_000);
  }

  hostGrabbed(count: number): Promise<true> {
    return waitFor(this.#waiters, () => this.hostGrabs.length >= count, "host grab", 60_000);
  }

  async close(): Promise<void> {
    await this.guest?.close().catch(() => {});
    await new Promise<void>((resolve) => this.#server.close(() => resolve()));
  }
}

/** A raw WebSocket client: it reads only when told to. */
export class Client {
  readonly socket: Socket;
  #buffer = new Uint8Array(0);
  readonly frames: ServerFrame[] = [];
  head: string | undefined;
  ended = false;
  readonly #waiters = new Set<() => void>();

  private constructor(socket: Socket) {
    this.socket = socket;
    socket.on("error", () => {});
    socket.on("data", (bytes: Uint8Array) => {
      const joined = new Uint8Array(this.#buffer.length + bytes.length);
      joined.set(this.#buffer);
      joined.set(bytes, this.#buffer.length);
      this.#buffer = joined;
      this.#parse();
      this.#wake();
    });
    socket.on("close", () => {
      this.ended = true;
      this.#wake();
    });
  }

  /** Connects to the relay's WebSocket at `url` (the page's URL, with its token). */
  static async open(url: string, options: { read?: boolean } = {}): Promise<Client> {
    const { hostname, port, search } = new URL(url);
    const socket = connect({ host: hostname.replace(/^\[|\]$/g, ""), port: Number(port) });
    const client = new Client(socket);
    await new Promise((resolve) => socket.once("connect", resolve));
    socket.write(handshake(`${hostname}:${port}`, `/ws${search}`));
    await client.until(() => client.head, "handshake");
    if (!client.head!.startsWith("HTTP/1.1 101 ")) throw new Error(client.head);
    if (!(options.read ?? true)) socket.pause();
    return client;
  }

  #parse(): void {
    if (this.head === undefined) {
      const text = new TextDecoder("latin1").decode(this.#buffer);
      const end = text.indexOf("\r\n\r\n");
      if (end < 0) return;
      this.head = text.slice(0, end);
      this.#buffer = this.#buffer.subarray(end + 4);
    }
    const { frames, used } = serverFrames(this.#buffer);
    this.frames.push(...frames);
    this.#buffer = this.#buffer.subarray(used);
  }

  #wake(): void {
    for (const wake of this.#waiters) wake();
  }

  until<T>(check: () => T | undefined | false, what: string, timeoutMs = 20_000): Promise<T> {
    return waitFor(this.#waiters, check, what, timeoutMs);
  }

  /** The text messages' events. */
  get events(): Event[] {
    return this.frames.filter((f) => f.opcode === 1).map((f) =>
      JSON.parse(new TextDecoder().decode(f.payload))
    );
  }

  answer(id: string): Promise<Event> {
    return this.until(() => this.events.find((e) => e.id === id), `answer to ${id}`, 60_000);
  }

  send(command: object | string): void {
    const text = typeof command === "string" ? command : JSON.stringify(command);
    this.socket.write(clientFrame(1, new TextEncoder().encode(text)));
  }

  /** Starts reading (a client opened with `read: false`). */
  read(): void {
    this.socket.resume();
  }

  /** The close frame the relay sent, if any. */
  get closeFrame(): { code: number; reason: string } | undefined {
    const frame = this.frames.find((f) => f.opcode === 8);
    return frame === undefined
      ? undefined
      : { code: closeCode(frame.payload), reason: closeReason(frame.payload) };
  }

  destroy(): void {
    this.socket.destroy();
  }
}

/** What a scenario measured, for the test to check and print. */
export interface Measured {
  /** RSS over the baseline at its peak, in bytes. */
  growth: number;
  baseline: number;
  [figure: string]: number | string | boolean | undefined;
}

const mib = (bytes: number) => `${(bytes / MiB).toFixed(1)} MiB`;

/** One line of figures for the test's output. */
export function describe(name: string, measured: Measured): string {
  const figures = Object.entries(measured).map(([k, v]) =>
    `${k} ${typeof v === "number" && /growth|baseline|bytes/i.test(k) ? mib(v) : v}`
  );
  return `${name}: ${figures.join(", ")}`;
}

/**
 * A guest announces itself, then grabs as fast as it can (4 s), then sends grabs too short to
 * decode (3 s), each a diagnostic; nobody reads the relay's standard output meanwhile. The
 * grabs' offers supersede each other; the diagnostics fill standard output's queue and the
 * relay stops reading the guest. Then standard output is read: the relay still answers.
 */
export async function grabFloodWithStdoutUnread(relay: RelayCommand): Promise<Measured> {
  const { dir, cleanup } = await tempDir();
  const guest = await HostileGuest.open(dir);
  const running = new Relay(relay, ["--connect", `unix:${guest.path}`], { readStdout: false });
  try {
    await guest.connected();
    await running.logged(/starting fresh/);
    await running.startSampling();
    await guest.announce();
    const batch = 1600; // 64 000 bytes of grabs per write
    let batches = 0;
    const grabbed = await guest.flood((i) => (batches = i + 1, grabs(i * batch, batch)), 4000);
    const lastSerial = batches * batch - 1;
    const diagnosed = await guest.flood(() => invalidGrabs(2000), 3000);
    const growth = await running.stopSampling();
    running.readStdout();
    running.send({ cmd: "status", id: "alive" });
    await running.until(
      () => running.events.find((e) => e.id === "alive"),
      "status answer",
      60_000,
    );
    // Every grab reaches the relay in the end: the last offer is the guest's last grab.
    await running.until(
      () => running.events.filter((e) => e.event === "offer").at(-1)?.serial === lastSerial,
      `the offer of serial ${lastSerial}`,
      60_000,
    );
    const offers = running.events.filter((e) => e.event === "offer");
    const stopped = await running.stop();
    return {
      growth,
      baseline: running.baseline,
      grabBytesTaken: grabbed,
      invalidBytesTaken: diagnosed,
      offersSeen: offers.length,
      lastOfferSerial: offers.at(-1)?.serial as number,
      lastGrabSerialTaken: lastSerial,
      diagnosticsSeen: running.events.filter((e) => e.event === "diagnostic").length,
      stoppedCleanly: stopped,
    };
  } catch (error) {
    throw new Error(`${error}\n${running.report()}`);
  } finally {
    await running.kill();
    await guest.close();
    await cleanup();
  }
}

/** What a scenario with a listening relay gets. */
interface Listening {
  guest: Guest;
  running: Relay;
  /** The page's URL, with its token. */
  url: string;
  /** Clients and sockets to destroy at the end. */
  clients: Client[];
  sockets: Socket[];
}

/**
 * Runs `scenario` with a guest, a relay in front of it listening on loopback (negotiated
 * already), and cleans up; on failure the error carries the relay's log.
 */
async function withListeningRelay(
  relay: RelayCommand,
  scenario: (context: Listening) => Promise<Measured>,
): Promise<Measured> {
  const { dir, cleanup } = await tempDir();
  const guest = await Guest.open(dir);
  const running = new Relay(relay, ["--connect", `unix:${guest.path}`, "--listen", "127.0.0.1:0"]);
  const context: Listening = { guest, running, url: "", clients: [], sockets: [] };
  try {
    context.url = (await running.next("listening")).url as string;
    await running.next("caps");
    return await scenario(context);
  } catch (error) {
    throw new Error(`${error}\n${running.report()}`);
  } finally {
    for (const client of context.clients) client.destroy();
    for (const socket of context.sockets) socket.destroy();
    await running.kill();
    await guest.close();
    await cleanup();
  }
}

/**
 * A WebSocket client that never reads asks for an 8 MiB clipboard 16 times a second (4 s):
 * the relay closes it once its unread events pass its bound, and goes on serving the others.
 */
export function neverReadingClient(relay: RelayCommand): Promise<Measured> {
  return withListeningRelay(relay, async ({ guest, running, url, clients }) => {
    const text = new TextEncoder().encode("8 MiB of text ".repeat(8 * MiB / 14 + 1)).subarray(
      0,
      8 * MiB,
    );
    guest.data.set(`${Selection.CLIPBOARD}/${ClipboardType.UTF8_TEXT}`, text);
    (await guest.connected()).session.grab(Selection.CLIPBOARD, [ClipboardType.UTF8_TEXT]);
    await running.next("offer");
    await running.startSampling();
    const slow = await Client.open(url, { read: false });
    clients.push(slow);
    let asked = 0;
    const end = Date.now() + 4000;
    while (Date.now() < end && !slow.ended) {
      slow.send({ cmd: "paste", id: `p${asked++}` });
      await sleep(1000 / 16);
    }
    const dropped = await running.logged(/WebSocket client 1 fell behind[^\n]*/);
    const growth = await running.stopSampling();
    // The slow client reads at last: what reached it, then the end of the connection.
    slow.read();
    await slow.until(() => slow.ended, "the end of the slow client's connection");
    // Another client, and standard output, are served as before.
    const other = await Client.open(url);
    clients.push(other);
    other.send({ cmd: "paste", id: "other" });
    const data = await other.answer("other");
    running.send({ cmd: "paste", id: "stdout" });
    const mine = await running.until(() => running.events.find((e) => e.id === "stdout"), "paste");
    const stopped = await running.stop();
    return {
      growth,
      baseline: running.baseline,
      pastesAsked: asked,
      answersReceived: slow.events.filter((e) => e.event === "data").length,
      closeCode: slow.closeFrame?.code,
      closeReason: slow.closeFrame?.reason,
      dropLog: dropped,
      otherGotBytes: data.bytes as number,
      stdoutGotBytes: mine.bytes as number,
      stoppedCleanly: stopped,
    };
  });
}

/**
 * One 16 MiB copy command in 1-byte fragments (112 MiB on the wire), then 100 MiB of pings
 * whose pongs are not read: the relay holds the message once and one pong at a time.
 */
export function fragmentAndPingFlood(relay: RelayCommand): Promise<Measured> {
  return withListeningRelay(relay, async ({ guest, running, url, clients }) => {
    await running.startSampling();
    const client = await Client.open(url);
    clients.push(client);
    const json = new TextEncoder().encode(
      `{"cmd":"copy","id":"fragments","text":"${"f".repeat(16 * MiB - 40)}"}`,
    );
    // 7 bytes a fragment: header, mask, one byte.
    const wire = new Uint8Array(json.length * 7);
    for (let i = 0; i < json.length; i++) {
      wire[i * 7] = (i === 0 ? 1 : 0) | (i === json.length - 1 ? 0x80 : 0);
      wire[i * 7 + 1] = 0x81; // masked, 1 byte; mask 0
      wire[i * 7 + 6] = json[i]!;
    }
    for (let at = 0; at < wire.length; at += MiB) {
      if (!client.socket.write(wire.subarray(at, at + MiB))) {
        await new Promise((resolve) => client.socket.once("drain", resolve));
      }
    }
    const ok = await client.answer("fragments");
    await guest.hostGrabbed(1);
    const fragmentGrowth = await running.stopSampling();
    // Pings, their pongs unread.
    await running.startSampling();
    const pinger = await Client.open(url, { read: false });
    clients.push(pinger);
    const ping = clientFrame(9, new Uint8Array(125));
    const pings = new Uint8Array(ping.length * 8000);
    for (let i = 0; i < 8000; i++) pings.set(ping, i * ping.length);
    let sent = 0;
    const end = Date.now() + 10_000;
    while (sent < 100 * MiB && Date.now() < end) {
      const written = pinger.socket.write(pings);
      sent += pings.length;
      if (!written) {
        await Promise.race([
          new Promise((resolve) => pinger.socket.once("drain", resolve)),
          sleep(Math.max(0, end - Date.now())),
        ]);
      }
    }
    const pingGrowth = await running.stopSampling();
    client.send({ cmd: "status", id: "after" });
    await client.answer("after");
    const stopped = await running.stop();
    return {
      growth: Math.max(fragmentGrowth, pingGrowth),
      baseline: running.baseline,
      fragmentMessageBytes: json.length,
      fragmentWireBytes: wire.length,
      fragmentGrowth,
      copyAnswer: ok.event,
      pingBytesSent: sent,
      pingGrowth,
      stoppedCleanly: stopped,
    };
  });
}

/**
 * The largest copy a WebSocket message can carry (64 MiB, the default --max-clipboard, in
 * base64) goes through; a message one byte longer gets a MESSAGE_TOO_LONG error, and the
 * connection goes on.
 */
export function largestCopy(relay: RelayCommand): Promise<Measured> {
  return withListeningRelay(relay, async ({ guest, running, url, clients }) => {
    const limit = Math.ceil((64 * MiB * 4) / 3) + 64 * 1024;
    const base64 = "QUJD".repeat((64 * MiB - 1) / 3); // 64 MiB of data, less a byte
    const copy = `{"cmd":"copy","id":"largest","mime":"image/png","base64":"${base64}"}`;
    const client = await Client.open(url);
    clients.push(client);
    client.send(copy);
    const ok = await client.answer("largest");
    await guest.hostGrabbed(1);
    const over = `{"cmd":"copy","id":"over","text":"${"x".repeat(limit - 35)}"}`;
    client.send(over);
    const tooLong = await client.until(
      () => client.events.find((e) => e.code === "MESSAGE_TOO_LONG"),
      "MESSAGE_TOO_LONG",
      60_000,
    );
    client.send({ cmd: "status", id: "after" });
    await client.answer("after");
    const stopped = await running.stop();
    return {
      growth: 0,
      baseline: 0,
      limit,
      copyMessageBytes: copy.length,
      copyAnswer: ok.event,
      overMessageBytes: over.length,
      overAnswer: tooLong.message as string,
      stoppedCleanly: stopped,
    };
  });
}

/** A raw TCP connection to the relay's front, what came back on it, and whether it ended. */
interface RawConnection {
  socket: Socket;
  text(): string;
  ended(): boolean;
}

/** A raw TCP connection to the relay's front. */
async function rawConnection(url: string): Promise<RawConnection> {
  const { hostname, port } = new URL(url);
  const socket = connect({ host: hostname, port: Number(port) });
  let text = "";
  let ended = false;
  socket.setEncoding("latin1").on("data", (chunk: string) => void (text += chunk));
  socket.on("error", () => {});
  socket.on("close", () => void (ended = true));
  await new Promise((resolve, reject) => {
    socket.once("connect", resolve);
    socket.once("error", reject);
  });
  return { socket, text: () => text, ended: () => ended };
}

/** Open file descriptors of process `pid`. */
async function openFiles(pid: number): Promise<number> {
  return (await readdir(`/proc/${pid}/fd`)).length;
}

/** Sets process `pid`'s soft limit of open files. */
async function setFileLimit(pid: number, limit: number): Promise<void> {
  const child = spawn("prlimit", ["--pid", String(pid), `--nofile=${limit}:`]);
  const code = await new Promise((resolve) => child.once("exit", resolve));
  if (code !== 0) throw new Error(`prlimit exited with ${code}`);
}

/**
 * Idle and half-header connections past the cap of 64 get 503 at once, and those under it
 * 408 after the 10 s header timeout; with its file limit lowered under the cap, the relay's
 * accepts fail (EMFILE), it logs and retries, and it serves the page once files are free.
 */
export function connectionHygiene(relay: RelayCommand): Promise<Measured> {
  return withListeningRelay(relay, async ({ running, url, sockets }) => {
    // 64 idle (half of them with half a head), then 6 more.
    const idle: RawConnection[] = [];
    for (let i = 0; i < 70; i++) {
      const conn = await rawConnection(url);
      sockets.push(conn.socket);
      if (i % 2 === 1) conn.socket.write("GET / HTTP/1.1\r\nHost: 127");
      idle.push(conn);
    }
    const started = Date.now();
    await poll(() => idle.filter((c) => c.ended()).length >= 6, "6 refusals", 5000);
    const refused = idle.filter((c) => c.text().startsWith("HTTP/1.1 503 ")).length;
    await poll(() => idle.every((c) => c.ended()), "every idle connection closed", 30_000);
    const timedOut = idle.filter((c) => c.text().startsWith("HTTP/1.1 408 ")).length;
    const closedAfter = Date.now() - started;
    for (const socket of sockets.splice(0)) socket.destroy();

    // Accept errors: room for about 10 more files, and 30 connections. Deno's accept fails
    // with EMFILE and the front retries; Node's libuv accepts and closes what it has no file
    // for (its reserve-descriptor trick) and reports nothing.
    const files = await openFiles(running.pid);
    await setFileLimit(running.pid, files + 10);
    const crowd: RawConnection[] = [];
    for (let i = 0; i < 30; i++) {
      const conn = await rawConnection(url);
      sockets.push(conn.socket);
      crowd.push(conn);
    }
    await poll(
      () => /cannot accept a connection/.test(running.stderr) || crowd.some((c) => c.ended()),
      "a failed accept",
      10_000,
    );
    const failed = /cannot accept a connection: [^\n]*/.exec(running.stderr)?.[0] ??
      `${crowd.filter((c) => c.ended()).length} connections closed unanswered`;
    for (const socket of sockets.splice(0)) socket.destroy();
    await setFileLimit(running.pid, 4096);
    if (/cannot accept a connection/.test(running.stderr)) {
      await running.logged(/accepting connections again[^\n]*/, 10_000);
    }
    const page = await fetch(url);
    const pageStatus = page.status;
    await page.body?.cancel();
    const stopped = await running.stop();
    return {
      growth: 0,
      baseline: 0,
      refused503: refused,
      timedOut408: timedOut,
      closedAfterMs: closedAfter,
      acceptError: failed,
      pageStatus,
      stoppedCleanly: stopped,
    };
  });
}

/**
 * The scenarios as `node:test` tests of the relay `relay` runs, with their bounds; `runtime`
 * names it in the figures printed.
 */
export function boundsTests(runtime: string, relay: RelayCommand): void {
  const report = (name: string, measured: Measured) =>
    // deno-lint-ignore no-console
    console.error(describe(`${runtime} ${name}`, measured));
  test("vdagent-relay under a grab flood with standard output unread keeps its memory bounded, the latest offer, and stops reading the guest", async () => {
    const m = await grabFloodWithStdoutUnread(relay);
    report("grab flood, stdout unread", m);
    assert.ok(m.growth < GRAB_FLOOD_BOUND, `RSS grew by ${m.growth / MiB} MiB`);
    assert.ok(
      (m.grabBytesTaken as number) > 32 * MiB,
      "grabs superseding each other never stop the guest",
    );
    assert.equal(
      m.lastOfferSerial,
      m.lastGrabSerialTaken,
      "the last offer is the guest's last grab",
    );
    assert.ok((m.invalidBytesTaken as number) < 8 * MiB, "diagnostics stop the guest's reads");
    assert.equal(m.stoppedCleanly, true);
  });

  test("vdagent-relay closes a WebSocket client that never reads, within its bound, and serves the others", async () => {
    const m = await neverReadingClient(relay);
    report("never-reading client", m);
    assert.ok(m.growth < CLIENT_BOUND, `RSS grew by ${m.growth / MiB} MiB`);
    assert.match(m.dropLog as string, /over the limit of 16777216\): closing it/);
    if (m.closeCode !== undefined) assert.equal(m.closeCode, 1008); // if it got there at all
    assert.equal(m.otherGotBytes, 8 * MiB);
    assert.equal(m.stdoutGotBytes, 8 * MiB);
    assert.equal(m.stoppedCleanly, true);
  });

  test("vdagent-relay takes a message in 1-byte fragments and a ping flood with pongs unread within their bounds", async () => {
    const m = await fragmentAndPingFlood(relay);
    report("fragments and pings", m);
    assert.equal(m.copyAnswer, "ok");
    assert.ok(
      (m.fragmentGrowth as number) < FRAGMENT_BOUND,
      `${m.fragmentGrowth as number / MiB} MiB`,
    );
    assert.ok((m.pingBytesSent as number) >= 100 * MiB);
    assert.ok((m.pingGrowth as number) < PING_BOUND, `${m.pingGrowth as number / MiB} MiB`);
    assert.equal(m.stoppedCleanly, true);
  });

  test("vdagent-relay takes the largest copy over WebSocket, the same on Deno and Node, and refuses a byte more with MESSAGE_TOO_LONG", async () => {
    const m = await largestCopy(relay);
    report("largest copy", m);
    assert.equal(m.copyAnswer, "ok");
    assert.equal(m.overMessageBytes, (m.limit as number) + 1);
    assert.match(m.overAnswer as string, /over the limit of 89544022/);
    assert.equal(m.stoppedCleanly, true);
  });

  test("vdagent-relay caps open connections, times out heads, and survives failed accepts", async () => {
    const m = await connectionHygiene(relay);
    report("connections", m);
    assert.equal(m.refused503, 6);
    assert.equal(m.timedOut408, 64);
    assert.ok((m.closedAfterMs as number) >= 9_000, `${m.closedAfterMs} ms`);
    assert.match(m.acceptError as string, /Too many open files|closed unanswered/);
    assert.equal(m.pageStatus, 200);
    assert.equal(m.stoppedCleanly, true);
  });
}
