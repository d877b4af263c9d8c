// What every fuzz target shares: the outcome of a run, the invariants, and
// the bookkeeping of one run (its trace, signature, size and violations).
import { CheckpointError, ClipboardError, VdagentProtocolError } from "../mod.ts";
import { countAllocations } from "./_alloc.ts";
import type { Source } from "./_fuzz_source.ts";

/** The invariant an input broke. */
export type Invariant = "errors" | "pending" | "memory" | "agreement" | "time" | "harness";

/** What running one input found. */
export interface Outcome {
  violation?: { invariant: Invariant; message: string };
  /** A short description of what the input reached, for the corpus. */
  signature: string;
  /** Bytes the library was given (wire bytes, payloads, checkpoints). */
  size: number;
  /** Event-loop turns the program chose to wait. */
  waits: number;
  /** Reads the library was given (each costs a stream read or a core call). */
  reads: number;
  /** What the program did, one line per step. */
  trace: string[];
}

/** A fuzz target. */
export interface FuzzTarget {
  name: string;
  /** How often the fuzzer picks it, relative to the others. */
  weight: number;
  run(src: Source): Promise<Outcome>;
}

export class Violation extends Error {
  constructor(readonly invariant: Invariant, message: string) {
    super(message);
  }
}

export const MiB = 1024 * 1024;

/** Per-run bookkeeping. */
export class Run {
  readonly trace: string[] = [];
  readonly signature = new Set<string>();
  size = 0;
  waits = 0;
  reads = 0;

  log(line: string): void {
    if (this.trace.length < 400) this.trace.push(line);
  }

  fail(invariant: Invariant, message: string): never {
    throw new Violation(invariant, message);
  }

  /** `error` must be one of the library's domain errors (or one of `extra`). */
  expectDomain(error: unknown, where: string, extra: unknown[] = []): void {
    if (
      error instanceof VdagentProtocolError || error instanceof ClipboardError ||
      error instanceof CheckpointError || extra.includes(error)
    ) {
      const code = (error as { code?: string }).code ?? "other";
      this.signature.add(`${where.replace(/ \d+(\/\d+)?$/, "")}:${code}`);
      return;
    }
    this.fail("errors", `${where} threw ${describe(error)}`);
  }

  /** A call made with a bad argument on purpose must throw RangeError or TypeError. */
  expectBadArgument(error: unknown, where: string): void {
    if (error instanceof RangeError || error instanceof TypeError) return;
    this.fail(
      "errors",
      `${where} with a bad argument threw ${describe(error)}, not RangeError/TypeError`,
    );
  }
}

export function describe(error: unknown): string {
  if (error instanceof Error) {
    return `${error.name}: ${error.message}${
      error.stack ? `\n${error.stack.split("\n").slice(1, 6).join("\n")}` : ""
    }`;
  }
  return String(error);
}

/** Runs `body`, turning what it throws into the outcome. */
export async function outcome(run: Run, body: () => Promise<void>): Promise<Outcome> {
  const result: Outcome = {
    signature: "",
    size: 0,
    waits: 0,
    reads: 0,
    trace: run.trace,
  };
  try {
    await body();
  } catch (error) {
    result.violation = error instanceof Violation
      ? { invariant: error.invariant, message: error.message }
      : { invariant: "harness", message: `the fuzz target itself threw ${describe(error)}` };
  }
  result.signature = [...run.signature].sort().join(" ");
  result.size = run.size;
  result.waits = run.waits;
  result.reads = run.reads;
  return result;
}

/** Counts allocations while `body` runs; fails if one exceeds `limit()` (read at the end). */
export async function withinMemory<T>(
  run: Run,
  what: string,
  limit: () => number,
  body: () => Promise<T> | T,
): Promise<T> {
  const counter = countAllocations();
  let largest: number;
  let value: T;
  try {
    value = await body();
  } finally {
    largest = counter.stop().largest;
  }
  const max = limit();
  if (largest > max) {
    run.fail("memory", `${what} allocated a buffer of ${largest} bytes; the limits allow ${max}`);
  }
  return value;
}

/** A payload with byte fields as arrays and bigints as strings, for comparing and printing. */
export function plain(value: unknown): unknown {
  return JSON.parse(
    JSON.stringify(
      value,
      (_k, v) => v instanceof Uint8Array ? Array.from(v) : typeof v === "bigint" ? `${v}n` : v,
    ),
  );
}

export function hexHead(bytes: Uint8Array, max = 256): string {
  const head = Array.from(bytes.subarray(0, max), (b) => b.toString(16).padStart(2, "0"));
  return head.join("") + (bytes.length > max ? `… (${bytes.length} bytes)` : "");
}

/** Violations found in promise callbacks, reported at the end of the run. */
export const lateViolations: Violation[] = [];

/** One turn of the event loop. */
export const turn = (): Promise<void> => new Promise<void>((resolve) => setTimeout(resolve, 0));

/** `fn()`, or `undefined` if it throws. */
export function safe<T>(fn: () => T): T | undefined {
  try {
    return fn();
  } catch {
    return undefined;
  }
}
