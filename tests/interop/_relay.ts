// A host relay for the interop scenarios: `createHostPipeline` over a unix socket of the guest
// stack, with handlers that record what the session reports and a tap on both directions of
// the socket. The tap parses chunks and messages on its own (not with src/), so a scenario can
// assert on what crossed the wire, chunk sizes included; payloads are decoded with
// `decodeMessage` in the layout the Linux agent and HostSession negotiate.
//
// Hand-offs. `relay.handOff()` takes the pipeline's checkpoint, then half-closes the socket: the
// guest stack sends nothing more to it and closes its end, and the relay reads what is left
// until EOF. Those are guest bytes the stack had sent to this relay but the pipeline had not
// read (`checkpoint()` releases the reader without reading more). The next relay restores the
// checkpoint with `resume: "continued"` and gets these `unread` bytes before its own socket's,
// so the guest's byte stream continues without a byte lost or doubled, as behind a proxy that
// holds the guest's port. The taps are handed on too, so a message split across the hand-off is
// parsed whole (and listed on the relay that completed it).
import {
  type CheckpointMode,
  createHostPipeline,
  decodeMessage,
  type HostPipeline,
  type HostPipelineOptions,
  type HostSession,
  type MessagePayload,
  type SessionDiagnostic,
} from "../../mod.ts";
import { concat } from "../_helpers.ts";
import { type GuestStack, pollUntil, withTimeout } from "./_guest_stack.ts";

/** One message seen on the socket. */
export interface WireMessage {
  /** `"in"`: from the guest; `"out"`: from the relay. */
  dir: "in" | "out";
  /** The relay whose transport carried the message's last byte. */
  relay: string;
  port: number;
  type: number;
  /** Payload sizes of the chunks that carried it. */
  chunks: number[];
  /** Decoded with CLIPBOARD_SELECTION and CLIPBOARD_GRAB_SERIAL. */
  payload: MessagePayload;
}

/** What the session reported through its handlers. */
export type RelayEvent =
  | { kind: "guest-caps"; caps: readonly number[] }
  | { kind: "guest-grab"; selection: number; types: readonly number[] }
  | { kind: "guest-release"; selection: number }
  | { kind: "provide"; selection: number; type: number }
  | { kind: "diagnostic"; diagnostic: SessionDiagnostic }
  | { kind: "message"; payload: MessagePayload };

/** Options of {@linkcode openRelay}: the pipeline's, plus a provider override. */
export interface RelayOptions extends Omit<HostPipelineOptions, "clipboard"> {
  /** A name for failure reports. */
  name?: string;
  /**
   * Serves the guest's pastes instead of the data given to {@linkcode Relay.copy}, e.g. a
   * provider that never answers, or one that has nothing.
   */
  provide?: (
    selection: number,
    type: number,
  ) => Uint8Array | undefined | Promise<Uint8Array | undefined>;
  /**
   * Guest bytes to deliver before the socket's: the previous relay's `unread` bytes, in a
   * continued hand-off.
   */
  unread?: Uint8Array;
  /** The relay this one continues (a continued hand-off): its wire taps carry on here. */
  continues?: Relay;
}

/** What {@linkcode Relay.handOff} returns. */
export interface HandOff {
  /** `pipeline.checkpoint()`. */
  checkpoint: Uint8Array;
  /** Guest bytes sent to this relay's socket that its pipeline had not read. */
  unread: Uint8Array;
  /** Milliseconds `pipeline.checkpoint()` took. */
  checkpointMs: number;
  /** Milliseconds from the call until the socket was drained and closed. */
  totalMs: number;
}

/** A relay connected to a guest stack. */
export interface Relay {
  readonly name: string;
  readonly pipeline: HostPipeline;
  readonly session: HostSession;
  readonly events: RelayEvent[];
  readonly wire: WireMessage[];
  /** The host copies: the provider serves `data` (type → bytes) and the session grabs. */
  copy(selection: number, data: ReadonlyMap<number, Uint8Array>): void;
  /** Resolves with the first event at index ≥ `since` that `match` accepts. */
  waitEvent<T extends RelayEvent["kind"]>(
    kind: T,
    match: (event: Extract<RelayEvent, { kind: T }>) => boolean,
    since: number,
    timeoutMs?: number,
  ): Promise<Extract<RelayEvent, { kind: T }>>;
  /** Resolves with the first wire message at index ≥ `since` that `match` accepts. */
  waitWire(
    dir: "in" | "out",
    match: (payload: MessagePayload) => boolean,
    since: number,
    timeoutMs?: number,
  ): Promise<WireMessage>;
  /** Serials of the grabs of `selection` that went `dir` on this relay's socket, in order. */
  grabSerials(dir: "in" | "out", selection: number): (number | undefined)[];
  /** Resolves once the guest answered the relay's caps (caps with request=0 arrived). */
  negotiated(timeoutMs?: number): Promise<void>;
  /**
   * Lets the pipeline read at most `bytes` more guest bytes (`undefined`: no limit); a read that
   * goes past the limit is split, and its rest kept for later or for the next relay.
   */
  limitReads(bytes: number | undefined): void;
  /** Guest bytes the pipeline has read from this relay's transport. */
  bytesRead(): number;
  /**
   * Hands the session off: `pipeline.checkpoint()`, then the socket is half-closed and drained
   * (see the top of this file). The relay is done afterwards.
   */
  handOff(options?: { mode?: CheckpointMode }): Promise<HandOff>;
  /** `pipeline.close()`, bounded; then the socket is closed for sure. */
  close(): Promise<void>;
  /** The wire transcript, one line per message, for failure reports. */
  transcript(): string;
}

/** Both clipboard caps negotiated, as between HostSession and the Linux agent. */
const LAYOUT = { selection: true, grabSerial: true } as const;

/** Parses one direction of the byte stream into messages, remembering chunk sizes. */
class WireTap {
  readonly #dir: "in" | "out";
  /** Where complete messages go: the wire of the relay whose transport the bytes crossed. */
  sink: { wire: WireMessage[]; name: string };
  #buffer = new Uint8Array(0);
  /** Per port: the message being assembled and the sizes of its chunks so far. */
  readonly #partial = new Map<number, { parts: Uint8Array[]; bytes: number; chunks: number[] }>();
  #broken: string | undefined;

  constructor(dir: "in" | "out", sink: { wire: WireMessage[]; name: string }) {
    this.#dir = dir;
    this.sink = sink;
  }

  push(bytes: Uint8Array): void {
    if (this.#broken !== undefined) return;
    const buffer = new Uint8Array(this.#buffer.length + bytes.length);
    buffer.set(this.#buffer);
    buffer.set(bytes, this.#buffer.length);
    const view = new DataView(buffer.buffer);
    let at = 0;
    while (buffer.length - at >= 8) {
      const port = view.getUint32(at, true);
      const size = view.getUint32(at + 4, true);
      if (buffer.length - at - 8 < size) break;
      this.#chunk(port, buffer.subarray(at + 8, at + 8 + size));
      at += 8 + size;
    }
    this.#buffer = buffer.slice(at);
  }

  #chunk(port: number, data: Uint8Array): void {
    const partial = this.#partial.get(port) ?? { parts: [], bytes: 0, chunks: [] };
    this.#partial.set(port, partial);
    partial.parts.push(data);
    partial.bytes += data.length;
    partial.chunks.push(data.length);
    if (partial.bytes < 20) return;
    const whole = joined(partial.parts, partial.bytes);
    const view = new DataView(whole.buffer, whole.byteOffset, whole.byteLength);
    const end = 20 + view.getUint32(16, true);
    if (whole.length < end) {
      partial.parts = [whole];
      return;
    }
    if (whole.length > end) {
      this.#broken = `a chunk carried bytes past its message (port ${port})`;
      return;
    }
    this.#partial.delete(port);
    const message = {
      port,
      type: view.getUint32(4, true),
      opaque: view.getBigUint64(8, true),
      data: whole.subarray(20),
    };
    this.sink.wire.push({
      dir: this.#dir,
      relay: this.sink.name,
      port,
      type: message.type,
      chunks: partial.chunks,
      payload: decodeMessage(message, LAYOUT),
    });
  }
}

function joined(parts: Uint8Array[], size: number): Uint8Array {
  if (parts.length === 1) return parts[0]!;
  const out = new Uint8Array(size);
  let at = 0;
  for (const part of parts) {
    out.set(part, at);
    at += part.length;
  }
  return out;
}

/** One line per wire message. */
export function describe(message: WireMessage): string {
  const p = message.payload;
  const fields: string[] = [p.kind];
  if ("selection" in p) fields.push(`sel=${p.selection}`);
  if ("serial" in p && p.serial !== undefined) fields.push(`serial=${p.serial}`);
  if ("types" in p) fields.push(`types=[${p.types.join(",")}]`);
  if ("type" in p && typeof p.type === "number") fields.push(`type=${p.type}`);
  if ("request" in p) fields.push(`request=${p.request}`);
  if ("caps" in p) fields.push(`caps=${p.caps.map((c) => `0x${c.toString(16)}`).join(",")}`);
  if ("data" in p && p.data instanceof Uint8Array) fields.push(`${p.data.length} B`);
  if (p.kind === "mouse_state") fields.push(`${p.x},${p.y} buttons=${p.buttons}`);
  if (p.kind === "invalid") fields.push(p.reason);
  const chunks = message.chunks.length > 4
    ? `${message.chunks.length} chunks`
    : `chunks [${message.chunks.join(", ")}]`;
  return `${message.dir === "in" ? "guest → host" : "host → guest"}: ${
    fields.join(" ")
  } (${chunks}, ${message.relay})`;
}

/** The taps of a relay, handed on to the relay that continues it. */
const tapsOf = new WeakMap<Relay, { in: WireTap; out: WireTap }>();

/** Connects a host pipeline to the stack's socket. */
export async function openRelay(stack: GuestStack, options: RelayOptions = {}): Promise<Relay> {
  const { name = "relay", provide, unread, continues, ...pipelineOptions } = options;
  const conn = await stack.connect();
  const wire: WireMessage[] = [];
  const events: RelayEvent[] = [];
  const sink = { wire, name };
  const inherited = continues === undefined ? undefined : tapsOf.get(continues);
  const tapIn = inherited?.in ?? new WireTap("in", sink);
  const tapOut = inherited?.out ?? new WireTap("out", sink);
  tapIn.sink = sink;
  tapOut.sink = sink;
  // The socket is read only when the pipeline reads (highWaterMark 0), so what the pipeline has
  // not asked for stays in the socket; once handed off, a read in progress keeps its bytes for
  // the next relay.
  const socket = conn.readable.getReader();
  let chain: Promise<unknown> = Promise.resolve();
  const readSocket = () => {
    const next = chain.then(() => socket.read());
    chain = next.catch(() => {});
    return next;
  };
  let handedOff = false;
  const left: Uint8Array[] = [];
  // Bytes taken from the socket (or handed on by the previous relay) but not yet by the pipeline.
  let held = unread !== undefined && unread.length > 0 ? unread : undefined;
  let allowance: number | undefined;
  let bytesRead = 0;
  let wake: (() => void) | undefined;
  const readable = new ReadableStream<Uint8Array>({
    async pull(controller) {
      while (allowance === 0 && !handedOff) {
        await new Promise<void>((resolve) => wake = resolve);
      }
      if (handedOff) return;
      let bytes = held;
      held = undefined;
      if (bytes === undefined) {
        const result = await readSocket();
        if (handedOff) {
          if (!result.done) left.push(result.value);
          return;
        }
        if (result.done) return controller.close();
        bytes = result.value;
      }
      if (allowance !== undefined) {
        if (bytes.length > allowance) {
          held = bytes.subarray(allowance);
          bytes = bytes.subarray(0, allowance);
        }
        allowance -= bytes.length;
      }
      bytesRead += bytes.length;
      tapIn.push(bytes);
      controller.enqueue(bytes);
    },
    cancel: (reason) => socket.cancel(reason),
  }, { highWaterMark: 0 });
  const writer = conn.writable.getWriter();
  const writable = new WritableStream<Uint8Array>({
    async write(bytes) {
      tapOut.push(bytes);
      await writer.write(bytes);
    },
    close: () => writer.close(),
    abort: (reason) => writer.abort(reason),
  });
  const hostData = new Map<string, Uint8Array>();
  const pipeline = createHostPipeline({ readable, writable }, {
    ...pipelineOptions,
    onGuestCaps: (caps) => {
      events.push({ kind: "guest-caps", caps });
      pipelineOptions.onGuestCaps?.(caps);
    },
    onDiagnostic: (diagnostic) => {
      events.push({ kind: "diagnostic", diagnostic });
      pipelineOptions.onDiagnostic?.(diagnostic);
    },
    onMessage: (payload, message) => {
      events.push({ kind: "message", payload });
      pipelineOptions.onMessage?.(payload, message);
    },
    clipboard: {
      onGuestGrab: (selection, types) => events.push({ kind: "guest-grab", selection, types }),
      onGuestRelease: (selection) => events.push({ kind: "guest-release", selection }),
      provide: (selection, type) => {
        events.push({ kind: "provide", selection, type });
        return provide ? provide(selection, type) : hostData.get(`${selection}/${type}`);
      },
    },
  });
  let closing: Promise<void> | undefined;
  const closeSocket = () => {
    try {
      conn.close();
    } catch { /* closed already */ }
  };
  const relay: Relay = {
    name,
    pipeline,
    session: pipeline.session,
    events,
    wire,
    copy(selection, data) {
      for (const key of [...hostData.keys()]) {
        if (key.startsWith(`${selection}/`)) hostData.delete(key);
      }
      for (const [type, bytes] of data) hostData.set(`${selection}/${type}`, bytes);
      pipeline.session.grab(selection, [...data.keys()]);
    },
    async waitEvent(kind, match, since, timeoutMs = 10_000) {
      type E = Extract<RelayEvent, { kind: typeof kind }>;
      const find = () =>
        events.slice(since).find((e): e is E => e.kind === kind && match(e as E)) as E | undefined;
      await pollUntil(() => find() !== undefined, timeoutMs, `${name}: a ${kind} event`);
      return find()!;
    },
    async waitWire(dir, match, since, timeoutMs = 10_000) {
      const find = () => wire.slice(since).find((m) => m.dir === dir && match(m.payload));
      await pollUntil(() => find() !== undefined, timeoutMs, `${name}: a message ${dir}`);
      return find()!;
    },
    grabSerials: (dir, selection) =>
      wire.flatMap((m) =>
        m.dir === dir && m.payload.kind === "clipboard_grab" && m.payload.selection === selection
          ? [m.payload.serial]
          : []
      ),
    async negotiated(timeoutMs = 10_000) {
      const answered = () =>
        wire.some((m) =>
          m.dir === "in" && m.payload.kind === "announce_capabilities" && !m.payload.request
        ) &&
        events.filter((e) => e.kind === "guest-caps").length ===
          wire.filter((m) => m.dir === "in" && m.payload.kind === "announce_capabilities").length;
      await pollUntil(answered, timeoutMs, `${name}: the guest's answer to our caps`);
    },
    limitReads(bytes) {
      allowance = bytes;
      wake?.();
    },
    bytesRead: () => bytesRead,
    async handOff(options = {}) {
      const t0 = performance.now();
      handedOff = true;
      if (held !== undefined) left.push(held);
      held = undefined;
      wake?.();
      const checkpoint = await pipeline.checkpoint(options);
      const checkpointMs = performance.now() - t0;
      await withTimeout(pipeline.done, 10_000, `${name}: done after the checkpoint`);
      closing ??= (async () => {
        try {
          await conn.closeWrite();
          for (;;) {
            const result = await withTimeout(readSocket(), 10_000, `${name}: EOF after half-close`);
            if (result.done) break;
            left.push(result.value);
          }
        } finally {
          closeSocket();
        }
      })();
      await closing;
      return {
        checkpoint,
        unread: concat(...left),
        checkpointMs,
        totalMs: performance.now() - t0,
      };
    },
    close() {
      allowance = undefined;
      wake?.();
      closing ??= (async () => {
        try {
          await withTimeout(pipeline.close(), 10_000, `${name}: pipeline.close()`);
        } finally {
          closeSocket();
        }
      })();
      return closing;
    },
    transcript: () => wire.map(describe).join("\n"),
  };
  tapsOf.set(relay, { in: tapIn, out: tapOut });
  return relay;
}
