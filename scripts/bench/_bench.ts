// The benchmark, independent of the runtime: bench.ts (Deno) and
// bench_node.ts (Node, npm build) pass in their runtime adapter and library.
import {
  type BenchLibrary,
  type CaseDef,
  cases,
  memcpyCase,
  memcpyFreshCase,
  type Tally,
} from "./_cases.ts";
import { buildFrameInput, frameCases } from "./_frame.ts";
import { measureCheckpoint } from "./_checkpoint.ts";
import { buildInputs, cut, type Expected, FULL, QUICK } from "./_inputs.ts";
import { measure, median, spread } from "./_measure.ts";
import { memoryRun } from "./_memory.ts";
import {
  type BenchResults,
  type CaseResult,
  evaluateTargets,
  findRegressions,
  type GroupResult,
  markdown,
} from "./_report.ts";
import { chart } from "./_chart.ts";
import type { BenchRuntime } from "./_runtime.ts";

const MiB = 1024 * 1024;
export const READ_SIZES = [64 * 1024, 4093, 7] as const;

interface Flags {
  quick: boolean;
  check: boolean;
  memoryOnly: boolean;
  memory: boolean;
  out: string;
  only: string[] | undefined;
  cases: string[] | undefined;
  gcEveryMiB: number;
}

function parseFlags(args: readonly string[]): Flags {
  const flags: Flags = {
    quick: false,
    check: false,
    memoryOnly: false,
    memory: true,
    out: "bench/results",
    only: undefined,
    cases: undefined,
    gcEveryMiB: 0,
  };
  for (let i = 0; i < args.length; i++) {
    const a = args[i]!;
    if (a === "--quick") flags.quick = true;
    else if (a === "--check") flags.check = true;
    else if (a === "--memory-only") flags.memoryOnly = true;
    else if (a === "--no-memory") flags.memory = false;
    else if (a === "--out") flags.out = args[++i]!;
    else if (a === "--only") flags.only = args[++i]!.split(",");
    else if (a === "--cases") flags.cases = args[++i]!.split(",");
    else if (a === "--gc-every-mib") flags.gcEveryMiB = Number(args[++i]);
    else throw new RangeError(`Unknown argument ${a}; see scripts/bench.ts`);
  }
  return flags;
}

/** Why a case is not run for an input and read size, if it is not. */
function skipReason(
  id: string,
  input: string,
  read: number,
  messageSize: number,
): string | undefined {
  if (id === "N" && input === "single" && read === 7) {
    // Concatenating per read keeps the whole partial chunk: each 7-byte read
    // copies everything buffered so far.
    const reads = messageSize / 7;
    const gb = (reads * reads * 7 / 2 / 1e9).toFixed(0);
    return `quadratic: about ${gb} GB copied per 1 MiB message`;
  }
  if (id === "F" && input === "small") {
    return "every grab's request stays pending (nothing answers it) and the session fails them " +
      "one by one at close, in O(n²): see F on small-rt, where the guest answers";
  }
  if (id === "Fg" && input !== "small") return "run on the small input only";
  return undefined;
}

function verify(id: string, t: Tally, e: Expected, reads: readonly Uint8Array[]): string[] {
  const bad: string[] = [];
  const want = (what: string, got: unknown, expected: unknown) => {
    if (got !== expected) bad.push(`${id}: ${what} ${got}, expected ${expected}`);
  };
  const wire = reads.reduce((n, r) => n + r.length, 0);
  switch (id) {
    case "R0":
    case "R0a":
    case "R1":
    case "R2":
      want("reads", t.items, reads.length);
      want("bytes", t.bytes, wire);
      break;
    case "N":
    case "D":
    case "C":
      want("messages", t.items, e.messages);
      want("checksum", t.checksum, e.checksum);
      break;
    case "S":
      want("grabs", t.grabs, e.grabs);
      want("unsolicited clipboard bytes", t.clipboardBytes, e.clipboardBytes);
      want("host messages", t.items, 2);
      break;
    case "Fg":
      want("grabs", t.grabs, e.grabs);
      want("unsolicited clipboard bytes", t.clipboardBytes, e.clipboardBytes);
      want("capability messages out", t.output?.caps, 2);
      want("other messages out", t.output?.other, 0);
      break;
    case "F":
      want("grabs", t.grabs, e.grabs);
      want("answered clipboard bytes", t.clipboardBytes, e.clipboardBytes);
      want("capability messages out", t.output?.caps, 2);
      want("requests out", t.output?.requests, e.grabs);
      want("other messages out", t.output?.other, 0);
      break;
  }
  return bad;
}

export async function runBench(rt: BenchRuntime, lib: BenchLibrary): Promise<number> {
  const flags = parseFlags(rt.args);
  if (flags.memoryOnly) {
    const result = await memoryRun(
      rt,
      lib,
      flags.quick ? 64 * MiB : 1024 * MiB,
      flags.gcEveryMiB * MiB,
    );
    rt.print(JSON.stringify(result));
    return 0;
  }
  if (!rt.hasGc) rt.print("> warning: no gc(): start with --expose-gc for steadier figures\n");
  const sizes = flags.quick ? QUICK : FULL;
  const warmups = flags.quick ? 1 : 2;
  const runs = flags.quick ? 3 : 7;
  const messageSize = flags.quick ? 64 * 1024 : MiB;
  const results: BenchResults = {
    runtime: rt.name,
    library: lib.source,
    versions: rt.versions,
    machine: rt.machine(),
    date: new Date().toISOString(),
    quick: flags.quick,
    warmups,
    runs,
    peakRss: rt.resetPeakRss() ? "VmHWM reset before each run" : "process peak",
    groups: [],
    frame: undefined,
    memory: undefined,
    checks: [],
    regressions: [],
    notes: [],
  };
  const started = performance.now();
  const inputs = buildInputs(sizes, messageSize);
  for (const input of inputs) {
    if (flags.only && !flags.only.includes(input.name)) continue;
    for (const read of READ_SIZES) {
      const prefix = read === 7;
      const bytes = prefix ? input.wire.subarray(0, input.prefix.bytes) : input.wire;
      const expected = prefix ? input.prefix.expected : input.expected;
      const reads = cut(bytes, read);
      const all: CaseDef[] = [memcpyCase(new Uint8Array(bytes.length)), ...cases(lib, expected)];
      // Messages that span reads need a buffer of their own: a reference for the large inputs.
      if (input.name === "multi" || input.name === "single") {
        all.splice(1, 0, memcpyFreshCase(messageSize));
      }
      const group: GroupResult = {
        input: input.name,
        description: input.description,
        read,
        reads: reads.length,
        wireBytes: bytes.length,
        messages: expected.messages,
        prefix,
        results: {},
        skipped: {},
      };
      const chosen = all.filter((c) => {
        if (flags.cases && !flags.cases.includes(c.id) && !["R0", "R0a", "R2"].includes(c.id)) {
          return false;
        }
        const why = skipReason(c.id, input.name, read, messageSize);
        if (why) group.skipped[c.id] = why;
        return why === undefined;
      });
      // Verify once, untimed.
      for (const c of chosen) {
        const bad = verify(c.id, await c.run(reads, true), expected, reads);
        if (bad.length > 0) throw new Error(`Verification failed: ${bad.join("; ")}`);
      }
      const samples = await measure(
        rt,
        chosen.map((c) => ({ id: c.id, run: () => c.run(reads, false) })),
        warmups,
        runs,
      );
      for (const c of chosen) {
        const s = samples.get(c.id)!;
        const ms = median(s.ms);
        group.results[c.id] = {
          title: c.title,
          medianMs: ms,
          minMs: Math.min(...s.ms),
          maxMs: Math.max(...s.ms),
          spread: spread(s.ms),
          mbps: bytes.length / 1e6 / (ms / 1000),
          perSecond: (c.id.startsWith("R") ? reads.length : expected.messages) / (ms / 1000),
          pctR0: 0,
          pctR2: 0,
          peakRssMiB: Math.max(...s.peak) / MiB,
          riseMiB: Math.max(...s.rise) / MiB,
        };
      }
      ratios(group.results);
      results.groups.push(group);
      rt.print(
        `measured ${input.name} @ ${read} B reads (${
          ((performance.now() - started) / 1000).toFixed(0)
        } s)`,
      );
    }
  }
  inputs.length = 0;

  if (!flags.only || flags.only.includes("frame")) {
    const frame = buildFrameInput(flags.quick ? MiB : 64 * MiB);
    const defs = frameCases(lib, frame);
    for (const c of defs) {
      const t = await c.run([], true);
      if (t.bytes !== frame.wire.length || t.checksum === 0) {
        throw new Error(
          `Verification failed: ${c.id} framed ${t.bytes} bytes or differs from the reference`,
        );
      }
    }
    const samples = await measure(
      rt,
      defs.map((c) => ({ id: c.id, run: () => c.run([], false) })),
      warmups,
      runs,
    );
    const out: Record<string, CaseResult> = {};
    for (const c of defs) {
      const s = samples.get(c.id)!;
      const ms = median(s.ms);
      out[c.id] = {
        title: c.title,
        medianMs: ms,
        minMs: Math.min(...s.ms),
        maxMs: Math.max(...s.ms),
        spread: spread(s.ms),
        mbps: frame.wire.length / 1e6 / (ms / 1000),
        perSecond: 1000 / ms,
        pctR0: 0,
        pctR2: 0,
        peakRssMiB: Math.max(...s.peak) / MiB,
        riseMiB: Math.max(...s.rise) / MiB,
      };
    }
    ratios(out);
    results.frame = {
      messageBytes: frame.message.data.length,
      wireBytes: frame.wire.length,
      results: out,
    };
  }

  if (!flags.only) {
    rt.print("measuring K: checkpoint round trips");
    // A round is 2 000 round trips, about 10 ms: ten warm-up rounds (two are
    // too short for V8 to optimize the path), and the median of 21 rounds,
    // not 7 (a few rounds in a row still go 2–3× slower now and then).
    results.checkpoint = measureCheckpoint(
      lib,
      flags.quick ? 1 : 10,
      flags.quick ? runs : 21,
      flags.quick ? 50 : 2000,
    );
  }

  if (flags.memory && !flags.quick && !flags.only) {
    rt.print("measuring memory: 1 GiB of mixed traffic through F in a fresh process");
    const child = await rt.spawnSelf(["--memory-only"]);
    if (child.code !== 0) throw new Error(`The memory run failed: ${child.stderr}`);
    results.memory = JSON.parse(child.stdout.trim().split("\n").at(-1)!);
  }

  results.checks = evaluateTargets(results);
  const previous = await latestResults(rt, flags.out);
  if (previous && !flags.quick) results.regressions = findRegressions(results, previous);

  rt.print(markdown(results));
  await rt.mkdir(flags.out);
  const stem = `${flags.out}/${rt.name}-${results.date.slice(0, 10)}${flags.quick ? "-quick" : ""}`;
  await rt.writeText(`${stem}.json`, JSON.stringify(results, null, 2) + "\n");
  await rt.writeText(`${stem}.svg`, chart(results));
  rt.print(`\nWrote ${stem}.json and ${stem}.svg`);

  if (flags.check && rt.name !== "deno") {
    rt.print(`\nThe targets are set for Deno: on ${rt.name} they are reported, never failed.`);
  } else if (flags.check) {
    const failed = results.checks.filter((c) => c.status === "FAIL");
    if (failed.length > 0) {
      rt.print(`\nFAILED targets: ${failed.map((c) => c.name).join("; ")}`);
      return 1;
    }
    rt.print("\nAll evaluated targets met.");
  }
  return 0;
}

/** Fills `% of R0` and `% of R2` from the same group's medians. */
function ratios(results: Record<string, CaseResult>): void {
  const r0 = results["R0"]?.mbps;
  const r2 = results["R2"]?.mbps;
  for (const r of Object.values(results)) {
    r.pctR0 = r0 ? 100 * r.mbps / r0 : NaN;
    r.pctR2 = r2 ? 100 * r.mbps / r2 : NaN;
  }
}

/** The newest recorded full run of this runtime (read before this run overwrites it), if any. */
async function latestResults(rt: BenchRuntime, dir: string): Promise<BenchResults | undefined> {
  const names = (await rt.list(dir))
    .filter((n) => n.startsWith(`${rt.name}-`) && n.endsWith(".json") && !n.includes("quick"))
    .sort();
  const name = names.at(-1);
  if (name === undefined) return undefined;
  const text = await rt.readText(`${dir}/${name}`);
  return text === undefined ? undefined : JSON.parse(text) as BenchResults;
}
