// deno-lint-ignore-file no-console
/**
 * Fuzzes the library with a seeded generator and mutator:
 *
 *     deno task fuzz [--seconds N] [--seed S] [--target NAME] [--replay FILE]
 *
 * Each input is a string of decision bytes that a target (`tests/_fuzz.ts`)
 * turns into a program: mutated captures of the real Linux agent,
 * structure-aware messages of every type in every layout, random bytes,
 * huge messages, session calls, checkpoints and restores. Half the inputs
 * are drawn fresh from the seed; half mutate an earlier input that reached
 * something new (a new error code, diagnostic, payload kind, …).
 *
 * Targets share the time by weight: the next input goes to the target with
 * the least time per unit of weight, so a target whose inputs take 0.4 ms
 * gets as many seconds as one whose inputs take 90 ms. Each target draws
 * from its own stream of the seed, so its n-th input is the same in every
 * run with that seed, whatever the timing.
 *
 * Invariants are checked per input by the targets (errors, pending promises,
 * memory, agreement) and here (time: at most 100 ms per MiB of input, plus
 * 250 ms, 10 ms per event-loop turn the program waits and 50 µs per read,
 * which costs a stream read whatever its size; an input over it is run
 * again and fails only if it is over twice).
 *
 * A failure prints the seed, minimizes the input (delta debugging on its
 * decision bytes, keeping the same invariant broken), prints the minimized
 * program, saves it to `tests/fixtures/fuzz/` (the normal test run replays
 * every file there) and exits 1. `--replay FILE` runs one saved case.
 *
 * @module
 */
import { parseArgs } from "node:util";
import {
  type FuzzTarget,
  type Invariant,
  type Outcome,
  replay,
  target,
  TARGETS,
} from "../tests/_fuzz.ts";
import { fromHex, hex, Source } from "../tests/_fuzz_source.ts";
import { prng } from "../tests/_helpers.ts";

const { values } = parseArgs({
  args: Deno.args,
  options: {
    seconds: { type: "string", default: "60" },
    seed: { type: "string" },
    target: { type: "string" },
    replay: { type: "string" },
    "minimize-seconds": { type: "string", default: "60" },
  },
});

const FIXTURES = new URL("../tests/fixtures/fuzz/", import.meta.url);
const MiB = 1024 * 1024;

/** The time an input may take. */
function budget(outcome: Outcome): number {
  return 250 + 100 * (outcome.size / MiB) + 10 * outcome.waits + 0.05 * outcome.reads;
}

/** Runs one input, with the time invariant. */
async function execute(
  t: FuzzTarget,
  src: Source,
): Promise<{ outcome: Outcome; input: Uint8Array; ms: number }> {
  const started = performance.now();
  const outcome = await t.run(src);
  const ms = performance.now() - started;
  const input = src.recorded();
  if (outcome.violation === undefined && ms > budget(outcome)) {
    // Once more, to tell a slow input from a busy machine.
    const again = performance.now();
    const second = await replay(t.name, input);
    const ms2 = performance.now() - again;
    if (second.violation === undefined && ms2 > budget(second)) {
      outcome.violation = {
        invariant: "time",
        message: `took ${ms.toFixed(0)} ms, then ${ms2.toFixed(0)} ms, for ${
          (outcome.size / MiB).toFixed(3)
        } MiB, ${outcome.waits} waits and ${outcome.reads} reads: over the budget of ${
          budget(outcome).toFixed(0)
        } ms`,
      };
    }
  }
  return { outcome, input, ms };
}

/** Whether `input` still breaks `invariant` on `name`. */
async function stillFails(name: string, input: Uint8Array, invariant: Invariant): Promise<boolean> {
  if (invariant === "time") {
    const { outcome } = await execute(target(name), new Source(input));
    return outcome.violation?.invariant === "time";
  }
  return (await replay(name, input)).violation?.invariant === invariant;
}

/**
 * Delta debugging (Zeller's ddmin) on the decision bytes, then each byte
 * lowered to 0 where that keeps the failure: smaller numbers, fewer steps.
 */
async function minimize(
  name: string,
  input: Uint8Array,
  invariant: Invariant,
  deadline: number,
): Promise<Uint8Array> {
  let best = input;
  let n = 2;
  while (best.length >= 2 && performance.now() < deadline) {
    const size = Math.ceil(best.length / n);
    let reduced = false;
    for (let i = 0; i < n && performance.now() < deadline; i++) {
      const candidate = new Uint8Array([
        ...best.subarray(0, i * size),
        ...best.subarray((i + 1) * size),
      ]);
      if (candidate.length < best.length && await stillFails(name, candidate, invariant)) {
        best = candidate;
        n = Math.max(n - 1, 2);
        reduced = true;
        break;
      }
    }
    if (!reduced) {
      if (n >= best.length) break;
      n = Math.min(best.length, 2 * n);
    }
  }
  for (let i = 0; i < best.length && performance.now() < deadline; i++) {
    if (best[i] === 0) continue;
    const candidate = best.slice();
    candidate[i] = 0;
    if (await stillFails(name, candidate, invariant)) best = candidate;
  }
  return best;
}

function fnv(bytes: Uint8Array): string {
  let h = 0x811c9dc5;
  for (const b of bytes) h = Math.imul(h ^ b, 0x01000193);
  return (h >>> 0).toString(16).padStart(8, "0");
}

async function report(
  seed: number,
  iteration: number,
  t: FuzzTarget,
  input: Uint8Array,
  outcome: Outcome,
): Promise<never> {
  const violation = outcome.violation!;
  const elapsed = ((performance.now() - started) / 1000).toFixed(1);
  console.log(
    `\nfuzz: FAILED after ${iteration} inputs in ${elapsed} s, seed ${seed}, target ${t.name}`,
  );
  console.log(`fuzz: invariant "${violation.invariant}": ${violation.message}`);
  console.log(`fuzz: input (${input.length} decision bytes): ${hex(input)}`);
  let minimal = input;
  if (await stillFails(t.name, input, violation.invariant)) {
    const deadline = performance.now() + 1000 * Number(values["minimize-seconds"]);
    minimal = await minimize(t.name, input, violation.invariant, deadline);
  } else {
    console.log("fuzz: the failure did not reproduce on replay; saving the input as it was");
  }
  const final = await replay(t.name, minimal);
  console.log(`fuzz: minimized to ${minimal.length} decision bytes: ${hex(minimal)}`);
  console.log(`fuzz: the minimized program:`);
  for (const line of final.trace) console.log(`  ${line}`);
  if (final.violation) {
    console.log(`fuzz: it breaks "${final.violation.invariant}": ${final.violation.message}`);
  }
  await Deno.mkdir(FIXTURES, { recursive: true });
  const file = new URL(`${t.name}-${fnv(minimal)}.json`, FIXTURES);
  await Deno.writeTextFile(
    file,
    JSON.stringify(
      {
        target: t.name,
        invariant: violation.invariant,
        found: `seed ${seed}, input ${iteration}`,
        message: (final.violation ?? violation).message.split("\n")[0],
        input: hex(minimal),
      },
      null,
      2,
    ) + "\n",
  );
  console.log(`fuzz: saved ${file.pathname}; \`deno task test\` replays it`);
  console.log(`fuzz: replay with: deno task fuzz --replay ${file.pathname}`);
  Deno.exit(1);
}

if (values.replay !== undefined) {
  const saved = JSON.parse(await Deno.readTextFile(values.replay)) as {
    target: string;
    input: string;
  };
  const { outcome, ms } = await execute(target(saved.target), new Source(fromHex(saved.input)));
  for (const line of outcome.trace) console.log(`  ${line}`);
  console.log(
    outcome.violation
      ? `fuzz: breaks "${outcome.violation.invariant}": ${outcome.violation.message}`
      : `fuzz: holds (${ms.toFixed(1)} ms)`,
  );
  Deno.exit(outcome.violation ? 1 : 0);
}

const seed = values.seed === undefined
  ? crypto.getRandomValues(new Uint32Array(1))[0]!
  : Number(values.seed) >>> 0;
const seconds = Number(values.seconds);
const targets = values.target === undefined ? TARGETS : [target(values.target)];
console.log(
  `fuzz: seed ${seed} (reproduce with --seed ${seed}), ${seconds} s, targets ${
    targets.map((t) => t.name).join(", ")
  }`,
);

/** One random stream per target, from the seed and the target's place in TARGETS. */
const streams = new Map(
  targets.map((t) => [t.name, prng(seed ^ TARGETS.indexOf(t) * 0x9e37_79b9)]),
);
const corpus = new Map<string, Uint8Array[]>(targets.map((t) => [t.name, []]));
const seen = new Set<string>();
const stats = new Map<string, { runs: number; ms: number; bytes: number; slowest: number }>(
  targets.map((t) => [t.name, { runs: 0, ms: 0, bytes: 0, slowest: 0 }]),
);

/** A mutation of `input`: bytes flipped, set, inserted, deleted, or spliced with another input. */
function mutateInput(input: Uint8Array, others: Uint8Array[], rand: () => number): Uint8Array {
  const bytes = [...input];
  const n = 1 + Math.floor(rand() * 4);
  for (let i = 0; i < n; i++) {
    const at = Math.floor(rand() * (bytes.length + 1));
    switch (Math.floor(rand() * 5)) {
      case 0:
        if (at < bytes.length) bytes[at] = Math.floor(rand() * 256);
        break;
      case 1:
        if (at < bytes.length) bytes[at]! ^= 1 << Math.floor(rand() * 8);
        break;
      case 2:
        bytes.splice(
          at,
          0,
          ...Array.from({ length: 1 + Math.floor(rand() * 8) }, () => Math.floor(rand() * 256)),
        );
        break;
      case 3:
        bytes.splice(at, 1 + Math.floor(rand() * 8));
        break;
      default: {
        const other = others[Math.floor(rand() * others.length)];
        if (other !== undefined) {
          bytes.splice(at, bytes.length - at, ...other.subarray(Math.floor(rand() * other.length)));
        }
      }
    }
  }
  // Inputs are prefixes of programs: cut them short sometimes, the rest is drawn fresh.
  return new Uint8Array(rand() < 0.3 ? bytes.slice(0, Math.floor(rand() * bytes.length)) : bytes);
}

const started = performance.now();
const end = started + 1000 * seconds;
let iteration = 0;
/** Time a target has had per unit of its weight. */
const share = (t: FuzzTarget) => stats.get(t.name)!.ms / t.weight;
while (performance.now() < end) {
  const t = targets.reduce((a, b) => share(b) < share(a) ? b : a);
  const rand = streams.get(t.name)!;
  const pool = corpus.get(t.name)!;
  const base = pool.length > 0 && rand() < 0.5
    ? mutateInput(pool[Math.floor(rand() * pool.length)]!, pool, rand)
    : new Uint8Array(0);
  const src = new Source(base, prng(Math.floor(rand() * 2 ** 32)));
  iteration++;
  const { outcome, input, ms } = await execute(t, src);
  const stat = stats.get(t.name)!;
  stat.runs++;
  stat.ms += ms;
  stat.bytes += outcome.size;
  stat.slowest = Math.max(stat.slowest, ms);
  if (outcome.violation) await report(seed, iteration, t, input, outcome);
  const key = `${t.name} ${outcome.signature}`;
  if (!seen.has(key)) {
    seen.add(key);
    pool.push(input);
  }
}

const total = (performance.now() - started) / 1000;
console.log(
  `fuzz: ${iteration} inputs in ${total.toFixed(1)} s, no invariant broken (seed ${seed})`,
);
for (const [name, s] of stats) {
  console.log(
    `fuzz:   ${name.padEnd(10)} ${String(s.runs).padStart(6)} inputs, ${
      (s.bytes / MiB).toFixed(1).padStart(7)
    } MiB, ${(s.ms / Math.max(1, s.runs)).toFixed(1).padStart(6)} ms each, slowest ${
      s.slowest.toFixed(0)
    } ms, corpus ${corpus.get(name)!.length}`,
  );
}
