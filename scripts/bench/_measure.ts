// Interleaved timing: warm-ups, then rounds in which every case runs once,
// each round starting one case later, so drift on a shared machine spreads
// over all cases instead of landing on one.
//
// One full GC before the warm-ups, none between timed runs. Every run builds
// fresh streams, and V8's optimized stream internals hold weak references to
// the previous run's objects: a full GC frees those and deoptimizes the code
// (--trace-deopt: "embedded weak objects cleared"). With a forced GC before
// each run, as style-and-speed.md §B6 has it, an identity TransformStream
// over 515 reads took a median of 0.8–4.4 ms per run, depending on the
// process, instead of 0.7–0.8 (Deno 2.9.6).
// A relay keeps its streams for the session, so that cost is the harness's.
import type { BenchRuntime } from "./_runtime.ts";

/** Timings and memory of one case over its timed runs. */
export interface Sample {
  ms: number[];
  /** Peak RSS during each run, bytes. */
  peak: number[];
  /** Peak RSS minus RSS before the run, bytes. */
  rise: number[];
}

export interface Runnable {
  id: string;
  run(): Promise<unknown>;
}

export async function measure(
  rt: BenchRuntime,
  runnables: readonly Runnable[],
  warmups: number,
  runs: number,
): Promise<Map<string, Sample>> {
  rt.gc();
  for (let w = 0; w < warmups; w++) {
    for (const r of runnables) await r.run();
  }
  const samples = new Map<string, Sample>(
    runnables.map((r) => [r.id, { ms: [], peak: [], rise: [] }]),
  );
  const n = runnables.length;
  for (let round = 0; round < runs; round++) {
    for (let k = 0; k < n; k++) {
      const r = runnables[(round + k) % n]!;
      const before = rt.rss();
      rt.resetPeakRss();
      const start = performance.now();
      await r.run();
      const ms = performance.now() - start;
      const peak = rt.peakRss();
      const s = samples.get(r.id)!;
      s.ms.push(ms);
      s.peak.push(peak);
      s.rise.push(Math.max(0, peak - before));
    }
  }
  return samples;
}

export function median(values: readonly number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  const mid = sorted.length >> 1;
  return sorted.length % 2 ? sorted[mid]! : (sorted[mid - 1]! + sorted[mid]!) / 2;
}

/** (max − min) / median: how noisy the runs of one case were. */
export function spread(values: readonly number[]): number {
  return (Math.max(...values) - Math.min(...values)) / median(values);
}
