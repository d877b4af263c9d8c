// The relay's life, from the command line to the exit code, against a small platform interface
// that the Deno entry (scripts/relay.ts) and the Node entry (scripts/relay/node_main.ts) fill in.
import { decodeCheckpoint, type Transport } from "../../mod.ts";
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
import { listen, listenToken } from "./listen.ts";
import { errorEvent, RelayCore, type RelayEvent } from "./relay_core.ts";
import { decodeStateFile, encodeStateFile, type RelayState } from "./state_file.ts";
import type { ServeHandlers, WebServer } from "./web.ts";

/** A connection to the guest's port. */
export interface Connection extends Transport {
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
  /** A file's bytes, or `undefined` if it does not exist. */
  readFile(path: string): Promise<Uint8Array | undefined>;
  /** Writes a file atomically: a temporary file in the same directory, synced, then renamed. */
  writeFileAtomic(path: string, bytes: Uint8Array): Promise<void>;
  /** Removes a file. */
  removeFile(path: string): Promise<void>;
  /** A page asset by name (`index.html`, `app.js`, `style.css`). */
  readAsset(name: string): Promise<Uint8Array>;
  /** Serves HTTP and WebSocket; resolves once listening. */
  serve(listen: { hostname: string; port: number }, handlers: ServeHandlers): Promise<WebServer>;
  stdin: ReadableStream<Uint8Array>;
  stdout: WritableStream<Uint8Array>;
  /** Writes one line to standard error. */
  log(line: string): void;
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

/** How often a standby relay looks at the state file. */
const STANDBY_POLL_MS = 25;

/**
 * Waits until the state file holds a state it did not hold at the start: the hand-off of the
 * relay that had the session. Resolves `undefined` then, or the signal that stopped the wait.
 */
async function standBy(
  platform: RelayPlatform,
  path: string,
  target: string,
  log: (line: string) => void,
): Promise<"SIGTERM" | "SIGINT" | undefined> {
  let signalled: "SIGTERM" | "SIGINT" | undefined;
  let wake: (() => void) | undefined;
  const stopListening = platform.onSignal((signal) => {
    signalled = signal;
    wake?.();
  });
  try {
    const initial = await platform.readFile(path).catch(() => undefined);
    log(
      `standing by on ${target}: connected, waiting for the hand-off in ${path}` +
        (initial === undefined ? "" : " (the state there now is an older one)"),
    );
    for (;;) {
      const now = await platform.readFile(path).catch(() => undefined);
      if (now !== undefined && (initial === undefined || !sameBytes(now, initial))) return;
      await new Promise<void>((resolve) => {
        wake = resolve;
        setTimeout(resolve, STANDBY_POLL_MS);
      });
      if (signalled !== undefined) return signalled;
    }
  } finally {
    stopListening();
  }
}

function sameBytes(a: Uint8Array, b: Uint8Array): boolean {
  return a.length === b.length && a.every((x, i) => x === b[i]);
}

/** Runs the relay; resolves with the exit code once everything is flushed and closed. */
export async function runRelay(platform: RelayPlatform): Promise<number> {
  const log = (line: string) => platform.log(`vdagent-relay: ${line}`);
  let args: RelayArgs | undefined;
  try {
    args = parseRelayArgs(platform.args);
  } catch (error) {
    if (!(error instanceof UsageError)) throw error;
    platform.log(`vdagent-relay: ${error.message}\n${USAGE}`);
    return ExitCode.USAGE;
  }
  if (args === undefined) {
    platform.log(USAGE);
    return ExitCode.STOPPED;
  }
  const target = describeTarget(args.connect);
  const token = await listenToken(platform, args, log);
  if (token === null) return ExitCode.USAGE;

  let connection: Connection | undefined;
  if (args.standby) {
    try {
      connection = await platform.connect(args.connect);
    } catch (error) {
      log(`cannot connect to ${target}: ${message(error)}`);
      return ExitCode.CONNECTION_FAILED;
    }
    const stopped = await standBy(platform, args.state!, target, log);
    if (stopped) {
      connection.close();
      log(`${stopped} while standing by: exiting, ${args.state} untouched`);
      return ExitCode.STOPPED;
    }
  }

  let restore: RelayState | undefined;
  if (args.state !== undefined) {
    try {
      const bytes = await platform.readFile(args.state);
      if (bytes !== undefined) restore = decodeStateFile(bytes);
    } catch (error) {
      log(
        `cannot restore ${args.state}: ${codeOf(error) ?? "READ_FAILED"}: ${message(error)}; ` +
          "it is left as it is (remove it to start fresh)",
      );
      return ExitCode.BAD_STATE;
    }
  }

  try {
    connection ??= await platform.connect(args.connect);
  } catch (error) {
    log(`cannot connect to ${target}: ${message(error)}`);
    return ExitCode.CONNECTION_FAILED;
  }
  const link = connection;

  const out = new EventWriter(platform.stdout, platform.log);
  const clients = new Set<EventQueue>();
  const broadcaster = new Broadcaster(() => [out.queue, ...clients]);
  const broadcast = (event: RelayEvent) => broadcaster.send(event);
  let stopping = false;
  let finish!: (code: number, reason: string) => void;
  const finished = new Promise<{ code: number; reason: string }>((resolve) => {
    finish = (code, reason) => resolve({ code, reason });
  });

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
    core.stop();
    if (args.state === undefined && reply === undefined) {
      log(
        `${why}: no --state, so no checkpoint: closing the session (the next relay starts fresh)`,
      );
      try {
        await bounded(core.pipeline.close(), 2000, "closing the session");
      } catch (error) {
        log(`closing the session: ${message(error)}`);
      }
      link.close();
      return finish(ExitCode.STOPPED, `${why}: stopped without a checkpoint`);
    }
    log(`${why}: taking a checkpoint`);
    let state: RelayState;
    try {
      state = await bounded(core.checkpoint(), STOP_TIMEOUT_MS, "the checkpoint");
    } catch (error) {
      log(`cannot take a checkpoint: ${codeOf(error) ?? ""} ${message(error)}`);
      link.close();
      return finish(ExitCode.CHECKPOINT_FAILED, "the checkpoint failed");
    }
    const file = encodeStateFile(state);
    const event: RelayEvent = {
      event: "checkpoint",
      ...(id === undefined ? {} : { id }),
      bytes: state.checkpoint.length,
    };
    if (args.state !== undefined) {
      try {
        await platform.writeFileAtomic(args.state, file);
      } catch (error) {
        log(`cannot write the checkpoint to ${args.state}: ${message(error)}`);
        link.close();
        return finish(ExitCode.CHECKPOINT_FAILED, "the checkpoint could not be written");
      }
      event.file = args.state;
      log(
        `handed off: checkpoint of ${state.checkpoint.length} bytes (and ${state.hostCopies.length} ` +
          `host copies) written to ${args.state}; start the next relay with --state ${args.state}`,
      );
    } else {
      // Nowhere to write it: the caller gets the whole state file in the event.
      event.state = JSON.parse(new TextDecoder().decode(file));
      log(
        `handed off: checkpoint of ${state.checkpoint.length} bytes sent in the checkpoint event`,
      );
    }
    (reply ?? broadcast)(event);
    link.close();
    finish(ExitCode.STOPPED, `${why}: handed off`);
  };

  let core: RelayCore;
  try {
    // The guest is read only while standard output keeps up.
    const paced = {
      readable: readWhenRoom(link.readable, () => out.queue.room()),
      writable: link.writable,
      closeWrite: () => link.closeWrite(),
    };
    core = new RelayCore(paced, {
      mouse: args.mouse,
      clipboard: args.clipboard,
      maxClipboard: args.maxClipboard,
      restore,
      resume: args.resume,
      broadcast,
      onCheckpoint: (id, reply) => void handOff("checkpoint command", id, reply),
    });
  } catch (error) {
    link.close();
    log(`cannot restore ${args.state}: ${codeOf(error) ?? ""} ${message(error)}`);
    return ExitCode.BAD_STATE;
  }

  // Before anything the guest sends is reported: the pipeline reads once this turn yields.
  broadcast({
    event: "started",
    mode: restore === undefined ? "fresh" : "restored",
    ...(restore === undefined ? {} : { resume: args.resume }),
    connect: target,
  });
  if (restore !== undefined) { for (const event of core.stateEvents()) broadcast(event); }

  if (restore !== undefined) {
    const drained = decodeCheckpoint(restore.checkpoint).drained === true;
    const how = args.resume === "continued"
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
      `restored ${args.state} (checkpoint of ${restore.checkpoint.length} bytes, resume ` +
        `${args.resume}) on ${target}: ${how}`,
    );
    try {
      await platform.removeFile(args.state!);
      log(
        `removed ${args.state}: the session moves on, and a relay that dies must not leave it stale`,
      );
    } catch (error) {
      log(`cannot remove ${args.state}: ${message(error)}`);
    }
  } else {
    log(
      `starting fresh on ${target}${
        args.state === undefined ? " (no --state)" : ` (${args.state} does not exist)`
      }: announcing to the guest`,
    );
  }

  core.done.then(
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

  const maxLine = Math.ceil(((args.maxClipboard ?? 64 * 1024 * 1024) * 4) / 3) + LINE_SLACK;
  let server: WebServer | undefined;
  if (args.listen !== undefined) {
    server = await listen(platform, args.listen, {
      policy: { token, hosts: [args.listen.hostname.toLowerCase(), ...(args.allowHosts ?? [])] },
      core,
      target,
      clients,
      maxMessage: maxLine,
      log,
      announce: (url) => broadcast({ event: "listening", url }),
      flush: () => broadcaster.flush(),
    });
    if (server === undefined) finish(ExitCode.FAILURE, "cannot listen");
  }

  readLines(
    platform.stdin,
    maxLine,
    (line) =>
      void core.run(line, (event) => {
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

  const stopListening = platform.onSignal((signal) => void handOff(signal));
  const { code, reason } = await finished;
  stopListening();
  if (!stopping) {
    stopping = true;
    core.stop();
    link.close();
  }
  broadcast({ event: "exit", code, reason });
  await server?.close().catch(() => {});
  await bounded(out.flush(), 5000, "flushing standard output").catch(() => {});
  return code;
}
