// The relay's command line, parsed the same way by the Deno and the Node entry points.
import { parseArgs } from "node:util";
import { isLoopback } from "./web.ts";

/** Where the guest agent's port is. */
export type ConnectTarget =
  | { transport: "unix"; path: string }
  | { transport: "tcp"; hostname: string; port: number };

/** The parsed command line. */
export interface RelayArgs {
  connect: ConnectTarget;
  /** The state file: restored at start if it exists, written after every change and at a hand-off. */
  state?: string;
  /** A file holding the key that authenticates the state file. */
  keyFile?: string;
  resume: "continued" | "reconnected";
  /** Connect at once, then wait for the hand-off state and take over, continued. */
  standby: boolean;
  listen?: { hostname: string; port: number };
  /** With `--listen`: no token (loopback only). */
  noAuth?: true;
  /** With `--listen`: the file the token is read from, instead of a random one. */
  tokenFile?: string;
  /** With `--listen`: host names the `Host` header may name besides IP addresses and localhost. */
  allowHosts?: string[];
  mouse: boolean;
  clipboard: boolean;
  maxClipboard?: number;
}

/** The help text. */
export const USAGE = `usage: vdagent-relay --connect unix:PATH|tcp:HOST:PORT [options]

A SPICE vdagent host relay: JSON commands on standard input, JSON events on
standard output, one per line; logs on standard error.

  --connect unix:PATH|tcp:HOST:PORT  the guest agent's port (a QEMU chardev socket)
  --state FILE         the session's state: restored at start if it exists,
                       written atomically after every change, and drained on
                       SIGTERM, SIGINT or the "checkpoint" command; FILE.lock
                       keeps a second relay off it, FILE.generation an older
                       FILE from being restored
  --key-file FILE      the key (hex or base64, at least 32 bytes) that signs
                       and checks the state file; or VDAGENT_RELAY_KEY
  --resume continued|reconnected
                       how the transport relates to the one the state was
                       taken on (default: reconnected, a new connection)
  --standby            with --state: connect now, wait until the relay that
                       hands off writes FILE, then take over, continued (for a
                       live migration: connected to the destination's socket
                       before the guest resumes there, the guest's port stays
                       open and the guest notices nothing)
  --listen HOST:PORT   also serve the JSON protocol over WebSocket (/ws) and a
                       clipboard page at /, to whoever has the token: a random
                       one, printed once in the page's URL (?token=...)
  --token-file FILE    with --listen: the token is FILE's content (16 to 1024
                       visible ASCII characters) instead of a random one
  --no-auth            with --listen on a loopback address: no token
  --allow-host NAME    with --listen: a host name (besides IP addresses and
                       localhost) the page may be reached by; repeatable
  --no-mouse           do not offer an absolute mouse
  --no-clipboard       do not share the clipboard
  --max-clipboard BYTES  largest clipboard data the guest may send
  --help               this text

Exit codes: 0 stopped on request (with --state, the checkpoint is written),
2 usage, 3 the guest's side closed the connection, 4 connection or protocol
failure, 5 the --state file cannot be restored (bad, forged or stale), 6 the
state could not be taken or written, 7 another relay holds the --state file
(or took it over), 1 anything else.`;

/** A command line that cannot be run; the message says why. */
export class UsageError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "UsageError";
  }
}

/** `HOST:PORT`, with `[v6]:PORT` for IPv6. */
function hostPort(value: string, what: string): { hostname: string; port: number } {
  const match = /^(?:\[([^\]]+)\]|([^:]+)):(\d+)$/.exec(value);
  const port = match === null ? NaN : Number(match[3]);
  if (match === null || !(port >= 0 && port <= 65535)) {
    throw new UsageError(`${what} must be HOST:PORT (port 0 to 65535), got "${value}"`);
  }
  return { hostname: match[1] ?? match[2]!, port };
}

/** Parses the arguments; `undefined` for `--help`. Throws a {@linkcode UsageError}. */
export function parseRelayArgs(args: readonly string[]): RelayArgs | undefined {
  let values;
  try {
    ({ values } = parseArgs({
      // `deno task relay -- --connect …` passes the `--` on.
      args: args[0] === "--" ? args.slice(1) : [...args],
      options: {
        connect: { type: "string" },
        state: { type: "string" },
        "key-file": { type: "string" },
        resume: { type: "string" },
        standby: { type: "boolean" },
        listen: { type: "string" },
        "token-file": { type: "string" },
        "no-auth": { type: "boolean" },
        "allow-host": { type: "string", multiple: true },
        "no-mouse": { type: "boolean" },
        "no-clipboard": { type: "boolean" },
        "max-clipboard": { type: "string" },
        help: { type: "boolean" },
      },
      allowPositionals: false,
      strict: true,
    }));
  } catch (error) {
    throw new UsageError((error as Error).message);
  }
  if (values.help) return undefined;
  const target = values.connect;
  if (target === undefined) throw new UsageError("--connect is required");
  let connect: ConnectTarget;
  if (target.startsWith("unix:") && target.length > 5) {
    connect = { transport: "unix", path: target.slice(5) };
  } else if (target.startsWith("tcp:")) {
    connect = { transport: "tcp", ...hostPort(target.slice(4), "--connect tcp:") };
    if (connect.port === 0) throw new UsageError("--connect tcp: needs a port other than 0");
  } else {
    throw new UsageError(`--connect must be unix:PATH or tcp:HOST:PORT, got "${target}"`);
  }
  const resume = values.resume ?? "reconnected";
  if (resume !== "continued" && resume !== "reconnected") {
    throw new UsageError(`--resume must be continued or reconnected, got "${resume}"`);
  }
  if (values.resume !== undefined && values.state === undefined) {
    throw new UsageError("--resume needs --state");
  }
  if (values.state === "") throw new UsageError("--state needs a file name");
  if (values["key-file"] !== undefined && values.state === undefined) {
    throw new UsageError("--key-file needs --state");
  }
  if (values["key-file"] === "") throw new UsageError("--key-file needs a file name");
  if (values.standby && values.state === undefined) {
    throw new UsageError("--standby needs --state");
  }
  if (values.standby && values.resume === "reconnected") {
    throw new UsageError("--standby resumes continued: it is connected before the hand-off");
  }
  const listen = values.listen === undefined ? undefined : hostPort(values.listen, "--listen");
  for (const flag of ["token-file", "no-auth", "allow-host"] as const) {
    if (values[flag] !== undefined && listen === undefined) {
      throw new UsageError(`--${flag} needs --listen`);
    }
  }
  if (values["no-auth"] && values["token-file"] !== undefined) {
    throw new UsageError("--no-auth and --token-file contradict each other");
  }
  if (values["token-file"] === "") throw new UsageError("--token-file needs a file name");
  if (values["no-auth"] && listen !== undefined && !isLoopback(listen.hostname)) {
    throw new UsageError(
      `--no-auth needs --listen on a loopback address (127.0.0.1, ::1, localhost), not ` +
        `${listen.hostname}: without a token, whoever reaches the port has the guest's ` +
        "clipboard and mouse",
    );
  }
  const allowHosts = (values["allow-host"] ?? []).map((name) => name.toLowerCase());
  for (const name of allowHosts) {
    if (!/^[a-z0-9]([a-z0-9-]*[a-z0-9])?(\.[a-z0-9]([a-z0-9-]*[a-z0-9])?)*$/.test(name)) {
      throw new UsageError(`--allow-host must be a host name, got "${name}"`);
    }
  }
  let maxClipboard: number | undefined;
  if (values["max-clipboard"] !== undefined) {
    maxClipboard = Number(values["max-clipboard"]);
    if (!/^\d+$/.test(values["max-clipboard"]) || maxClipboard > 0x7fff_ffff) {
      throw new UsageError(
        `--max-clipboard must be a number of bytes up to 2147483647, got "${
          values["max-clipboard"]
        }"`,
      );
    }
  }
  return {
    connect,
    ...(values.state === undefined ? {} : { state: values.state }),
    ...(values["key-file"] === undefined ? {} : { keyFile: values["key-file"] }),
    resume: values.standby ? "continued" : resume,
    standby: values.standby ?? false,
    ...(listen === undefined ? {} : { listen }),
    ...(values["no-auth"] ? { noAuth: true } : {}),
    ...(values["token-file"] === undefined ? {} : { tokenFile: values["token-file"] }),
    ...(allowHosts.length === 0 ? {} : { allowHosts }),
    mouse: !values["no-mouse"],
    clipboard: !values["no-clipboard"],
    ...(maxClipboard === undefined ? {} : { maxClipboard }),
  };
}

/** `unix:PATH` or `tcp:HOST:PORT`, for log lines. */
export function describeTarget(target: ConnectTarget): string {
  return target.transport === "unix"
    ? `unix:${target.path}`
    : `tcp:${
      target.hostname.includes(":") ? `[${target.hostname}]` : target.hostname
    }:${target.port}`;
}
