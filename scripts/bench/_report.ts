// Results: their shape, the Markdown report, the issue's targets as ratios,
// and regressions against a recorded run.
import type { CheckpointResult } from "./_checkpoint.ts";
import type { MemoryResult } from "./_memory.ts";

export interface CaseResult {
  title: string;
  medianMs: number;
  minMs: number;
  maxMs: number;
  /** (max − min) / median of the timed runs. */
  spread: number;
  /** Wire bytes in (out, for framing) per second, MB = 10⁶ bytes. */
  mbps: number;
  /** Messages per second; reads per second for R0, R1, R2. */
  perSecond: number;
  pctR0: number;
  pctR2: number;
  peakRssMiB: number;
  riseMiB: number;
}

export interface GroupResult {
  input: string;
  description: string;
  read: number;
  reads: number;
  wireBytes: number;
  messages: number;
  /** Whether only a prefix of the input was read (7-byte reads). */
  prefix: boolean;
  results: Record<string, CaseResult>;
  skipped: Record<string, string>;
}

export interface Check {
  name: string;
  status: "PASS" | "FAIL" | "NOT EVALUATED";
  value?: number;
  detail: string;
}

export interface BenchResults {
  runtime: string;
  /** Where the library came from (sources, npm build). */
  library: string;
  versions: Record<string, string>;
  machine: { cpu: string; cores: number; os: string; memoryMiB: number };
  date: string;
  quick: boolean;
  warmups: number;
  runs: number;
  peakRss: string;
  groups: GroupResult[];
  frame:
    | { messageBytes: number; wireBytes: number; results: Record<string, CaseResult> }
    | undefined;
  memory: MemoryResult | undefined;
  checkpoint?: CheckpointResult | undefined;
  checks: Check[];
  regressions: string[];
  notes: string[];
}

const fmt = (n: number, digits = 0) =>
  Number.isFinite(n)
    ? n.toLocaleString("en", { minimumFractionDigits: digits, maximumFractionDigits: digits })
    : "—";
const si = (n: number) =>
  n >= 1e9
    ? `${fmt(n / 1e9, 2)} G`
    : n >= 1e6
    ? `${fmt(n / 1e6, 2)} M`
    : n >= 1e3
    ? `${fmt(n / 1e3, 1)} k`
    : fmt(n);

function group(results: BenchResults, input: string, read: number): GroupResult | undefined {
  return results.groups.find((g) => g.input === input && g.read === read);
}

/** The issue's Deno targets, as ratios measured in this run. */
export function evaluateTargets(results: BenchResults): Check[] {
  const checks: Check[] = [];
  const ratio = (
    name: string,
    input: string,
    id: string,
    base: string,
    min: number,
    asPercent: boolean,
  ) => {
    const g = group(results, input, 64 * 1024);
    const a = g?.results[id]?.mbps;
    const b = g?.results[base]?.mbps;
    if (a === undefined || b === undefined) {
      checks.push({ name, status: "NOT EVALUATED", detail: "not measured in this run" });
      return;
    }
    const value = a / b;
    checks.push({
      name,
      status: value >= min ? "PASS" : "FAIL",
      value,
      detail: asPercent
        ? `${fmt(100 * value, 1)} % (need ≥ ${fmt(100 * min, 0)} %)`
        : `${fmt(value, 2)}× (need ≥ ${min}×)`,
    });
  };
  ratio("D/R0 multi-chunk 1 MiB, 64 KiB reads", "multi", "D", "R0", 0.35, true);
  ratio("D/R0 single-chunk 1 MiB, 64 KiB reads", "single", "D", "R0", 0.35, true);
  // F answers each grab with a request; on the grab-only input nothing answers
  // those, so F's small-message targets are taken where the guest answers.
  ratio("F/N small-rt, 64 KiB reads", "small-rt", "F", "N", 5, false);
  ratio("F/R0 small-rt, 64 KiB reads", "small-rt", "F", "R0", 0.02, true);
  ratio("S/N small, 64 KiB reads", "small", "S", "N", 2, false);
  const w = results.frame?.results["W"];
  const r0 = results.frame?.results["R0"];
  if (w && r0) {
    const value = w.mbps / r0.mbps;
    checks.push({
      name: `W/R0 framing one ${fmt(results.frame!.messageBytes / 1024 / 1024)} MiB message`,
      status: value >= 0.5 ? "PASS" : "FAIL",
      value,
      detail: `${fmt(100 * value, 1)} % (need ≥ 50 %)`,
    });
  } else {
    checks.push({ name: "W/R0 framing", status: "NOT EVALUATED", detail: "not measured" });
  }
  const k = results.checkpoint;
  checks.push(
    k
      ? {
        name: "K ≤ 10 µs per minimal checkpoint round trip",
        status: k.minimalUs <= 10 ? "PASS" : "FAIL",
        value: k.minimalUs,
        detail: `${fmt(k.minimalUs, 2)} µs (need ≤ 10 µs)`,
      }
      : {
        name: "K ≤ 10 µs per checkpoint round trip",
        status: "NOT EVALUATED",
        detail: "not measured in this run",
      },
  );
  const m = results.memory;
  if (m) {
    checks.push({
      name: "memory: F over 1 GiB mixed traffic, peak RSS rise beyond the largest message",
      status: m.overheadMiB <= 64 ? "PASS" : "FAIL",
      value: m.overheadMiB,
      detail: `${fmt(m.overheadMiB, 1)} MiB (need ≤ 64 MiB; rise ${
        fmt(m.riseMiB, 1)
      } MiB, largest message ${fmt(m.largestMessage / 1024 / 1024, 1)} MiB)`,
    });
  } else {
    checks.push({
      name: "memory: F over 1 GiB",
      status: "NOT EVALUATED",
      detail: "not measured in this run",
    });
  }
  return checks;
}

/** Cases whose % of R0 fell by more than 30 % against `previous`. */
export function findRegressions(current: BenchResults, previous: BenchResults): string[] {
  const flagged: string[] = [];
  for (const g of current.groups) {
    const old = previous.groups.find((p) => p.input === g.input && p.read === g.read);
    if (!old) continue;
    for (const [id, r] of Object.entries(g.results)) {
      const before = old.results[id];
      if (!before || id === "R0") continue;
      if (r.pctR0 < 0.7 * before.pctR0) {
        flagged.push(
          `${id} ${g.input} @ ${g.read} B: ${fmt(r.pctR0, 2)} % of R0, was ${
            fmt(before.pctR0, 2)
          } % (${previous.date.slice(0, 10)})`,
        );
      }
    }
  }
  return flagged;
}

export function markdown(r: BenchResults): string {
  const lines: string[] = [];
  const v = Object.entries(r.versions).map(([k, x]) => `${k} ${x}`).join(", ");
  lines.push(
    `## vdagent-streams benchmark${r.quick ? " (quick smoke run: figures mean nothing)" : ""}`,
    "",
    `${v}; library: ${r.library}; ${r.machine.cpu}, ${r.machine.cores} cores, ${
      fmt(r.machine.memoryMiB / 1024, 0)
    } GiB, ${r.machine.os}; ${r.date}`,
    `${r.warmups} warm-ups and ${r.runs} timed runs per case, interleaved; medians. MB = 10⁶ bytes of wire input.`,
    `R0 = Uint8Array.set of each read into one preallocated buffer as large as the input (reused across runs).`,
    `Peak RSS: ${r.peakRss}. "spread" = (slowest − fastest) / median over the timed runs.`,
    "",
  );
  let input = "";
  for (const g of r.groups) {
    if (g.input !== input) {
      input = g.input;
      lines.push(`### ${g.input}: ${g.description}`, "");
    }
    lines.push(
      `**${g.read === 65536 ? "64 KiB" : `${g.read} B`} reads**: ${fmt(g.reads)} reads, ${
        fmt(g.wireBytes)
      } wire bytes, ${fmt(g.messages)} messages${g.prefix ? " (a prefix of the input)" : ""}`,
      "",
      "| case | MB/s | msg/s (reads/s for R*) | ns/msg | % of R0 | % of R2 | median ms | spread | peak RSS MiB (rise) |",
      "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    );
    for (const [id, c] of Object.entries(g.results)) {
      const nsPerMsg = id.startsWith("R") ? "—" : fmt(1e9 / c.perSecond, 0);
      lines.push(
        `| ${id} | ${fmt(c.mbps, 1)} | ${si(c.perSecond)} | ${nsPerMsg} | ${fmt(c.pctR0, 2)} | ${
          fmt(c.pctR2, 1)
        } | ${fmt(c.medianMs, 2)} | ${fmt(100 * c.spread, 0)} % | ${fmt(c.peakRssMiB, 0)} (+${
          fmt(c.riseMiB, 0)
        }) |`,
      );
    }
    for (const [id, why] of Object.entries(g.skipped)) {
      lines.push(`| ${id} | not run: ${why} | | | | | | | |`);
    }
    lines.push("");
  }
  if (r.frame) {
    lines.push(
      `### frame: one ${fmt(r.frame.messageBytes / 1024 / 1024)} MiB CLIPBOARD message → ${
        fmt(r.frame.wireBytes)
      } wire bytes`,
      "",
      "| case | MB/s | % of R0 | median ms | spread | peak RSS MiB (rise) |",
      "|---|---:|---:|---:|---:|---:|",
    );
    for (const [id, c] of Object.entries(r.frame.results)) {
      lines.push(
        `| ${id} | ${fmt(c.mbps, 1)} | ${fmt(c.pctR0, 1)} | ${fmt(c.medianMs, 2)} | ${
          fmt(100 * c.spread, 0)
        } % | ${fmt(c.peakRssMiB, 0)} (+${fmt(c.riseMiB, 0)}) |`,
      );
    }
    lines.push("");
  }
  if (r.checkpoint) {
    const k = r.checkpoint;
    lines.push(
      "### K: checkpoint round trip",
      "",
      "Capture (the session's snapshot) + encode + decode + restore into a session built beforehand; " +
        `${k.rounds} round trips per round; ${k.warmups} warm-up rounds, then the median of ${k.runs}.`,
      "",
      "| checkpoint | bytes | µs per round trip |",
      "|---|---:|---:|",
      `| minimal | ${k.bytes} | ${fmt(k.minimalUs, 2)} |`,
      `| lossless (session state, no bytes in flight) | — | ${fmt(k.losslessUs, 2)} |`,
      "",
    );
  }
  if (r.memory) {
    const m = r.memory;
    lines.push(
      "### memory: mixed traffic through F (fresh process)",
      "",
      `${fmt(m.bytesIn / 1024 / 1024)} MiB in, ${fmt(m.bytesOut / 1024 / 1024)} MiB out, ${
        fmt(m.messages)
      } messages in ${fmt(m.seconds, 1)} s; ` +
        `RSS ${fmt(m.baselineMiB)} → peak ${fmt(m.peakMiB)} MiB (${m.peakMethod}): rise ${
          fmt(m.riseMiB, 1)
        } MiB, ` +
        `${fmt(m.overheadMiB, 1)} MiB beyond the largest message (${
          fmt(m.largestMessage / 1024 / 1024, 1)
        } MiB).`,
      "",
    );
  }
  if (r.checks.length > 0) {
    const on = r.runtime === "deno" ? "" : `; informative on ${r.runtime}`;
    lines.push(`### Targets (set for Deno${on})`, "", "| target | result | |", "|---|---|---|");
    for (const c of r.checks) lines.push(`| ${c.name} | ${c.status} | ${c.detail} |`);
    lines.push("");
  }
  if (r.regressions.length > 0) {
    lines.push("### Regressions over 30 % against the recorded run", "");
    for (const x of r.regressions) lines.push(`- REGRESSION ${x}`);
    lines.push("");
  }
  for (const n of r.notes) lines.push(`> ${n}`);
  return lines.join("\n");
}
