// The pipeline fuzz targets: HostSession and GuestSession, each run by its
// pipeline over an in-memory transport, fed a peer's bytes (messages the
// peer would send, captures, and in hostile programs garbage and lies)
// with the session's own calls interleaved: grab, release, request, mouse,
// checkpoint and restore, close and abort. What the session writes is
// checked for framing; every promise it hands out must settle.
import {
  ClipboardError,
  createGuestPipeline,
  createHostPipeline,
  type GuestPipelineOptions,
  type HostPipeline,
  type HostPipelineOptions,
  MessageType,
} from "../mod.ts";
import { ChunkReader } from "../src/wire/_chunk_reader.ts";
import { MessageReader } from "../src/wire/_message_reader.ts";
import { countAllocations, stopCounting } from "./_alloc.ts";
import { Source } from "./_fuzz_source.ts";
import {
  describe,
  type FuzzTarget,
  hexHead,
  lateViolations,
  MiB,
  outcome,
  Run,
  safe,
  turn,
  type Violation,
} from "./_fuzz_run.ts";
import {
  BOUNDED,
  captureSlice,
  clipboardMessage,
  cutReads,
  frame,
  hugeReads,
  LINUX_CAPS,
  loadCaptures,
  lyingMessage,
  mutate,
  mutateCheckpoint,
  peerMessage,
  type PeerModel,
  QEMU_CAPS,
} from "./_fuzz_wire.ts";
import { concat, prng, randBytes, u32s } from "./_helpers.ts";

/** A transport whose reads are what the program feeds, one read per piece. */
class Feed {
  readonly #queue: Uint8Array[] = [];
  #ended = false;
  #wake: (() => void) | undefined;
  readonly readable = new ReadableStream<Uint8Array>({
    pull: async (controller) => {
      while (this.#queue.length === 0 && !this.#ended) {
        await new Promise<void>((resolve) => this.#wake = resolve);
      }
      const next = this.#queue.shift();
      if (next === undefined) return controller.close();
      controller.enqueue(next);
    },
  }, { highWaterMark: 0 });
  /** What the pipelines wrote, by connection (a reconnect starts a new one). */
  readonly written: { by: number; bytes: Uint8Array }[] = [];
  connection = 0;
  readonly writable = new WritableStream<Uint8Array>({
    write: (bytes) => {
      if (this.written.length < 10_000) {
        this.written.push({ by: this.connection, bytes: bytes.slice() });
      }
    },
  });

  get waiting(): number {
    return this.#queue.length;
  }

  push(reads: Uint8Array[]): void {
    for (const read of reads) this.#queue.push(read);
    this.#wake?.();
  }

  end(): void {
    this.#ended = true;
    this.#wake?.();
  }
}

const PROVIDERS = ["sync", "sync", "async", "none", "empty", "throw", "reject", "never"] as const;

/** A clipboard provider that answers, fails, or never answers, as the input says. */
function provider(
  src: Source,
  run: Run,
): (s: number, t: number) => Uint8Array | undefined | Promise<Uint8Array | undefined> {
  const mode = src.pick(PROVIDERS);
  const size = src.chance(0.9) ? src.int(256) : src.int(3000);
  const data = randBytes(prng(src.seed()), size);
  const delay = src.int(3);
  return () => {
    run.signature.add(`provide:${mode}`);
    switch (mode) {
      case "sync":
        return data;
      case "async":
        return new Promise((resolve) => setTimeout(() => resolve(data), delay));
      case "none":
        return undefined;
      case "empty":
        return new Uint8Array(0);
      case "throw":
        throw new Error("the fuzzer's provider failed");
      case "reject":
        return Promise.reject(new Error("the fuzzer's provider rejected"));
      case "never":
        return new Promise(() => {});
    }
  };
}

/** Limits and options shared by both pipeline kinds. */
function pipelineLimits(src: Source) {
  const maxMessageSize = src.pick([undefined, undefined, 4096, 65_536, MiB]);
  const maxBuffered = src.pick([undefined, undefined, 4096, 256 * 1024]);
  return {
    ...(maxMessageSize === undefined ? {} : { maxMessageSize }),
    ...(maxBuffered === undefined ? {} : { maxBuffered }),
    ...(src.chance(0.2) ? { maxRequests: src.range(1, 4) } : {}),
    ...(src.chance(0.2) ? { maxGrabTypes: src.range(1, 8) } : {}),
    ...(src.chance(0.2) ? { maxCapsWords: src.range(1, 4) } : {}),
    ...(src.chance(0.3) ? { chunkSize: src.pick([20, 21, 100, 2047]) } : {}),
    ...(src.chance(0.2) ? { copy: true } : {}),
    requestTimeout: src.pick([0, 0, 1, 5, 30_000]),
  };
}

/** A promise the program must see settle. */
interface Tracked {
  what: string;
  settled: boolean;
}

/** What a session's `grab`, `release` and `request` look like to a program. */
interface Clipboard {
  grab(selection: number, types: readonly number[]): void;
  release(selection: number): void;
  request(
    selection: number,
    type: number,
    options?: { timeout?: number; signal?: AbortSignal },
  ): Promise<Uint8Array>;
}

/** One pipeline program: its transport, its peer, and what it must see settle. */
class Program {
  readonly feed = new Feed();
  readonly tracked: Tracked[] = [];
  readonly controller = new AbortController();
  readonly abortReason = new Error("the fuzzer aborted");
  readonly limits: ReturnType<typeof pipelineLimits>;
  readonly hostile: boolean;
  readonly model: PeerModel;
  /** The session's requests not settled yet, for the peer to answer. */
  readonly waiting: [number, number][] = [];
  /** Bytes fed. */
  fed = 0;
  readonly #counter = countAllocations();

  constructor(
    readonly run: Run,
    readonly src: Source,
    readonly who: "host" | "guest",
    offers: (selection: number) => readonly number[] | undefined,
  ) {
    this.limits = pipelineLimits(src);
    this.hostile = src.chance(0.4);
    this.model = {
      layout: { selection: true, grabSerial: true },
      serials: [0, 0, 0],
      offers: () => {
        const out: [number, readonly number[]][] = [];
        for (let s = 0; s < 3; s++) {
          const types = safe(() => offers(s));
          if (types !== undefined) out.push([s, types]);
        }
        return out;
      },
      waiting: () => this.waiting,
    };
  }

  /** Largest allocation so far. */
  get largest(): number {
    return this.#counter.peek().largest;
  }

  log(options: object): void {
    this.run.log(
      `${this.hostile ? "hostile " : ""}${this.who} pipeline ${
        JSON.stringify({ ...options, signal: undefined })
      }`,
    );
  }

  /** `promise` must settle, and reject only with a domain error (or `allowed`). */
  track(what: string, promise: Promise<unknown>, allowed: unknown[] = []): void {
    const entry: Tracked = { what, settled: false };
    this.tracked.push(entry);
    promise.then(
      () => {
        entry.settled = true;
        this.run.signature.add(`${what.replace(/ \d+(\/\d+)?$/, "")}:ok`);
      },
      (error) => {
        entry.settled = true;
        try {
          this.run.expectDomain(error, what, [this.abortReason, ...allowed]);
        } catch (violation) {
          lateViolations.push(violation as Violation);
        }
      },
    );
  }

  /** Whether a pipeline's `done` settled: it failed or was aborted. */
  get ended(): boolean {
    return this.tracked.some((t) => t.what.startsWith("done") && t.settled);
  }

  /** The peer announces itself, usually first. */
  announce(caps: number): void {
    if (!this.src.chance(0.9)) return;
    this.run.log(`the peer announces caps 0x${caps.toString(16)}`);
    this.feed.push([frame(this.src, MessageType.ANNOUNCE_CAPABILITIES, u32s(1, caps))]);
  }

  /**
   * Feeds one step of the peer's bytes: its messages, whole chunks of a
   * capture, and, when the program is hostile, sometimes garbage, lies and
   * mutations (a framing error ends the stream, so a clean program reaches
   * deeper states).
   */
  async feedStep(caps: number, capture: Uint8Array, starts: number[]): Promise<void> {
    const src = this.src;
    const hostile = this.hostile;
    const parts: Uint8Array[] = [];
    const n = src.range(1, 4);
    for (let i = 0; i < n; i++) {
      const r = src.int(19);
      if (r === 0) parts.push(captureSlice(src, capture, starts, !hostile || src.chance(0.5)));
      else if (hostile && r === 1) parts.push(randBytes(prng(src.seed()), src.int(32)));
      else if (hostile && r === 2) {
        parts.push(lyingMessage(src, this.limits.maxMessageSize ?? 64 * MiB));
      } else parts.push(peerMessage(src, this.model, caps));
    }
    let bytes = concat(...parts);
    if (hostile && src.chance(0.15)) bytes = mutate(src, bytes, 3);
    const reads = cutReads(src, bytes, 2000);
    this.fed += bytes.length;
    this.run.size += bytes.length;
    this.run.reads += reads.length;
    this.run.log(`feed ${bytes.length} bytes in ${reads.length} reads: ${hexHead(bytes, 64)}`);
    this.feed.push(reads);
    // Mostly, let the pipeline read them before the next call.
    if (src.chance(0.6)) {
      this.run.waits++;
      await turn();
    }
  }

  /**
   * The peer sends one clipboard message (0 grab, 1 request for what the
   * session offers, 2 data for what it asked), and the pipeline reads it.
   */
  async peer(kind: number): Promise<void> {
    const bytes = clipboardMessage(this.src, this.model, kind);
    this.fed += bytes.length;
    this.run.size += bytes.length;
    this.run.reads++;
    this.run.log(`the peer sends ${["a grab", "a request", "data"][kind]}: ${hexHead(bytes, 64)}`);
    this.feed.push([bytes]);
    this.run.waits++;
    await turn();
  }

  async wait(): Promise<void> {
    const turns = this.src.range(1, 3);
    this.run.waits += turns;
    this.run.log(`wait ${turns}`);
    for (let i = 0; i < turns; i++) await turn();
  }

  grab(session: Clipboard): void {
    const sel = this.src.int(2);
    const most = Math.min(3, this.limits.maxGrabTypes ?? 64);
    const types = Array.from({ length: this.src.range(1, most) }, () => this.src.range(1, 6));
    this.run.log(`${this.who} grab ${sel} [${types}]`);
    this.call("grab", () => session.grab(sel, types));
  }

  release(session: Clipboard): void {
    const sel = this.src.int(2);
    this.run.log(`${this.who} release ${sel}`);
    this.call("release", () => session.release(sel));
  }

  /** Pastes what the peer offers, mostly; sometimes with a timeout or an abort. */
  request(session: Clipboard, offer: (selection: number) => readonly number[] | undefined): void {
    const src = this.src;
    const live = [0, 1, 2].filter((s) => safe(() => offer(s)) !== undefined);
    const sel = live.length > 0 && src.chance(0.8) ? src.pick(live) : src.int(2);
    const offered = safe(() => offer(sel));
    const type = offered !== undefined && src.chance(0.8) ? src.pick(offered) : src.range(0, 6);
    const abort = src.chance(0.1) ? new AbortController() : undefined;
    const timeout = src.chance(0.2) ? { timeout: src.pick([0, 1, 3]) } : {};
    this.run.log(`${this.who} request ${sel}/${type}${abort ? " (aborted later)" : ""}`);
    const result = session.request(sel, type, {
      ...timeout,
      ...(abort ? { signal: abort.signal } : {}),
    });
    this.track(`request ${sel}/${type}`, result);
    const entry: [number, number] = [sel, type];
    this.waiting.push(entry);
    result.finally(() => this.waiting.splice(this.waiting.indexOf(entry), 1)).catch(() => {});
    if (abort) setTimeout(() => abort.abort(new Error("the fuzzer gave up")), src.int(2));
  }

  /** Now and then, closes or aborts the pipeline. */
  end(close: () => Promise<void>): void {
    const r = this.src.int(19);
    if (r === 0) {
      this.run.log("close");
      this.track("close()", close());
    } else if (r === 1) {
      this.run.log("abort");
      this.controller.abort(this.abortReason);
    }
  }

  /** A session call with good arguments: only domain errors may come out. */
  call(what: string, fn: () => unknown): void {
    try {
      fn();
    } catch (error) {
      this.run.expectDomain(error, what);
    }
  }

  /** A session call with a bad argument: a RangeError or TypeError must come out. */
  badCall(what: string, fn: () => unknown): void {
    const run = this.run;
    this.run.log(`bad call: ${what}`);
    let threw = false;
    try {
      const result = fn();
      if (result instanceof Promise) {
        threw = true;
        result.catch((error) => {
          try {
            run.expectBadArgument(error, what);
          } catch (violation) {
            lateViolations.push(violation as Violation);
          }
        });
      }
    } catch (error) {
      threw = true;
      if (error instanceof ClipboardError && error.code === "CLOSED") return;
      run.expectBadArgument(error, what);
    }
    if (!threw) run.fail("errors", `${what} did not refuse its bad argument`);
  }

  /**
   * Ends the input, waits for everything tracked to settle (failing after
   * 5 s), then checks memory and, if `trusted`, what the session wrote.
   */
  async finish(chunkSize: number, trusted: boolean): Promise<void> {
    this.run.log("end of input");
    this.feed.end();
    const deadline = Date.now() + 5000;
    try {
      while (this.tracked.some((t) => !t.settled) && Date.now() < deadline) await turn();
      await turn();
    } finally {
      this.#counter.stop();
    }
    const late = lateViolations.splice(0);
    if (late.length > 0) throw late[0];
    const pending = this.tracked.filter((t) => !t.settled).map((t) => t.what);
    if (pending.length > 0) {
      this.run.fail("pending", `5 s after the input ended, still pending: ${pending.join(", ")}`);
    }
    // What may be allocated: a message in progress within the limits, plus
    // what the session writes, which is proportional to what it is asked
    // for: at most a 3000-byte clipboard per 28 bytes of requests, and the
    // 1 MiB the pipeline queues before it pauses reading.
    const message = this.limits.maxMessageSize ?? 64 * MiB;
    const allowed = Math.min(message, this.limits.maxBuffered ?? message) + 2 * MiB +
      3100 * Math.ceil(this.fed / 28);
    if (this.largest > allowed) {
      this.run.fail(
        "memory",
        `the ${this.who} pipeline allocated a buffer of ${this.largest} bytes; the limits allow ${allowed}`,
      );
    }
    if (trusted) this.#checkOutput(chunkSize);
  }

  /** Each connection's bytes are well framed; a stream cut short at its end is allowed. */
  #checkOutput(chunkSize: number): void {
    const streams = new Map<number, Uint8Array[]>();
    for (const { by, bytes } of this.feed.written) {
      if (!streams.has(by)) streams.set(by, []);
      streams.get(by)!.push(bytes);
    }
    for (const [by, parts] of streams) {
      const reader = new MessageReader(() => {}, {
        maxMessageSize: 0xffff_ffff - 20,
        copy: false,
        checkOnly: true,
      });
      try {
        new ChunkReader(reader, { maxChunkSize: chunkSize }).push(concat(...parts));
      } catch (error) {
        this.run.fail(
          "agreement",
          `the ${this.who} wrote badly framed bytes on connection ${by}: ${describe(error)}`,
        );
      }
    }
  }
}

interface HostProgramOptions {
  /** A checkpoint to restore from first. */
  restore?: Uint8Array;
  /** A few steps only. */
  short?: boolean;
}

/**
 * A host pipeline fed a guest's bytes, with the host's calls interleaved:
 * grab, release, request, mouse, checkpoint and restore (from a mutated
 * checkpoint sometimes), close and abort.
 */
export async function hostProgram(
  run: Run,
  src: Source,
  options: HostProgramOptions = {},
): Promise<void> {
  const captures = await loadCaptures();
  const pipelines: HostPipeline[] = [];
  const current = () => pipelines.at(-1)!;
  const p = new Program(run, src, "host", (s) => current().session.hostOffer(s));
  const mouseOn = src.chance(0.9);
  const clipboardOff = src.chance(0.05);
  const huge = !options.short && options.restore === undefined && src.chance(0.03);
  const hostOptions: HostPipelineOptions = {
    ...p.limits,
    mouse: mouseOn,
    clipboard: clipboardOff ? false : {
      provide: provider(src, run),
      onGuestGrab: (s) => void run.signature.add(`guest-grab:${s}`),
      onGuestRelease: (s) => void run.signature.add(`guest-release:${s}`),
    },
    ...(src.chance(0.2) ? { maxClipboard: src.int(5000) } : {}),
    onDiagnostic: (d) => void run.signature.add(`diag:${d.code}`),
    signal: p.controller.signal,
  };
  p.log({ ...hostOptions, clipboard: !clipboardOff });
  let trusted = options.restore === undefined;
  const start = (restore: Uint8Array | undefined, resume: "continued" | "reconnected"): void => {
    let pipeline: HostPipeline;
    try {
      pipeline = createHostPipeline(p.feed, {
        ...hostOptions,
        ...(restore === undefined ? {} : { restore, resume }),
      });
    } catch (error) {
      run.expectDomain(error, "createHostPipeline with restore");
      run.log("  the checkpoint was refused; a fresh pipeline takes over");
      p.feed.connection++;
      return start(undefined, resume);
    }
    pipelines.push(pipeline);
    p.track(`done of pipeline ${pipelines.length - 1}`, pipeline.done);
    for (const r of pipeline.session.resumedRequests) {
      p.track(`resumed request ${r.selection}/${r.type}`, r.result);
    }
  };
  if (options.restore !== undefined) run.log(`restore ${options.restore.length} bytes`);
  start(options.restore, src.chance(0.7) ? "continued" : "reconnected");

  if (huge) {
    // The guest announces itself, then sends a message far over its
    // type's bound, then grabs: the grab must land, and nothing
    // proportional to the big message may be allocated.
    const type = src.pick(BOUNDED);
    const size = src.pick([4 * MiB, 8 + 4 * 10_000_000]);
    const chunk = src.pick([2048, Infinity]);
    run.log(`huge: caps, then type ${type} of ${size} bytes in chunks of ${chunk}, then a grab`);
    p.feed.push([frame(src, MessageType.ANNOUNCE_CAPABILITIES, u32s(1, LINUX_CAPS))]);
    p.feed.push(hugeReads(type, size, chunk));
    p.feed.push([frame(src, MessageType.CLIPBOARD_GRAB, u32s(0, 0, 1))]);
    p.fed += 20 + size;
    run.size += 20 + size;
    while (p.feed.waiting > 0 && !p.ended) await turn();
    for (let i = 0; i < 5; i++) await turn();
    const within = size <= (p.limits.maxMessageSize ?? 64 * MiB);
    if (within && p.largest > MiB) {
      run.fail(
        "memory",
        `a ${size}-byte type ${type} message made the host allocate ${p.largest} bytes`,
      );
    }
    if (within && !clipboardOff && !p.ended && current().session.guestOffer(0) === undefined) {
      run.fail("agreement", "the grab after the huge message was lost");
    }
  } else {
    p.announce(LINUX_CAPS);
  }
  for (let step = 0; step < (options.short ? 6 : 60) && src.more(1 / 24); step++) {
    const pipeline = current();
    const session = pipeline.session;
    const op = src.pick(HOST_OPS);
    if (op === "feed") {
      await p.feedStep(LINUX_CAPS, captures.g2h, captures.g2hChunks);
    } else if (op === "wait") {
      await p.wait();
    } else if (op === "drain") {
      run.log("drain");
      for (let i = 0; i < 50 && p.feed.waiting > 0; i++, run.waits++) await turn();
    } else if (op === "grab") {
      p.grab(session);
    } else if (op === "release") {
      p.release(session);
    } else if (op === "request") {
      p.request(session, (s) => session.guestOffer(s)?.types);
    } else if (op === "guest copies") {
      await p.peer(0);
    } else if (op === "host pastes") {
      // What the guest offers, answered at once.
      p.request(session, (s) => session.guestOffer(s)?.types);
      await p.peer(2);
    } else if (op === "guest pastes") {
      p.grab(session);
      await p.peer(1);
    } else if (op === "mouse") {
      const state = { x: src.u32(), y: src.u32(), buttons: src.int(0x7f), display: src.int(255) };
      run.log(`host mouse ${JSON.stringify(state)}`);
      if (mouseOn) p.call("mouse", () => session.mouse(state));
      else p.badCall("mouse with the mouse off", () => session.mouse(state));
    } else if (op === "checkpoint") {
      const mode = src.chance(0.5) ? "lossless" : "minimal";
      const mutated = src.chance(0.2) ? src.seed() : undefined;
      const resume = src.chance(0.8) ? "continued" : "reconnected";
      run.log(`checkpoint ${mode}${mutated === undefined ? "" : ", mutated"}, resume ${resume}`);
      let bytes: Uint8Array;
      try {
        bytes = await pipeline.checkpoint({ mode });
      } catch (error) {
        run.expectDomain(error, "checkpoint()", [p.abortReason]);
        continue;
      }
      await pipeline.done.catch(() => {});
      if (mutated !== undefined) {
        bytes = mutateCheckpoint(new Source(new Uint8Array(0), prng(mutated)), bytes);
        trusted = false;
      }
      // A reconnected guest reads a new byte stream; a continued one the same.
      if (resume === "reconnected") p.feed.connection++;
      start(bytes, resume);
    } else if (op === "bad call") {
      badHostCall(p, pipeline);
    } else {
      p.end(() => pipeline.close());
    }
  }
  await p.finish(hostOptions.chunkSize ?? 2048, trusted);
}

/** What a host program does at each step, weighted by repetition. */
const HOST_OPS = [
  ...Array<"feed">(5).fill("feed"),
  "wait",
  "wait",
  "drain",
  "grab",
  "release",
  "request",
  "guest copies",
  "guest copies",
  "host pastes",
  "host pastes",
  "guest pastes",
  "guest pastes",
  "mouse",
  "checkpoint",
  "bad call",
  "end",
] as const;

/** What a guest program does at each step, weighted by repetition. */
const GUEST_OPS = [
  ...Array<"feed">(5).fill("feed"),
  "wait",
  "wait",
  "grab",
  "release",
  "request",
  "host copies",
  "host copies",
  "guest pastes",
  "guest pastes",
  "host pastes",
  "host pastes",
  "client disconnected",
  "bad call",
  "end",
] as const;

function badHostCall(p: Program, pipeline: HostPipeline): void {
  const s = pipeline.session;
  switch (p.src.int(4)) {
    case 0:
      return p.badCall("grab(3)", () => s.grab(3, [1]));
    case 1:
      return p.badCall("grab with no types", () => s.grab(0, []));
    case 2:
      return p.badCall("request(7)", () => s.request(7, 1));
    case 3:
      return p.badCall("mouse at x=-1", () => s.mouse({ x: -1, y: 0 }));
    default:
      return p.badCall("grab of type 0", () => s.grab(0, [0]));
  }
}

/** A guest pipeline fed a host's bytes, with the guest's calls interleaved. */
async function guestProgram(run: Run, src: Source): Promise<void> {
  const captures = await loadCaptures();
  let offers: (selection: number) => readonly number[] | undefined = () => undefined;
  const p = new Program(run, src, "guest", (s) => offers(s));
  const clipboardOff = src.chance(0.05);
  const guestOptions: GuestPipelineOptions = {
    ...p.limits,
    ...(src.chance(0.2) ? { selection: false } : {}),
    ...(src.chance(0.2) ? { grabSerial: false } : {}),
    clipboard: clipboardOff ? false : {
      provide: provider(src, run),
      onHostGrab: (s) => void run.signature.add(`host-grab:${s}`),
    },
    onMouse: () => void run.signature.add("mouse"),
    onDiagnostic: (d) => void run.signature.add(`diag:${d.code}`),
    signal: p.controller.signal,
  };
  p.log({ ...guestOptions, clipboard: !clipboardOff });
  const pipeline = createGuestPipeline(p.feed, guestOptions);
  p.track("done", pipeline.done);
  const session = pipeline.session;
  offers = (s) => session.guestOffer(s);
  p.announce(QEMU_CAPS);
  for (let step = 0; step < 60 && src.more(1 / 24); step++) {
    const op = src.pick(GUEST_OPS);
    if (op === "feed") {
      await p.feedStep(QEMU_CAPS, captures.h2g, captures.h2gChunks);
    } else if (op === "wait") {
      await p.wait();
    } else if (op === "grab") {
      p.grab(session);
    } else if (op === "release") {
      p.release(session);
    } else if (op === "request") {
      p.request(session, (s) => session.hostOffer(s)?.types);
    } else if (op === "host copies") {
      await p.peer(0);
    } else if (op === "guest pastes") {
      p.request(session, (s) => session.hostOffer(s)?.types);
      await p.peer(2);
    } else if (op === "host pastes") {
      p.grab(session);
      await p.peer(1);
    } else if (op === "client disconnected") {
      run.log("client disconnected");
      p.call("clientDisconnected", () => session.clientDisconnected());
    } else if (op === "bad call") {
      p.badCall("guest grab(5)", () => session.grab(5, [1]));
    } else {
      p.end(() => pipeline.close());
    }
  }
  await p.finish(guestOptions.chunkSize ?? 2048, true);
}

/** Runs a pipeline program, watching for unhandled rejections. */
export function pipelineTarget(
  name: string,
  weight: number,
  program: (run: Run, src: Source) => Promise<void>,
): FuzzTarget {
  return {
    name,
    weight,
    run(src) {
      const run = new Run();
      return outcome(run, async () => {
        const reasons: unknown[] = [];
        const listener = (event: Event) => {
          reasons.push((event as Event & { reason: unknown }).reason);
          event.preventDefault();
        };
        const scope = globalThis as unknown as EventTarget;
        const events = typeof scope.addEventListener === "function";
        if (events) scope.addEventListener("unhandledrejection", listener);
        try {
          lateViolations.length = 0;
          await program(run, src);
          await turn();
        } finally {
          stopCounting(); // when a violation cut the program short
          if (events) scope.removeEventListener("unhandledrejection", listener);
        }
        if (reasons.length > 0) run.fail("errors", `unhandled rejection: ${describe(reasons[0])}`);
      });
    },
  };
}

/** The host and guest targets. */
export const hostTarget: FuzzTarget = pipelineTarget(
  "host",
  3,
  (run, src) => hostProgram(run, src),
);
export const guestTarget: FuzzTarget = pipelineTarget("guest", 2, guestProgram);
