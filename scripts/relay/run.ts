// The relay's life, from the command line to the exit code, against a small platform interface
// that the Deno entry (scripts/relay.ts) and the Node entry (scripts/relay/node_main.ts) fill in.
import { decodeCheckpoint, encodeCheckpoint, StateCheckpoint } from "../../mod.ts";
import {
  type ConnectTarget,
  describeTarget,
  parseRelayArgs,
  type RelayArgs,
  USAGE,
  UsageError,
} from "./args.ts";
import { CommandError, type CommandId } from "./protocol.ts";
import { Broadcaster, EventQueue, readWhenRoom } from "./event_queue.ts";
import { type ProcessInfo, watchLaunchers } from "./launcher.ts";
import { listen, listenToken } from "./listen.ts";
import { errorEvent, RelayCore, type RelayEvent } from "./relay_core.ts";
import {
  encodeStateFile,
  importStateKey,
  maxStateFileSize,
  type RelayState,
  type StateKey,
} from "./state_file.ts";
import { type LockHolder, type StateFiles, StateStore } from "./state_store.ts";
import type { ServeHandlers, WebServer } from "./web.ts";

/** A connection to the guest's port. */
export interface Connection {
  /** Bytes from the guest. */
  readable: ReadableStream<Uint8Array>;
  /** Bytes to the guest. */
  writable: WritableStream<Uint8Array>;
  /** Ends the writable side only: the peer can still send what it has. */
  closeWrite(): void | Promise<void>;
  /** Closes the connection for good. */
  close(): void;
}

/** What the relay needs from its runtime. */
export interface RelayPlatform {
  /** The command-line arguments. */
  args: readonly string[];
  /** Connects to the guest's port. */
  connect(target: ConnectTarget): Promise<Connection>;
  /** The files of `--state` and `--key-file`. */
  files: StateFiles;
  /** An environment variable. */
  env(name: string): string | undefined;
  /** A page asset by name (`index.html`, `app.js`, `style.css`). */
  readAsset(name: string): Promise<Uint8Array>;
  /** Serves HTTP and WebSocket; resolves once listening. */
  serve(listen: { hostname: string; port: number }, handlers: ServeHandlers): Promise<WebServer>;
  stdin: ReadableStream<Uint8Array>;
  stdout: WritableStream<Uint8Array>;
  /** Writes one line to standard error. */
  log(line: string): void;
  /** A process of this machine (its parent and arguments), or `undefined`: see launcher.ts. */
  processInfo(pid: number): ProcessInfo | undefined;
  /** Calls `handler` on SIGTERM and SIGINT; returns the function that stops listening. */
  onSignal(handler: (signal: "SIGTERM" | "SIGINT") => void): () => void;
}

/** Exit codes; the README and `--help` list them. */
export const ExitCode = {
  STOPPED: 0,
  FAILURE: 1,
  USAGE: 2,
  PEER_CLOSED: 3,
  CONNECTION_FAILED: 4,
  BAD_STATE: 5,
  CHECKPOINT_FAILED: 6,
  LOCKED: 7,
} as const;

/** How long a hand-off or a close may take before the relay gives up on it. */
const STOP_TIMEOUT_MS = 10_000;
/** Slack over the largest base64 payload for one command line. */
const LINE_SLACK = 64 * 1024;

/**
 * Standard output's bounds: what it has not taken stops the relay reading the guest and standard
 * input (see {@linkcode EventQueue}).
 */
const STDOUT_LIMITS = { window: 1024 * 1024, highWater: 4 * 1024 * 1024 };

/**
 * JSON lines to a byte stream, in order and bounded; a failed stream (a closed pipe) is reported
 * once.
 */
class EventWriter {
  readonly queue: EventQueue;

  constructor(stream: WritableStream<Uint8Array>, log: (line: string) => void) {
    const writer = stream.getWriter();
    const encoder = new TextEncoder();
    this.queue = new EventQueue(
      { write: (text) => writer.write(encoder.encode(text + "\n")) },
      STDOUT_LIMITS,
      {
        onError: (error) => log(`standard output failed, events are dropped: ${error}`),
      },
    );
  }

  write(event: RelayEvent): void {
    this.queue.push(JSON.stringify(event));
  }

  /** Waits until everything written has left. */
  flush(): Promise<void> {
    return this.queue.flush();
  }
}

/** Lines of UTF-8 text; a line longer than `max` characters is skipped and reported. */
async function readLines(
  stream: ReadableStream<Uint8Array>,
  max: number,
  onLine: (line: string) => void,
  onTooLong: (length: number) => void,
  room: () => Promise<void> | undefined,
): Promise<void> {
  const reader = readWhenRoom(stream, room).pipeThrough(new TextDecoderStream()).getReader();
  let parts: string[] = [];
  let length = 0;
  let skipping = false;
  const end = (tail: string) => {
    if (skipping || length + tail.length > max) {
      onTooLong(length + tail.length);
    } else {
      const line = (parts.join("") + tail).replace(/\r$/, "");
      if (line.trim() !== "") onLine(line);
    }
    parts = [];
    length = 0;
    skipping = false;
  };
  for (;;) {
    const { value, done } = await reader.read();
    if (done) break;
    let at = 0;
    for (let nl = value.indexOf("\n"); nl >= 0; nl = value.indexOf("\n", at)) {
      end(value.slice(at, nl));
      at = nl + 1;
    }
    const rest = value.slice(at);
    length += rest.length;
    if (!skipping) parts.push(rest);
    if (length > max && !skipping) {
      skipping = true;
      parts = [];
    }
  }
  if (length > 0) end("");
}

function bounded<T>(promise: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`${what} took more than ${ms} ms`)), ms);
  });
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}

/** Error codes of a write or read on a socket the peer closed (Deno and Node alike). */
const PEER_GONE = ["EPIPE", "ECONNRESET"];

const message = (error: unknown) => error instanceof Error ? error.message : String(error);
const codeOf = (error: unknown) => (error as { code?: unknown })?.code;

/** How often a standby relay looks at the state's lock and generation. */
const STANDBY_POLL_MS = 25;

/**
 * Waits for the hand-off: until the relay that holds the state lets it go (or dies) after
 * writing a generation newer than the one at the start, then takes the lock. Resolves with the
 * store, or the signal that stopped the wait.
 */
async function standBy(
  platform: RelayPlatform,
  path: string,
  target: string,
  lock: () => Promise<StateStore>,
  signals: Signals,
  log: (line: string) => void,
): Promise<StateStore | Signal> {
  const initial = await StateStore.writtenGeneration(platform.files, path);
  log(
    `standing by on ${target}: connected, waiting for the hand-off in ${path}` +
      (initial === 0 ? "" : ` (the state there now, generation ${initial}, is an older one)`),
  );
  for (;;) {
    if (signals.pending !== undefined) return signals.pending;
    const holder = await StateStore.holder(platform.files, path);
    const generation = await StateStore.writtenGeneration(platform.files, path);
    if (holder?.stale || (holder === undefined && generation > initial)) {
      try {
        return await lock();
      } catch (error) {
        if (codeOf(error) !== "LOCKED") throw error; // another standby was first
      }
    }
    await signals.sleep(STANDBY_POLL_MS);
  }
}

type Signal = "SIGTERM" | "SIGINT";

/**
 * The signals of the relay's whole life: held while it starts (a standby ends its wait, a relay
 * that is starting hands off as soon as it runs), passed to `handler` once it is set.
 */
class Signals {
  pending: Signal | undefined;
  handler: ((signal: Signal) => void) | undefined;
  #wake: (() => void) | undefined;

  receive(signal: Signal): void {
    if (this.handler !== undefined) return this.handler(signal);
    this.pending ??= signal;
    this.#wake?.();
  }

  /** Waits `ms`, or less if a signal comes. */
  sleep(ms: number): Promise<void> {
    return new Promise((resolve) => {
      const timer = setTimeout(resolve, ms);
      this.#wake = () => {
        clearTimeout(timer);
        resolve();
      };
    });
  }
}

/**
 * Writes the state after every change, one write at a time: the changes of one turn of the event
 * loop, and those made while a write is under way, cost one write.
 */
class StateWriter {
  readonly #store: StateStore;
  readonly #copies: () => Pick<RelayState, "hostCopies" | "guestCopies">;
  readonly #onError: (error: unknown) => void;
  #checkpoint: Uint8Array | undefined;
  /** Who waits for the next write. */
  #waiting: (() => void)[] = [];
  #stopped = false;
  #running: Promise<void> | undefined;

  constructor(
    store: StateStore,
    checkpoint: Uint8Array | undefined,
    copies: () => Pick<RelayState, "hostCopies" | "guestCopies">,
    onError: (error: unknown) => void,
  ) {
    this.#store = store;
    this.#checkpoint = checkpoint;
    this.#copies = copies;
    this.#onError = onError;
  }

  /**
   * The state changed: a new checkpoint, or (without one) the relay's copies. Resolves once a
   * write that holds the change is done (or failed, which is reported).
   */
  changed(checkpoint?: Uint8Array): Promise<void> {
    if (checkpoint !== undefined) this.#checkpoint = checkpoint;
    if (this.#stopped) return Promise.resolve();
    const written = new Promise<void>((resolve) => this.#waiting.push(resolve));
    this.#running ??= this.#run();
    return written;
  }

  /** Writes what changed, and then nothing more; resolves when the last write is done. */
  async stop(): Promise<void> {
    await this.#running;
    this.#stopped = true;
  }

  async #run(): Promise<void> {
    while (this.#waiting.length > 0 && !this.#stopped) {
      // The checkpoint of a change made with the copies arrives in this turn.
      await new Promise((resolve) => setTimeout(resolve, 0));
      const waiting = this.#waiting;
      this.#waiting = [];
      try {
        await this.#store.write({
          checkpoint: this.#checkpoint,
          ...this.#copies(),
          handedOff: false,
        });
      } catch (error) {
        if (codeOf(error) === "FENCED") this.#stopped = true;
        this.#onError(error);
      }
      for (const resolve of waiting) resolve();
    }
    for (const resolve of this.#waiting.splice(0)) resolve();
    this.#running = undefined;
  }
}

/** The state file's key: `--key-file`, else `VDAGENT_RELAY_KEY`; `undefined` if neither. */
async function loadKey(platform: RelayPlatform, args: RelayArgs): Promise<StateKey | undefined> {
  let text = platform.env("VDAGENT_RELAY_KEY");
  let from = "VDAGENT_RELAY_KEY";
  if (args.keyFile !== undefined) {
    const bytes = await platform.files.read(args.keyFile, 4096);
    if (bytes === undefined) throw new UsageError(`--key-file ${args.keyFile} does not exist`);
    text = new TextDecoder().decode(bytes);
    from = `--key-file ${args.keyFile}`;
  }
  if (text === undefined) return undefined;
  try {
    return await importStateKey(text);
  } catch (error) {
    throw new UsageError(`${from}: ${message(error)}`);
  }
}

/** Exit code of a state that cannot be used. */
function stateExit(error: unknown): number {
  const code = codeOf(error);
  return code === "LOCKED" || code === "FENCED"
    ? ExitCode.LOCKED
    : code === "UNWRITABLE"
    ? ExitCode.CHECKPOINT_FAILED
    : ExitCode.BAD_STATE;
}

/** How the relay ended: the `exit` event, last on standard output whatever happened. */
interface Exit {
  code: number;
  reason: string;
}

/** Runs the relay; resolves with the exit code once everything is flushed and closed. */
export async function runRelay(platform: RelayPlatform): Promise<number> {
  let args: RelayArgs | undefined;
  let usage: UsageError | undefined;
  try {
    args = parseRelayArgs(platform.args);
  } catch (error) {
    if (!(error instanceof UsageError)) throw error;
    usage = error;
  }
  if (args === undefined && usage === undefined) {
    // --help: the text is what was asked for, on standard output.
    const writer = platform.stdout.getWriter();
    await writer.write(new TextEncoder().encode(USAGE + "\n")).catch(() => {});
    await writer.close().catch(() => {});
    return ExitCode.STOPPED;
  }
  const out = new EventWriter(platform.stdout, platform.log);
  const signals = new Signals();
  const stopListening = platform.onSignal((signal) => signals.receive(signal));
  const stopWatching = watchLaunchers(platform.processInfo, platform.files.pid, (why) => {
    platform.log(`vdagent-relay: ${why}; stopping as on SIGTERM`);
    signals.receive("SIGTERM");
  });
  let exit: Exit;
  try {
    if (usage !== undefined) {
      platform.log(`vdagent-relay: ${usage.message}\n${USAGE}`);
      exit = { code: ExitCode.USAGE, reason: `bad command line: ${usage.message}` };
    } else {
      exit = await relay(platform, signals, args!, out);
    }
  } finally {
    stopListening();
    stopWatching();
  }
  out.write({ event: "exit", ...exit });
  await bounded(out.flush(), 5000, "flushing standard output").catch(() => {});
  return exit.code;
}

async function relay(
  platform: RelayPlatform,
  signals: Signals,
  args: RelayArgs,
  out: EventWriter,
): Promise<Exit> {
  const log = (line: string) => platform.log(`vdagent-relay: ${line}`);
  let key: StateKey | undefined;
  try {
    key = await loadKey(platform, args);
  } catch (error) {
    if (!(error instanceof UsageError)) throw error;
    platform.log(`vdagent-relay: ${error.message}\n${USAGE}`);
    return { code: ExitCode.USAGE, reason: `bad command line: ${error.message}` };
  }
  const target = describeTarget(args.connect);
  const token = await listenToken(platform, args, log);
  if (token === null) return { code: ExitCode.USAGE, reason: "bad --token-file" };
  if (args.state !== undefined && key === undefined) {
    log(
      `WARNING: --state ${args.state} without a key: whoever can write it can make this relay ` +
        "restore any state; set VDAGENT_RELAY_KEY or --key-file (see SECURITY.md)",
    );
  }

  const clients = new Set<EventQueue>();
  const broadcaster = new Broadcaster(() => [out.queue, ...clients]);
  const broadcast = (event: RelayEvent) => broadcaster.send(event);
  // Settled once the session runs; a WebSocket client that comes earlier waits for it.
  let setCoreReady!: (core: RelayCore) => void;
  const coreReady = new Promise<RelayCore>((resolve) => setCoreReady = resolve);
  const maxLine = Math.ceil(((args.maxClipboard ?? 64 * 1024 * 1024) * 4) / 3) + LINE_SLACK;

  // Listening first: a port in use must not cost the state.
  let listening: { server: WebServer; url: string } | undefined;
  if (args.listen !== undefined) {
    listening = await listen(platform, args.listen, {
      policy: { token, hosts: [args.listen.hostname.toLowerCase(), ...(args.allowHosts ?? [])] },
      core: coreReady,
      target,
      clients,
      maxMessage: maxLine,
      log,
      flush: () => broadcaster.flush(),
    });
    if (listening === undefined) return { code: ExitCode.FAILURE, reason: "cannot listen" };
  }
  const server = listening?.server;
  const closeServer = () => server?.close().catch(() => {});

  const lockState = (path: string) =>
    StateStore.lock(platform.files, path, {
      key,
      maxBytes: maxStateFileSize(args.maxClipboard ?? 64 * 1024 * 1024),
    });
  let connection: Connection | undefined;
  let store: (StateStore & { brokeStale?: LockHolder }) | undefined;
  try {
    if (args.standby) {
      try {
        connection = await platform.connect(args.connect);
      } catch (error) {
        log(`cannot connect to ${target}: ${message(error)}`);
        await closeServer();
        return { code: ExitCode.CONNECTION_FAILED, reason: `cannot connect: ${message(error)}` };
      }
      const waited = await standBy(
        platform,
        args.state!,
        target,
        () => lockState(args.state!),
        signals,
        log,
      );
      if (typeof waited === "string") {
        connection.close();
        log(`${waited} while standing by: exiting, ${args.state} untouched`);
        await closeServer();
        return { code: ExitCode.STOPPED, reason: `${waited} while standing by` };
      }
      store = waited;
    } else if (args.state !== undefined) {
      store = await lockState(args.state);
    }
  } catch (error) {
    connection?.close();
    log(`cannot take ${args.state}: ${codeOf(error) ?? ""} ${message(error)}`);
    await closeServer();
    return { code: stateExit(error), reason: `cannot take the state: ${message(error)}` };
  }
  if (store?.brokeStale !== undefined) {
    log(
      `the relay with pid ${store.brokeStale.pid} held ${args.state} and died without handing ` +
        "off: this relay takes the state over",
    );
  }

  // The state, read and checked, then written back at once: a store this relay cannot write is
  // found now, not at the hand-off, and an older copy of the file is from now on stale.
  let restored: RelayState | undefined;
  if (store !== undefined) {
    try {
      restored = await store.read();
      await store.write({
        checkpoint: restored?.checkpoint,
        hostCopies: restored?.hostCopies ?? [],
        guestCopies: restored?.guestCopies ?? [],
        handedOff: restored?.handedOff ?? false,
      });
    } catch (error) {
      connection?.close();
      await store.unlock().catch(() => {});
      const code = codeOf(error);
      log(
        code === undefined || code === "FENCED"
          ? `cannot write ${args.state}: ${message(error)}`
          : `cannot restore ${args.state}: ${code}: ${
            // Node's own messages start with their code.
            message(error).replace(`${code}: `, "")}; it is left as it is`,
      );
      await closeServer();
      return code === undefined
        ? { code: ExitCode.CHECKPOINT_FAILED, reason: `cannot write the state: ${message(error)}` }
        : { code: stateExit(error), reason: `cannot restore the state: ${code}` };
    }
  }
  const restoring = restored?.checkpoint !== undefined;
  // A state not handed off is the last one a relay wrote while running: it was killed, and what
  // it read since is lost, so the connection is new and the guest may have moved on.
  const crashed = restoring && !restored!.handedOff;
  let checkpoint = restored?.checkpoint;
  if (crashed && decodeCheckpoint(checkpoint!).drained) {
    const { drained: _, ...rest } = decodeCheckpoint(checkpoint!);
    checkpoint = encodeCheckpoint(rest);
  }
  const resume = crashed ? "reconnected" : args.resume;
  if (crashed && args.resume === "continued") {
    log(
      `${args.state} was not handed off (the last relay was killed): resuming reconnected, ` +
        "not continued",
    );
  }

  try {
    connection ??= await platform.connect(args.connect);
  } catch (error) {
    log(`cannot connect to ${target}: ${message(error)}`);
    await store?.unlock().catch(() => {});
    await closeServer();
    return { code: ExitCode.CONNECTION_FAILED, reason: `cannot connect: ${message(error)}` };
  }
  const link = connection;

  let stopping = false;
  let finish!: (code: number, reason: string) => void;
  const finished = new Promise<{ code: number; reason: string }>((resolve) => {
    finish = (code, reason) => resolve({ code, reason });
  });
  let writer: StateWriter | undefined;
  const writeFailures = new Set<string>();

  const handOff = async (why: string, id?: CommandId, reply?: (event: RelayEvent) => void) => {
    if (stopping) {
      log(`${why}: already stopping`);
      reply?.(
        errorEvent(
          new CommandError("STOPPING", "Cannot take a checkpoint: the relay is stopping"),
          {
            cmd: "checkpoint",
            ...(id === undefined ? {} : { id }),
          },
        ),
      );
      return;
    }
    stopping = true;
    session.stop();
    if (store === undefined && reply === undefined) {
      log(
        `${why}: no --state, so no checkpoint: closing the session (the next relay starts fresh)`,
      );
      try {
        await bounded(session.pipeline.close(), 2000, "closing the session");
      } catch (error) {
        log(`closing the session: ${message(error)}`);
      }
      link.close();
      return finish(ExitCode.STOPPED, `${why}: stopped without a checkpoint`);
    }
    log(`${why}: taking a checkpoint`);
    let state: Pick<RelayState, "checkpoint" | "hostCopies" | "guestCopies">;
    try {
      state = await bounded(session.checkpoint(), STOP_TIMEOUT_MS, "the checkpoint");
    } catch (error) {
      log(`cannot take a checkpoint: ${codeOf(error) ?? ""} ${message(error)}`);
      link.close();
      return finish(ExitCode.CHECKPOINT_FAILED, "the checkpoint failed");
    }
    const bytes = state.checkpoint!.length;
    const event: RelayEvent = { event: "checkpoint", ...(id === undefined ? {} : { id }), bytes };
    if (store !== undefined) {
      try {
        await writer!.stop();
        await store.write({ ...state, handedOff: true });
      } catch (error) {
        log(`cannot write the checkpoint to ${args.state}: ${message(error)}`);
        link.close();
        return finish(
          codeOf(error) === "FENCED" ? ExitCode.LOCKED : ExitCode.CHECKPOINT_FAILED,
          "the checkpoint could not be written",
        );
      }
      event.file = args.state;
      log(
        `handed off: checkpoint of ${bytes} bytes (and ${state.hostCopies.length} host copies) ` +
          `written to ${args.state} (generation ${store.generation}); start the next relay ` +
          `with --state ${args.state}`,
      );
    } else {
      // Nowhere to write it: the caller gets the whole state file in the event.
      const file = await encodeStateFile({ ...state, generation: 0, handedOff: true }, key);
      event.state = JSON.parse(new TextDecoder().decode(file));
      log(`handed off: checkpoint of ${bytes} bytes sent in the checkpoint event`);
    }
    (reply ?? broadcast)(event);
    link.close();
    finish(ExitCode.STOPPED, `${why}: handed off`);
  };

  const checkpoints = store === undefined ? undefined : new StateCheckpoint({ continuous: true });
  let session: RelayCore;
  try {
    // The guest is read only while standard output keeps up.
    const paced = {
      readable: readWhenRoom(link.readable, () => out.queue.room()),
      writable: link.writable,
      closeWrite: () => link.closeWrite(),
    };
    session = new RelayCore(paced, {
      mouse: args.mouse,
      clipboard: args.clipboard,
      maxClipboard: args.maxClipboard,
      restore: restoring ? { ...restored!, checkpoint } : undefined,
      resume,
      broadcast,
      checkpoints,
      keepGuestCopies: store !== undefined,
      onCopiesChange: () => writer?.changed(),
      onCheckpoint: (id, reply) => void handOff("checkpoint command", id, reply),
    });
  } catch (error) {
    link.close();
    await store?.unlock().catch(() => {});
    await closeServer();
    log(`cannot restore ${args.state}: ${codeOf(error) ?? ""} ${message(error)}`);
    return { code: ExitCode.BAD_STATE, reason: `cannot restore the state: ${codeOf(error)}` };
  }
  if (store !== undefined) {
    const copies = () => ({ hostCopies: session.hostCopies(), guestCopies: session.guestCopies() });
    writer = new StateWriter(store, checkpoint, copies, (error) => {
      if (codeOf(error) === "FENCED") {
        log(`${message(error)}: stopping without writing it again`);
        if (!stopping) {
          stopping = true;
          session.stop();
          link.close();
          finish(ExitCode.LOCKED, "another relay took the state over");
        }
        return;
      }
      // Reported once per reason; the next change tries again.
      if (writeFailures.has(message(error))) return;
      writeFailures.add(message(error));
      log(`cannot write ${args.state}: ${message(error)} (tried again at the next change)`);
      broadcast({ event: "error", code: "STATE_WRITE_FAILED", message: message(error) });
    });
    const continuous = checkpoints!.readable.getReader();
    void (async () => {
      for (;;) {
        const { value, done } = await continuous.read();
        if (done) return;
        // The hand-off's own checkpoint comes through here too; the hand-off writes that one.
        if (!stopping) void writer.changed(value);
      }
    })().catch(() => {});
  }

  // Before anything the guest sends is reported: the pipeline reads once this turn yields.
  broadcast({
    event: "started",
    mode: restoring ? "restored" : "fresh",
    ...(restoring ? { resume } : {}),
    connect: target,
  });
  if (restoring) { for (const event of session.stateEvents()) broadcast(event); }
  setCoreReady(session);

  if (restoring) {
    const drained = decodeCheckpoint(checkpoint!).drained === true;
    const how = resume === "continued"
      ? drained
        ? "the guest's port stayed open while the connection changed: it sends the host's copies " +
          "and outstanding pastes again (the old relay's last bytes may be lost) and does not " +
          "announce itself"
        : "the session continues without announcing itself"
      : drained
      ? "the port was reopened; the old relay read everything the guest sent, so the serials " +
        "are known: it does not announce itself, sends a probe and, once the guest answers it, " +
        "the host's copies again"
      : "the port was reopened and the old relay did not read to the end, so a guest copy may " +
        "have been lost: it announces itself (request=1), the guest's serials restart at 0, " +
        "and the host's copies go again once the guest answers";
    log(
      `restored ${args.state} (generation ${restored!.generation}, checkpoint of ` +
        `${checkpoint!.length} bytes, resume ${resume}) on ${target}: ${how}`,
    );
  } else {
    log(
      `starting fresh on ${target}${
        args.state === undefined ? " (no --state)" : ` (${args.state} holds no session)`
      }: announcing to the guest`,
    );
  }

  session.done.then(
    () => {
      if (stopping) return;
      log(`the guest's side closed the connection on ${target} (end of stream); exiting`);
      finish(ExitCode.PEER_CLOSED, "the guest's side closed the connection");
    },
    (error) => {
      if (stopping) return;
      if (PEER_GONE.includes(String(codeOf(error)))) {
        log(`the guest's side closed the connection on ${target} (${message(error)}); exiting`);
        return finish(ExitCode.PEER_CLOSED, "the guest's side closed the connection");
      }
      log(`the connection to ${target} failed: ${codeOf(error) ?? ""} ${message(error)}`.trim());
      finish(ExitCode.CONNECTION_FAILED, `the connection failed: ${message(error)}`);
    },
  );

  if (listening !== undefined) broadcast({ event: "listening", url: listening.url });

  readLines(
    platform.stdin,
    maxLine,
    (line) =>
      void session.run(line, (event) => {
        broadcaster.flush(); // what the guest did before the answer goes first
        out.write(event);
      }),
    (length) =>
      out.write({
        event: "error",
        code: "LINE_TOO_LONG",
        message:
          `Cannot run command: the line has ${length} characters, over the limit of ${maxLine}`,
      }),
    () => out.queue.room(),
  ).then(
    () => log("standard input closed; still relaying (stop with SIGTERM or SIGINT)"),
    (error) => log(`standard input failed: ${message(error)}; still relaying`),
  );

  signals.handler = (signal) => void handOff(signal);
  if (signals.pending !== undefined) signals.handler(signals.pending);
  const { code, reason } = await finished;
  if (!stopping) {
    stopping = true;
    session.stop();
    link.close();
  }
  // The last state written while running stays: the next relay restores it, reconnected.
  await writer?.stop().catch(() => {});
  await store?.unlock().catch(() => {});
  // Standard output gets it from runRelay, last; the clients now.
  const exit = JSON.stringify({ event: "exit", code, reason });
  for (const client of clients) client.push(exit);
  await closeServer();
  return { code, reason };
}
