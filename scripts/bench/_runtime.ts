// What the benchmark needs from its runtime. `deno_runtime.ts` and
// `node_runtime.ts` implement it; everything else in scripts/bench/ uses
// web-platform APIs only, so the same code measures Deno and Node.

export interface BenchRuntime {
  /** "deno" or "node". */
  name: string;
  /** Runtime and engine versions. */
  versions: Record<string, string>;
  /** CPU model, core count, OS and memory, as far as the runtime tells. */
  machine(): { cpu: string; cores: number; os: string; memoryMiB: number };
  /** Command-line arguments after the script. */
  args: string[];
  /** Full garbage collection, if the runtime was started with it exposed. */
  gc(): void;
  /** Whether `gc` really collects. */
  hasGc: boolean;
  /** Resident set size now, in bytes. */
  rss(): number;
  /** Resets the peak-RSS mark; returns false where that is impossible. */
  resetPeakRss(): boolean;
  /** Peak RSS since the last reset (or process start), in bytes; falls back to `rss()`. */
  peakRss(): number;
  readText(path: string): Promise<string | undefined>;
  writeText(path: string, text: string): Promise<void>;
  /** Names of the files in a directory ([] if it does not exist). */
  list(dir: string): Promise<string[]>;
  mkdir(dir: string): Promise<void>;
  /**
   * Runs this benchmark again in a fresh process with `args`, returning its
   * stdout; a fresh process gives the memory measurement a clean baseline.
   */
  spawnSelf(args: string[]): Promise<{ code: number; stdout: string; stderr: string }>;
  print(text: string): void;
  exit(code: number): never;
}

/** Reads `VmHWM`/`VmRSS` from Linux's /proc/self/status text, in bytes. */
export function procStatusField(status: string, field: "VmHWM" | "VmRSS"): number | undefined {
  const match = new RegExp(`^${field}:\\s+(\\d+) kB`, "m").exec(status);
  return match ? Number(match[1]) * 1024 : undefined;
}
