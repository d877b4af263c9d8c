// The fuzz targets: each turns a string of decision bytes (`Source`) into a
// program against the library, runs it, and checks the invariants:
// - errors: only `VdagentProtocolError`, `ClipboardError` and
//   `CheckpointError` escape, and `RangeError`/`TypeError` only where the
//   program passed a bad argument on purpose; no unhandled rejection;
// - pending: every `request()`, `close()` and `checkpoint()` promise and
//   every pipeline's `done` settles once the input has ended;
// - memory: no buffer larger than the configured limits is allocated
//   (counted at the `Uint8Array` constructor, see `_alloc.ts`), and the
//   reassembly core never holds more than `maxBuffered`;
// - agreement: the stream stages agree with the synchronous cores, a
//   hand-off at any byte reassembles as the unbroken stream does, decoded
//   payloads re-encode to themselves, checkpoints round-trip, and what a
//   session writes is well framed.
// The time invariant (100 ms per MiB) is measured around `run` by the
// fuzzer (`scripts/fuzz.ts`), not here, so the regression replay
// (`fuzz_regressions_test.ts`) has no timing assertion.
import { isDeepStrictEqual } from "node:util";
import {
  type AgentMessage,
  type CheckpointState,
  ChunkDeframer,
  decodeCheckpoint,
  decodeMessage,
  describeCheckpoint,
  encodeCheckpoint,
  encodeMessage,
  maxPayloadSize,
  MessageAssembler,
  type PayloadOptions,
  VdagentProtocolError,
} from "../mod.ts";
import { ChunkReader } from "../src/wire/_chunk_reader.ts";
import { inboundBytes } from "../src/wire/_inbound_state.ts";
import { MessageReader } from "../src/wire/_message_reader.ts";
import { guestTarget, hostProgram, hostTarget, pipelineTarget } from "./_fuzz_programs.ts";
import {
  describe,
  type FuzzTarget,
  hexHead,
  MiB,
  type Outcome,
  outcome,
  plain,
  Run,
  Violation,
  withinMemory,
} from "./_fuzz_run.ts";
import { Source } from "./_fuzz_source.ts";
import {
  BOUNDED,
  captureSlice,
  cutReads,
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
import { collect, concat, prng, randBytes, u32s, withView } from "./_helpers.ts";
import { KINDS, LAYOUTS, randomPayload } from "./_payloads.ts";

export type { FuzzTarget, Invariant, Outcome } from "./_fuzz_run.ts";

// ---------------------------------------------------------------------------
// payload: every decoder, every layout and limit

const payloadTarget: FuzzTarget = {
  name: "payload",
  weight: 2,
  run(src) {
    const run = new Run();
    return outcome(run, async () => {
      const count = src.range(1, 16);
      for (let i = 0; i < count; i++) {
        const type = src.chance(0.9) ? src.int(17) : src.u32();
        const layout = src.pick(LAYOUTS);
        const options: PayloadOptions = { ...layout };
        if (src.chance(0.3)) options.maxGrabTypes = src.range(1, 80);
        if (src.chance(0.3)) options.maxCapsWords = src.range(1, 20);
        let data: Uint8Array;
        if (src.chance(0.7)) {
          const from = src.pick(LAYOUTS);
          const m = encodeMessage(randomPayload(prng(src.seed()), from, src.pick(KINDS)), from);
          data = src.chance(0.7) ? mutate(src, m.data, 4) : m.data.slice();
        } else {
          data = randBytes(prng(src.seed()), src.int(src.chance(0.9) ? 64 : 600));
        }
        run.size += data.length;
        run.log(`decode type ${type} [${data.length} bytes] ${JSON.stringify(options)}`);
        await withinMemory(
          run,
          "decodeMessage",
          () => 4 * data.length + 16_384,
          () => checkPayload(run, type, data, options),
        );
      }
    });
  },
};

function checkPayload(run: Run, type: number, data: Uint8Array, options: PayloadOptions): void {
  let p;
  try {
    p = decodeMessage({ type, data }, options);
  } catch (error) {
    return run.fail("errors", `decodeMessage threw ${describe(error)}`);
  }
  run.signature.add(`${p.kind}${p.kind === "invalid" ? `:${p.code}` : ""}`);
  if (data.length > maxPayloadSize(type, options) && p.kind !== "invalid") {
    run.fail(
      "agreement",
      `a ${data.length}-byte type ${type} is over maxPayloadSize but decoded as ${p.kind}`,
    );
  }
  const skipped = decodeMessage({ type, data: new Uint8Array(0), skipped: data.length }, options);
  if (skipped.kind !== "invalid") run.fail("agreement", "a skipped message decoded as valid");
  if (p.kind === "invalid" || p.kind === "unknown") {
    if (p.type !== type || p.data !== data && !isDeepStrictEqual(p.data, data)) {
      run.fail("agreement", `an ${p.kind} payload lost its type or bytes`);
    }
    return;
  }
  let again;
  try {
    const m = encodeMessage(p, options);
    if (m.type !== type) run.fail("agreement", `${p.kind} re-encoded as type ${m.type}`);
    again = decodeMessage(m, options);
  } catch (error) {
    if (error instanceof Violation) throw error;
    return run.fail("agreement", `a decoded ${p.kind} does not re-encode: ${describe(error)}`);
  }
  if (!isDeepStrictEqual(plain(again), plain(p))) {
    run.fail(
      "agreement",
      `${p.kind} does not survive re-encoding: ${JSON.stringify(plain(p))} → ${
        JSON.stringify(plain(again))
      }`,
    );
  }
}

// ---------------------------------------------------------------------------
// wire: the deframer and assembler, cores and streams, at random read sizes

interface Delivered {
  port: number;
  type: number;
  opaque: bigint;
  data: Uint8Array;
  skipped: number | undefined;
}

interface WireConfig {
  maxMessageSize: number;
  maxBuffered: number | undefined;
  bound: ((type: number) => number) | undefined;
  boundName: string;
  copy: boolean;
}

/** Feeds reads through fresh cores; checks the bounds after every read. */
function runCores(
  run: Run,
  config: WireConfig,
  reads: Iterable<Uint8Array>,
  finish: boolean,
): {
  messages: Delivered[];
  error: VdagentProtocolError | undefined;
  chunks: ChunkReader;
  reader: MessageReader;
} {
  const messages: Delivered[] = [];
  const reader = new MessageReader(
    withView((port, type, opaque, data, skipped) =>
      messages.push({ port, type, opaque, data, skipped })
    ),
    {
      maxMessageSize: config.maxMessageSize,
      copy: config.copy,
      maxSizeFor: config.bound,
      maxBuffered: config.maxBuffered,
    },
  );
  const chunks = new ChunkReader(reader, { maxChunkSize: config.maxMessageSize + 20 });
  const maxBuffered = config.maxBuffered ?? config.maxMessageSize;
  let error: VdagentProtocolError | undefined;
  try {
    for (const read of reads) {
      chunks.push(read);
      if (reader.buffered > maxBuffered) {
        run.fail(
          "memory",
          `the core holds ${reader.buffered} bytes, over maxBuffered ${maxBuffered}`,
        );
      }
    }
    if (finish) {
      chunks.finish();
      reader.finish(chunks.offset);
    }
  } catch (e) {
    if (e instanceof Violation) throw e;
    if (!(e instanceof VdagentProtocolError)) {
      run.fail("errors", `the cores threw ${describe(e)}`);
    }
    error = e;
  }
  for (const m of messages) {
    const bound = config.bound?.(m.type) ?? Infinity;
    if (m.skipped !== undefined) {
      if (!(m.skipped > bound) || m.data.length !== 0 || m.skipped > config.maxMessageSize) {
        run.fail("agreement", `type ${m.type} of ${m.skipped} bytes skipped under bound ${bound}`);
      }
    } else if (m.data.length > bound || m.data.length > config.maxMessageSize) {
      run.fail("memory", `a ${m.data.length}-byte type ${m.type} was kept over bound ${bound}`);
    }
  }
  return { messages, error, chunks, reader };
}

function sameDelivered(a: Delivered, b: Delivered, exactSkip: boolean): boolean {
  if (a.port !== b.port || a.type !== b.type || a.opaque !== b.opaque) return false;
  if ((a.skipped === undefined) !== (b.skipped === undefined)) return false;
  if (exactSkip && a.skipped !== b.skipped) return false;
  return a.data.length === b.data.length && a.data.every((x, i) => x === b.data[i]);
}

function show(m: Delivered | undefined): string {
  return m === undefined
    ? "nothing"
    : `port ${m.port} type ${m.type} ${m.data.length} bytes${
      m.skipped === undefined ? "" : ` skipped ${m.skipped}`
    }`;
}

/** Splits reads at byte `cut`: views, not copies. */
function splitReads(reads: Uint8Array[], cut: number): [Uint8Array[], Uint8Array[]] {
  const before: Uint8Array[] = [];
  const after: Uint8Array[] = [];
  let at = 0;
  for (const read of reads) {
    if (at + read.length <= cut) before.push(read);
    else if (at >= cut) after.push(read);
    else {
      before.push(read.subarray(0, cut - at));
      after.push(read.subarray(cut - at));
    }
    at += read.length;
  }
  return [before, after];
}

const wireTarget: FuzzTarget = {
  name: "wire",
  weight: 3,
  run(src) {
    const run = new Run();
    return outcome(run, async () => {
      const caps = await loadCaptures();
      const maxMessageSize = src.pick([64, 300, 4096, 65_536, MiB, 64 * MiB]);
      const boundMode = src.int(2);
      const uniform = src.pick([0, 4, 20, 64, 1000]);
      const config: WireConfig = {
        maxMessageSize,
        maxBuffered: src.chance(0.5) ? undefined : src.pick([1, 100, 4096, 65_536]),
        bound: boundMode === 0
          ? undefined
          : boundMode === 1
          ? (type) => maxPayloadSize(type)
          : () => uniform,
        boundName: ["none", "maxPayloadSize", `${uniform} for every type`][boundMode]!,
        copy: src.chance(0.3),
      };
      const model: PeerModel = {
        layout: { selection: true, grabSerial: true },
        serials: [0, 0, 0],
      };
      const parts: Uint8Array[] = [];
      const segments = src.range(1, 8);
      for (let i = 0; i < segments; i++) {
        switch (src.int(6)) {
          case 5:
            parts.push(lyingMessage(src, maxMessageSize));
            break;
          case 0:
            parts.push(captureSlice(src, caps.g2h, caps.g2hChunks));
            break;
          case 1:
            parts.push(captureSlice(src, caps.h2g, caps.h2gChunks));
            break;
          case 2:
            parts.push(randBytes(prng(src.seed()), src.int(64)));
            break;
          case 3:
            parts.push(u32s(src.pick([1, 1, 2, 0, 3]), src.u32()));
            break;
          default:
            parts.push(peerMessage(src, model, src.pick([LINUX_CAPS, QEMU_CAPS])));
        }
      }
      let bytes = concat(...parts);
      if (src.chance(0.6)) bytes = mutate(src, bytes);
      const reads = cutReads(src, bytes, 20_000);
      if (src.chance(0.03)) {
        const type = src.pick(BOUNDED);
        const size = src.pick([4 * MiB, 16 * MiB, 8 + 4 * 10_000_000]);
        reads.push(...hugeReads(type, size, src.pick([2048, 65_536, Infinity])));
        run.log(`then a type ${type} message of ${size} bytes`);
      }
      const total = reads.reduce((n, r) => n + r.length, 0);
      const cut = src.int(total);
      run.size = total;
      run.reads = 3 * reads.length;
      run.log(
        `wire: ${bytes.length} bytes in ${reads.length} reads, maxMessageSize ${maxMessageSize}, maxBuffered ${config.maxBuffered}, bound ${config.boundName}, copy ${config.copy}; hand-off at ${cut}`,
      );
      run.log(`bytes: ${hexHead(bytes)}`);
      // Nothing beyond the limits: the smaller of the message size and what
      // may be held, and with a bound for every type, that bound.
      const allowed = Math.max(
        64,
        Math.min(
          maxMessageSize,
          config.maxBuffered ?? maxMessageSize,
          boundMode === 2 ? uniform : Infinity,
        ),
      );
      const single = await withinMemory(
        run,
        "the cores",
        () => allowed,
        () => runCores(run, config, reads, true),
      );
      run.signature.add(`cores:${single.error?.code ?? "ok"}`);
      for (const m of single.messages) {
        run.signature.add(`type:${m.type > 16 ? "x" : m.type}${m.skipped ? ":skipped" : ""}`);
        for (const layout of LAYOUTS) {
          try {
            decodeMessage(m, { ...layout, maxGrabTypes: 64, maxCapsWords: 16 });
          } catch (error) {
            run.fail("errors", `decodeMessage threw ${describe(error)}`);
          }
        }
      }

      // The stream stages see the same reads.
      let streamed: Delivered[] = [];
      let streamError: unknown;
      await withinMemory(
        run,
        "the stream stages",
        () => Math.max(allowed, maxMessageSize + 20),
        async () => {
          try {
            const batches = await collect(
              ReadableStream.from(reads).pipeThrough(
                new ChunkDeframer({ maxChunkSize: maxMessageSize + 20, copy: config.copy }),
              ).pipeThrough(
                new MessageAssembler({
                  maxMessageSize,
                  copy: config.copy,
                  ...(config.bound === undefined ? {} : { maxSizeFor: config.bound }),
                  ...(config.maxBuffered === undefined ? {} : { maxBuffered: config.maxBuffered }),
                }),
              ),
            );
            streamed = batches.flat().map((m: AgentMessage) => ({ ...m, skipped: m.skipped }));
          } catch (error) {
            streamError = error;
          }
        },
      );
      if (streamError !== undefined && !(streamError instanceof VdagentProtocolError)) {
        run.fail("errors", `the stream stages errored with ${describe(streamError)}`);
      }
      // The cores also buffer a chunk's message that spans reads, where the
      // deframer hands the assembler whole chunks: only the cores may fail
      // with BUFFER_FULL where the streams go on.
      const coresFull = single.error?.code === "BUFFER_FULL";
      if (
        streamError === undefined
          ? single.error !== undefined && !coresFull
          : single.error === undefined
      ) {
        run.fail(
          "agreement",
          `the cores ${
            single.error ? `failed with ${single.error.code}` : "succeeded"
          }, the streams ${
            streamError ? `with ${(streamError as VdagentProtocolError).code}` : "succeeded"
          }`,
        );
      }
      const common = Math.min(streamed.length, single.messages.length);
      const differ = streamed.findIndex((m, i) =>
        i < common && !sameDelivered(m, single.messages[i]!, true)
      );
      const lengthOk = coresFull ||
        (single.error === undefined
          ? streamed.length === single.messages.length
          : streamed.length <= single.messages.length);
      if (!lengthOk || differ >= 0) {
        const i = differ >= 0 ? differ : common;
        run.fail(
          "agreement",
          `the streams delivered ${streamed.length} messages, the cores ${single.messages.length}; first difference at ${i}: ${
            show(streamed[i])
          } vs ${show(single.messages[i])}`,
        );
      }

      // A hand-off at `cut`: the bytes carried plus the rest reassemble as before.
      const [before, after] = splitReads(reads, cut);
      // Carried: each port's partial message (a skipped one as at most its
      // bound plus one byte), its header, and three chunk headers.
      const bound = boundMode === 2 ? uniform : boundMode === 1 ? 267 : 0;
      const carried = 2 * (Math.max(allowed, bound + 1) + 20) + 3 * 8;
      await withinMemory(run, "a hand-off", () => carried, () => {
        const a = runCores(run, config, before, false);
        if (a.error !== undefined) return;
        const carried = inboundBytes(a.chunks, a.reader);
        const b = runCores(run, config, [carried, ...after], true);
        const both = [...a.messages, ...b.messages];
        const same = both.length === single.messages.length &&
          both.every((m, i) => sameDelivered(m, single.messages[i]!, false));
        if (!same || b.error?.code !== single.error?.code) {
          const i = both.findIndex((m, i) => !sameDelivered(m, single.messages[i]!, false));
          run.fail(
            "agreement",
            `after a hand-off at byte ${cut}: ${both.length} messages and ${
              b.error?.code ?? "no error"
            }, unbroken: ${single.messages.length} and ${
              single.error?.code ?? "no error"
            }; first difference at ${i}: ${show(both[i])} vs ${show(single.messages[i])}`,
          );
        }
      });
    });
  },
};

// ---------------------------------------------------------------------------
// checkpoints: decodeCheckpoint on mutated checkpoints, and restore

/** A random host session state, which sometimes breaks encodeCheckpoint's rules. */
function randomState(src: Source): CheckpointState {
  const type = () => src.chance(0.02) ? src.pick([0, 32, -1, 1.5]) : src.range(1, 31);
  const types = (min: number) => Array.from({ length: src.range(min, 4) }, type);
  const words = (min: number) => Array.from({ length: src.range(min, 3) }, () => src.u32());
  const lossless = src.chance(0.6);
  const selections = [0, 1, 2].map(() => ({
    lastSerial: src.u32(),
    ...(src.chance(0.4) ? { hostOffer: types(src.chance(0.02) ? 0 : 1) } : {}),
    guestRequests: src.chance(0.3) ? types(0) : [],
    ...(src.chance(0.4)
      ? {
        guestOffer: src.chance(0.5)
          ? { serial: src.u32(), types: types(1) }
          : { types: types(src.chance(0.02) ? 0 : 1) },
      }
      : {}),
    hostRequests: src.chance(0.3) ? types(0) : [],
  }));
  const hostCaps = words(src.chance(0.02) ? 0 : 1);
  const state: CheckpointState = {
    mode: lossless ? "lossless" : "minimal",
    hostCaps,
    ...(src.chance(0.8) ? { guestCaps: words(1) } : {}),
    selections: [selections[0]!, selections[1]!, selections[2]!],
    ...(src.chance(0.5)
      ? {
        mouse: {
          x: src.u32(),
          y: src.u32(),
          buttons: src.u32(),
          display: src.int(255),
          sent: src.chance(0.5),
        },
      }
      : {}),
    ...(src.chance(0.3) ? { guestMaxClipboard: src.int(0x7fff_ffff) } : {}),
  };
  if (lossless && src.chance(0.5)) {
    // Bytes in flight: a real partial message (a prefix of valid traffic), or any bytes.
    const model: PeerModel = { layout: { selection: true, grabSerial: true }, serials: [0, 0, 0] };
    const wire = peerMessage(src, model, LINUX_CAPS);
    state.wire = {
      inbound: src.chance(0.8)
        ? wire.subarray(0, src.int(wire.length - 1))
        : randBytes(prng(src.seed()), src.int(40)),
      outbound: src.chance(0.5) ? new Uint8Array(0) : peerMessage(src, model, QEMU_CAPS),
    };
  }
  return state;
}

/** A checkpoint, mutated, decoded, re-encoded, and restored into a short host program. */
async function checkpointProgram(run: Run, src: Source): Promise<void> {
  {
    {
      const state = randomState(src);
      const bad = isBadByRule(state);
      let bytes: Uint8Array;
      try {
        bytes = encodeCheckpoint(state);
        if (bad) run.fail("errors", "encodeCheckpoint accepted a state with a bad field");
      } catch (error) {
        if (error instanceof Violation) throw error;
        if (!bad) run.fail("errors", `encodeCheckpoint threw ${describe(error)} on a good state`);
        run.expectBadArgument(error, "encodeCheckpoint");
        run.signature.add("encode:refused");
        return;
      }
      if (src.chance(0.8)) bytes = mutateCheckpoint(src, bytes);
      run.size = bytes.length;
      const limits = src.chance(0.3)
        ? {
          maxSize: src.range(16, 512),
          maxSections: src.range(1, 8),
          maxRequests: src.range(1, 4),
        }
        : {};
      run.log(`checkpoint ${hexHead(bytes)} limits ${JSON.stringify(limits)}`);
      let decoded: CheckpointState | undefined;
      await withinMemory(run, "decodeCheckpoint", () => 2 * bytes.length + 1024, () => {
        try {
          decoded = decodeCheckpoint(bytes, limits);
        } catch (error) {
          run.expectDomain(error, "decodeCheckpoint");
        }
        try {
          describeCheckpoint(bytes);
        } catch (error) {
          run.expectDomain(error, "describeCheckpoint");
        }
      });
      if (decoded !== undefined) {
        run.signature.add(`decoded:${decoded.mode}${decoded.wire ? ":wire" : ""}`);
        let again: CheckpointState;
        try {
          again = decodeCheckpoint(encodeCheckpoint(decoded));
        } catch (error) {
          return run.fail(
            "agreement",
            `a decoded checkpoint does not re-encode: ${describe(error)}`,
          );
        }
        if (!isDeepStrictEqual(plain(again), plain(decoded))) {
          run.fail("agreement", "a decoded checkpoint does not survive re-encoding");
        }
      }
      // Restore it and run a short host program.
      await hostProgram(run, src, { restore: bytes, short: true });
    }
  }
}

/** Whether `state` breaks a rule of encodeCheckpoint that `randomState` may break. */
function isBadByRule(state: CheckpointState): boolean {
  const notMaskType = (t: number) => !Number.isInteger(t) || t < 1 || t > 31;
  const notU32 = (t: number) => !Number.isInteger(t) || t < 0 || t > 0xffff_ffff;
  return state.hostCaps.length === 0 ||
    state.selections.some((s) =>
      s.hostOffer?.length === 0 || s.hostOffer?.some(notMaskType) === true ||
      s.guestRequests.some(notMaskType) ||
      (state.mode === "lossless" &&
        (s.guestOffer?.types.length === 0 || s.guestOffer?.types.some(notU32) === true ||
          s.hostRequests?.some(notU32) === true))
    );
}

/** Every target. */
export const TARGETS: readonly FuzzTarget[] = [
  payloadTarget,
  wireTarget,
  pipelineTarget("checkpoint", 2, checkpointProgram),
  hostTarget,
  guestTarget,
];

/** The target called `name`. */
export function target(name: string): FuzzTarget {
  const found = TARGETS.find((t) => t.name === name);
  if (found === undefined) throw new Error(`No fuzz target "${name}"`);
  return found;
}

/** Replays an input with no randomness: what the minimizer and the regression test run. */
export function replay(name: string, input: Uint8Array): Promise<Outcome> {
  return target(name).run(new Source(input));
}
