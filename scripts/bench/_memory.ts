// The memory target: 1 GiB of mixed guest traffic through the full host
// pipeline, measuring how far the process's peak RSS rises above where it
// started. Run in a fresh process (bench.ts --memory-only) for a clean baseline.
import type { BenchLibrary } from "./_cases.ts";
import { caps, clipboard, encode, grab, type Spec, T, UTF8_TEXT } from "./_inputs.ts";
import type { BenchRuntime } from "./_runtime.ts";

const KiB = 1024;
const MiB = 1024 * KiB;

export interface MemoryResult {
  /** Wire bytes the guest sent. */
  bytesIn: number;
  bytesOut: number;
  messages: number;
  largestMessage: number;
  baselineMiB: number;
  peakMiB: number;
  /** Peak minus baseline. */
  riseMiB: number;
  /** Rise minus the largest message: the target is ≤ 64. */
  overheadMiB: number;
  peakMethod: "VmHWM" | "sampled";
  seconds: number;
  /** Sanity: every grab answered, every guest paste of host data served. */
  grabs: number;
  answeredBytes: number;
  served: number;
}

/** Clipboard answer sizes the guest cycles through; the largest is the largest message. */
const SIZES = [200, 4 * KiB, 64 * KiB, 300 * KiB, MiB, 4 * MiB, 16 * MiB];
/** Every how many cycles the guest also pastes the host's 1 MiB PRIMARY selection. */
const PASTE_EVERY = 3;

/**
 * Mixed traffic as a guest would send it: capabilities, then cycles of a
 * grab, the CLIPBOARD answer to the host's request (sizes from 200 B to
 * 16 MiB, alternately in 2048-byte chunks and as one chunk), and now and then
 * a request for the host's 1 MiB PRIMARY selection. Reads are fresh 64 KiB
 * buffers, as a socket hands them out.
 */
export async function memoryRun(
  rt: BenchRuntime,
  lib: BenchLibrary,
  total = 1024 * MiB,
  /** For analysis: force a full GC after every this many input bytes (0: never). */
  collectEvery = 0,
): Promise<MemoryResult> {
  const answers: Uint8Array[] = [];
  for (const [i, size] of SIZES.entries()) {
    answers.push(encode([clipboard(size, i + 1, 2048)]).wire);
    answers.push(encode([clipboard(size, i + 1, Infinity)]).wire);
  }
  const pasteSpec: Spec = {
    type: T.CLIPBOARD_REQUEST,
    payload: new Uint8Array([1, 0, 0, 0, UTF8_TEXT, 0, 0, 0]),
    chunk: 2048,
  };
  const paste = encode([pasteSpec]).wire;
  const hostData = new Uint8Array(MiB).fill(0x5a);
  const largestMessage = 20 + Math.max(...SIZES);

  // The guest's byte stream, produced lazily: one message template at a time.
  let cycle = 0;
  let sent = 0;
  const queue: Uint8Array[] = [encode([caps()]).wire];
  const next = (): Uint8Array | undefined => {
    if (queue.length === 0) {
      if (sent >= total) return undefined;
      queue.push(encode([grab(cycle)]).wire, answers[cycle % answers.length]!);
      if (cycle % PASTE_EVERY === 0) queue.push(paste);
      cycle++;
    }
    return queue.shift();
  };
  let current: Uint8Array | undefined;
  let at = 0;
  let peakSampled = 0;
  let resetWorks = false;
  const readable = new ReadableStream<Uint8Array>({
    pull(controller) {
      const read = new Uint8Array(64 * KiB);
      let fill = 0;
      while (fill < read.length) {
        if (current === undefined || at === current.length) {
          current = next();
          at = 0;
          if (current === undefined) break;
        }
        const n = Math.min(read.length - fill, current.length - at);
        read.set(current.subarray(at, at + n), fill);
        fill += n;
        at += n;
      }
      if (
        collectEvery > 0 &&
        Math.floor((sent + fill) / collectEvery) > Math.floor(sent / collectEvery)
      ) {
        rt.gc();
      }
      sent += fill;
      if (fill > 0) controller.enqueue(fill === read.length ? read : read.subarray(0, fill));
      else controller.close();
      if (!resetWorks) peakSampled = Math.max(peakSampled, rt.rss());
    },
  });

  let bytesOut = 0;
  let writes = 0;
  let grabs = 0;
  let answeredBytes = 0;
  let served = 0;
  const writable = new WritableStream<Uint8Array>({
    async write(bytes) {
      bytesOut += bytes.length;
      // A peer that is not infinitely fast: yield to the event loop now and then.
      if (++writes % 16 === 0) await new Promise((r) => setTimeout(r, 0));
    },
  });

  rt.gc();
  const baseline = rt.rss();
  resetWorks = rt.resetPeakRss();
  const start = performance.now();
  const pipeline = lib.createHostPipeline({ readable, writable }, {
    requestTimeout: 0,
    clipboard: {
      onGuestGrab(selection, types) {
        grabs++;
        pipeline.session.request(selection, types[0]!).then((data) => answeredBytes += data.length);
      },
      provide() {
        served++;
        return hostData;
      },
    },
  });
  pipeline.session.grab(1, [UTF8_TEXT]); // the host owns PRIMARY; the guest pastes it
  await pipeline.done;
  const seconds = (performance.now() - start) / 1000;
  const peak = resetWorks ? rt.peakRss() : Math.max(peakSampled, rt.rss());
  const rise = Math.max(0, peak - baseline);
  return {
    bytesIn: sent,
    bytesOut,
    messages: 1 + cycle * 2 + Math.ceil(cycle / PASTE_EVERY),
    largestMessage,
    baselineMiB: baseline / MiB,
    peakMiB: peak / MiB,
    riseMiB: rise / MiB,
    overheadMiB: (rise - largestMessage) / MiB,
    peakMethod: resetWorks ? "VmHWM" : "sampled",
    seconds,
    grabs,
    answeredBytes,
    served,
  };
}
