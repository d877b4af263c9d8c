// deno-lint-ignore-file no-console
/**
 * A long run of a relay and a guest, with hand-offs:
 *
 *     deno task soak [--minutes N] [--seed S]
 *
 * A guest pipeline (a `GuestSession` that outlives every relay) and a host
 * relay talk over two byte links whose reads are cut at random sizes. One
 * operation at a time, chosen at random on the three selections: the guest
 * or the host copies (small data mostly, up to 3 MiB sometimes), pastes
 * what the other side copied, releases, and the host moves the mouse.
 * Between operations, a hand-off is armed now and then: when the relay has
 * read up to a random byte of the guest's stream (for a minimal
 * checkpoint, the next message boundary after it), it is checkpointed and
 * a new relay restored from the checkpoint takes the links over, in the
 * middle of whatever is in flight. Lossless and minimal checkpoints
 * alternate.
 *
 * Invariants, checked as it goes:
 * - every paste returns what the other side copied last (a host paste cut
 *   by a minimal hand-off may fail: minimal checkpoints do not carry the
 *   host's requests nor the guest's offers; the guest then copies again);
 * - serials agree: after each operation the relay's last serial on each
 *   selection is the guest's next one (the host grabbed last) or one less
 *   (the guest did), and neither side ever discards a grab;
 * - nothing is lost or doubled: every grab, release and mouse state
 *   arrives once, whichever relay is in place, and in lossless mode every
 *   host paste in flight completes on the next relay;
 * - RSS stays flat: it ends within 32 MiB of where it was after the
 *   warm-up (the first 20 % of the run). Deno frees large ArrayBuffers
 *   lazily, so RSS is sampled after a full `gc()` (the task runs with
 *   `--v8-flags=--expose-gc`) every 200 operations, and the median of the
 *   samples from 20 % to 40 % of the run is compared with the median of
 *   the last 20 %: the allocator keeps freed pages a while, and the
 *   clipboards alive at one moment weigh up to 18 MiB, so single samples
 *   swing by tens of MiB; a leak is a trend. The task sets glibc's
 *   `MALLOC_MMAP_THRESHOLD_=131072`: left to itself, glibc raises that
 *   threshold after freeing a large block, serves later multi-MiB
 *   clipboards from its heap, and the heap's fragments make RSS creep by
 *   some 40 MiB in two minutes while the JavaScript heap and the external
 *   buffers stay flat (both are printed, so the two cases can be told
 *   apart). A relay on glibc that moves large clipboards wants the same
 *   setting.
 *
 * It prints the counts of operations, hand-offs and bytes moved.
 *
 * @module
 */
import { parseArgs } from "node:util";
import {
  ClipboardError,
  createGuestPipeline,
  createHostPipeline,
  type GuestPipeline,
  type HostPipeline,
  type HostPipelineOptions,
  type SessionDiagnostic,
} from "../mod.ts";
import { hostCoreOf } from "../src/session/_session_cores.ts";
import { ChunkReader } from "../src/wire/_chunk_reader.ts";
import { MessageReader } from "../src/wire/_message_reader.ts";
import { Link } from "../tests/_link.ts";
import { prng, randBytes } from "../tests/_helpers.ts";

const { values } = parseArgs({
  args: Deno.args,
  options: { minutes: { type: "string", default: "2" }, seed: { type: "string" } },
});
const minutes = Number(values.minutes);
const seed = values.seed === undefined
  ? crypto.getRandomValues(new Uint32Array(1))[0]!
  : Number(values.seed) >>> 0;
const rand = prng(seed);
const int = (min: number, max: number) => min + Math.floor(rand() * (max - min + 1));
const pick = <T>(items: readonly T[]): T => items[Math.floor(rand() * items.length)]!;
const MiB = 1024 * 1024;
const gc = (globalThis as { gc?: () => void }).gc;
console.log(`soak: seed ${seed} (reproduce with --seed ${seed}), ${minutes} min`);

class SoakFailure extends Error {}
function check(ok: boolean, what: string): asserts ok {
  if (!ok) throw new SoakFailure(what);
}

/** Resolves when `done` holds; fails after 30 s, which only a lost message takes. */
async function until(done: () => boolean, what: string): Promise<void> {
  const deadline = Date.now() + 30_000;
  while (!done()) {
    if (Date.now() > deadline) throw new SoakFailure(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 0));
  }
}

function same(a: Uint8Array, b: Uint8Array): boolean {
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false;
  return true;
}

/** Where the guest's messages end in its byte stream, as they are written. */
class Boundaries {
  readonly ends: number[] = [];
  #chunkEnd = 0;
  readonly #chunks: ChunkReader;

  constructor() {
    const messages = new MessageReader(() => this.ends.push(this.#chunkEnd), {
      maxMessageSize: 0xffff_ffff - 20,
      copy: false,
      checkOnly: true,
    });
    // A message ends where the chunk that completes it ends.
    this.#chunks = new ChunkReader({
      chunkStart: (port, size, offset) => {
        this.#chunkEnd = offset + 8 + size;
        messages.chunkStart(port, size, offset);
      },
      chunkData: (bytes, start, end, base) => messages.chunkData(bytes, start, end, base),
    }, { maxChunkSize: 0xffff_ffff });
  }

  push(bytes: Uint8Array): void {
    this.#chunks.push(bytes);
    if (this.ends.length > 1000) this.ends.splice(0, 500);
  }
}

// The links, the guest, and the relay that changes at each hand-off.
const g2h = new Link({ log: false });
const h2g = new Link({ log: false });
const boundaries = new Boundaries();
const transport = { readable: g2h.readable, writable: h2g.writable };

const TYPES = [1, 2, 3, 5];
const guestData: Map<number, Uint8Array>[] = [new Map(), new Map(), new Map()];
const hostData: Map<number, Uint8Array>[] = [new Map(), new Map(), new Map()];
/** Who copied last on each selection, as far as the other side has seen. */
const owner: ("host" | "guest" | undefined)[] = [undefined, undefined, undefined];
/** Events each side saw, and how many of each should have arrived. */
const seen = {
  guestGrab: [0, 0, 0],
  guestRelease: [0, 0, 0],
  hostGrab: [0, 0, 0],
  hostRelease: [0, 0, 0],
  mouse: [] as string[],
};
const expected = {
  guestGrab: [0, 0, 0],
  guestRelease: [0, 0, 0],
  hostGrab: [0, 0, 0],
  hostRelease: [0, 0, 0],
};
const diagnostics: SessionDiagnostic[] = [];
const counts = new Map<string, number>();
const count = (what: string) => counts.set(what, (counts.get(what) ?? 0) + 1);

function clipboard(): Uint8Array {
  const r = rand();
  const size = r < 0.01 ? int(1, 3 * MiB) : r < 0.1 ? int(4096, 100_000) : int(0, 4096);
  return randBytes(rand, size);
}

const hostOptions: HostPipelineOptions = {
  requestTimeout: 0,
  maxMessageSize: 8 * MiB,
  clipboard: {
    provide: (s, t) => hostData[s]!.get(t),
    onGuestGrab: (s) => void seen.guestGrab[s]!++,
    onGuestRelease: (s) => void seen.guestRelease[s]!++,
  },
  onDiagnostic: (d) => void diagnostics.push(d),
};
let relay: HostPipeline = createHostPipeline(transport, hostOptions);
const guest: GuestPipeline = createGuestPipeline(
  { readable: h2g.readable, writable: g2h.writable },
  {
    requestTimeout: 0,
    maxMessageSize: 8 * MiB,
    clipboard: {
      provide: (s, t) => guestData[s]!.get(t),
      onHostGrab: (s) => void seen.hostGrab[s]!++,
      onHostRelease: (s) => void seen.hostRelease[s]!++,
    },
    onMouse: (m) => void seen.mouse.push(`${m.x},${m.y},${m.buttons}`),
    onDiagnostic: (d) => void diagnostics.push(d),
  },
);
g2h.onWrite = (bytes) => {
  boundaries.push(bytes);
  if (pendingMinimal !== undefined) armMinimal();
};

// Hand-offs.
const successor = new WeakMap<HostPipeline, HostPipeline>();
let lock = Promise.resolve();
let nextMode: "lossless" | "minimal" = "lossless";
let pendingMinimal: number | undefined;
const handOffs = { lossless: 0, minimal: 0 };

function handOff(mode: "lossless" | "minimal"): Promise<void> {
  lock = lock.then(async () => {
    const old = relay;
    const checkpoint = await old.checkpoint({ mode });
    await old.done;
    relay = createHostPipeline(transport, {
      ...hostOptions,
      restore: checkpoint,
      resume: "continued",
    });
    successor.set(old, relay);
    handOffs[mode]++;
  });
  return lock;
}

function armMinimal(): void {
  const end = boundaries.ends.find((b) => b >= pendingMinimal! && b > g2h.read);
  if (end === undefined) return;
  pendingMinimal = undefined;
  g2h.stopAt = end;
}

/** Arms a hand-off at a random byte ahead (lossless) or the next message boundary after it (minimal). */
function armHandOff(): void {
  if (g2h.stopAt !== undefined || pendingMinimal !== undefined) return;
  const mode = nextMode;
  nextMode = mode === "lossless" ? "minimal" : "lossless";
  const ahead = g2h.read + int(1, rand() < 0.5 ? 200 : 200_000);
  g2h.onStop = async () => {
    g2h.stopAt = undefined;
    await handOff(mode);
  };
  if (mode === "lossless") {
    g2h.stopAt = ahead;
  } else {
    pendingMinimal = ahead;
    armMinimal();
  }
}

/** Runs `call` on the relay in place, once no hand-off is under way. */
async function onRelay<T>(call: (r: HostPipeline) => T): Promise<T> {
  for (;;) {
    await lock;
    try {
      return call(relay);
    } catch (error) {
      if (!(error instanceof ClipboardError && error.code === "CLOSED")) throw error;
    }
  }
}

/** The host pastes; a lossless hand-off hands the request on, a minimal one drops it. */
async function hostPaste(selection: number, type: number): Promise<Uint8Array | undefined> {
  let owner = await onRelay((r) => r);
  let result = owner.session.request(selection, type);
  const claimed = new Set<object>();
  for (;;) {
    try {
      return await result;
    } catch (error) {
      if (!(error instanceof ClipboardError && error.code === "CLOSED")) throw error;
      await lock;
      const heir = successor.get(owner);
      check(
        heir !== undefined,
        `a host paste failed with CLOSED with no hand-off: ${error.message}`,
      );
      owner = heir;
      const resumed = heir.session.resumedRequests.find((r) =>
        r.selection === selection && r.type === type && !claimed.has(r)
      );
      if (resumed === undefined) return undefined; // a minimal checkpoint: the request is gone
      claimed.add(resumed);
      result = resumed.result;
    }
  }
}

/** Every grab and release arrived once; the serials agree; nobody discarded a grab. */
function checkQuiet(): void {
  for (const key of ["guestGrab", "guestRelease", "hostGrab", "hostRelease"] as const) {
    check(
      seen[key].every((n, s) => n === expected[key][s]),
      `${key}: seen ${seen[key]}, expected ${expected[key]}`,
    );
  }
  const discarded = diagnostics.find((d) => d.code === "GRAB_DISCARDED");
  check(discarded === undefined, `a grab was discarded: ${discarded?.message}`);
  const host = hostCoreOf(relay.session).snapshot();
  const next = guest.session.serials;
  for (let s = 0; s < 3; s++) {
    // The host grabs with the guest's last serial and keeps it: whoever copied last, the
    // guest's next serial is one more (before anyone copied, both are 0).
    const last = host.selections[s]!.lastSerial;
    check(
      owner[s] === undefined ? last === next[s] || last === next[s]! - 1 : last === next[s]! - 1,
      `selection ${s}: the relay's last serial is ${last}, the guest's next ${next[s]} (${
        owner[s]
      } copied last)`,
    );
  }
}

/** Lets the links go quiet: everything written has been read and dispatched. */
async function quiet(): Promise<void> {
  await until(() => g2h.read === g2h.written && h2g.read === h2g.written, "the links to go quiet");
  await lock;
  for (let i = 0; i < 3; i++) await new Promise((r) => setTimeout(r, 0));
}

async function operation(): Promise<void> {
  g2h.maxRead = pick([1, 7, 64, 2056, 4093, 65536]);
  h2g.maxRead = pick([1, 7, 64, 2056, 4093, 65536]);
  if (g2h.maxRead < 64 || h2g.maxRead < 64) {
    // Tiny reads cost a stream read each: keep them for small traffic.
    g2h.maxRead = Math.max(g2h.maxRead, 64);
    h2g.maxRead = Math.max(h2g.maxRead, 64);
  }
  const s = int(0, 2);
  const op = pick([
    "guest copies",
    "host copies",
    "guest pastes",
    "host pastes",
    "guest releases",
    "host releases",
    "mouse",
  ]);
  if (op === "guest copies") {
    const types = [...new Set([pick(TYPES), pick(TYPES)])];
    guestData[s] = new Map(types.map((t) => [t, clipboard()]));
    expected.guestGrab[s]!++;
    if (owner[s] === "host") expected.hostRelease[s]!++; // the guest drops the host's offer
    guest.session.grab(s, types);
    await until(() => seen.guestGrab[s] === expected.guestGrab[s], `the guest's grab of ${s}`);
    owner[s] = "guest";
    hostData[s] = new Map();
  } else if (op === "host copies") {
    const types = [...new Set([pick(TYPES), pick(TYPES)])];
    hostData[s] = new Map(types.map((t) => [t, clipboard()]));
    expected.hostGrab[s]!++;
    await onRelay((r) => {
      // The relay drops the guest's offer, if it knows it (a minimal hand-off forgets it).
      if (r.session.guestOffer(s) !== undefined) expected.guestRelease[s]!++;
      r.session.grab(s, types);
    });
    await until(() => seen.hostGrab[s] === expected.hostGrab[s], `the host's grab of ${s}`);
    owner[s] = "host";
    guestData[s] = new Map();
  } else if (op === "guest pastes") {
    if (owner[s] !== "host") return;
    const type = pick([...hostData[s]!.keys()]);
    if (hostData[s]!.get(type)!.length === 0) {
      // The host has nothing to give: it releases the selection (QEMU does too).
      expected.hostRelease[s]!++;
      const refused = await guest.session.request(s, type).then(() => undefined, (e) => e);
      check(
        refused instanceof ClipboardError && refused.code === "RELEASED",
        `pasting an empty copy gave ${refused}`,
      );
      await until(() => seen.hostRelease[s] === expected.hostRelease[s], `the host's release`);
      owner[s] = undefined;
      count("guest pastes of an empty copy");
      return;
    }
    const data = await guest.session.request(s, type);
    check(same(data, hostData[s]!.get(type)!), `the guest pasted other bytes than the host copied`);
    counts.set(
      "bytes pasted by the guest",
      (counts.get("bytes pasted by the guest") ?? 0) + data.length,
    );
  } else if (op === "host pastes") {
    if (owner[s] !== "guest") return;
    const type = pick([...guestData[s]!.keys()]);
    // After a minimal hand-off the relay no longer knows the guest's offer.
    if (!await onRelay((r) => r.session.guestOffer(s)?.types.includes(type) === true)) return;
    const minimalBefore = handOffs.minimal;
    const data = await hostPaste(s, type);
    if (data === undefined) {
      check(handOffs.minimal > minimalBefore, "a host paste was lost without a minimal hand-off");
      count("host pastes cut by a minimal hand-off");
      return;
    }
    check(
      same(data, guestData[s]!.get(type)!),
      `the host pasted other bytes than the guest copied`,
    );
    counts.set(
      "bytes pasted by the host",
      (counts.get("bytes pasted by the host") ?? 0) + data.length,
    );
  } else if (op === "guest releases") {
    if (owner[s] !== "guest") return;
    const minimalBefore = handOffs.minimal;
    const known = await onRelay((r) => r.session.guestOffer(s) !== undefined);
    guest.session.release(s);
    await quiet();
    // A minimal hand-off between here and the release's arrival forgets the offer.
    const arrived = seen.guestRelease[s]! - expected.guestRelease[s]!;
    check(
      arrived === (known ? 1 : 0) || (known && arrived === 0 && handOffs.minimal > minimalBefore),
      `the guest's release of ${s} arrived ${arrived} times`,
    );
    expected.guestRelease[s] = seen.guestRelease[s]!;
    owner[s] = undefined;
  } else if (op === "host releases") {
    if (owner[s] !== "host") return;
    expected.hostRelease[s]!++;
    await onRelay((r) => r.session.release(s));
    await until(
      () => seen.hostRelease[s] === expected.hostRelease[s],
      `the host's release of ${s}`,
    );
    owner[s] = undefined;
  } else {
    const state = { x: int(0, 4000), y: int(0, 3000), buttons: int(0, 7) };
    await onRelay((r) => r.session.mouse(state));
    const key = `${state.x},${state.y},${state.buttons}`;
    await until(() => seen.mouse.length > 0, "the mouse state");
    await quiet();
    check(seen.mouse.length === 1 && seen.mouse[0] === key, `mouse states: ${seen.mouse}`);
    seen.mouse.length = 0;
  }
  count(op);
}

await until(
  () => relay.session.guestCaps !== undefined && guest.session.hostCaps !== undefined,
  "caps",
);
const started = performance.now();
const end = started + minutes * 60_000;
/** Memory after a full gc() at quiet moments, with the time they were taken. */
const samples: { at: number; rss: number; heap: number }[] = [];
let peak = 0;
let operations = 0;
try {
  while (performance.now() < end) {
    if (rand() < 0.15) armHandOff();
    await operation();
    operations++;
    if (operations % 20 === 0) {
      await quiet();
      checkQuiet();
    }
    if (operations % 200 === 0) {
      gc?.();
      const memory = Deno.memoryUsage();
      samples.push({
        at: (performance.now() - started) / (end - started),
        rss: memory.rss,
        heap: memory.heapUsed + memory.external,
      });
    }
    peak = Math.max(peak, Deno.memoryUsage().rss);
  }
  await quiet();
  checkQuiet();
  check(
    diagnostics.every((d) => d.code !== "UNSOLICITED_DATA" && d.code !== "INVALID_PAYLOAD"),
    `an unexpected diagnostic: ${diagnostics.map((d) => d.message).join("; ")}`,
  );
} catch (error) {
  console.log(
    `soak: FAILED after ${operations} operations, seed ${seed}: ${
      error instanceof Error ? error.message : error
    }`,
  );
  if (!(error instanceof SoakFailure)) console.log(error);
  Deno.exit(1);
}
g2h.stopAt = undefined;
await guest.close();
await relay.done;
const seconds = (performance.now() - started) / 1000;
console.log(`soak: ${operations} operations in ${seconds.toFixed(0)} s, seed ${seed}`);
for (const [what, n] of [...counts].sort()) console.log(`soak:   ${what}: ${n}`);
console.log(
  `soak:   hand-offs: ${handOffs.lossless} lossless, ${handOffs.minimal} minimal; bytes moved: ${g2h.written} guest → host, ${h2g.written} host → guest`,
);
// RSS is noisy: the allocator keeps freed pages a while, and the clipboards
// alive at a given moment weigh up to 18 MiB. A leak shows as a trend, so
// compare the median of the samples just after the warm-up (20 % to 40 % of
// the run) with the median of the last 20 %.
const median = (from: number, to: number, key: "rss" | "heap") => {
  const values = samples.filter((x) => x.at >= from && x.at < to).map((x) => x[key]);
  return values.sort((a, b) => a - b)[Math.floor(values.length / 2)] ?? 0;
};
const after = median(0.2, 0.4, "rss");
const last = median(0.8, 1.01, "rss");
const growth = last - after;
console.log(
  `soak:   RSS (median after gc()) after warm-up ${(after / MiB).toFixed(1)} MiB, at the end ${
    (last / MiB).toFixed(1)
  } MiB (${growth >= 0 ? "+" : ""}${(growth / MiB).toFixed(1)} MiB), peak ${
    (peak / MiB).toFixed(1)
  } MiB, ${samples.length} samples${gc ? "" : " (no gc(): run with --v8-flags=--expose-gc)"}`,
);
console.log(
  `soak:   JavaScript heap and external buffers (median after gc()) after warm-up ${
    (median(0.2, 0.4, "heap") / MiB).toFixed(1)
  } MiB, at the end ${(median(0.8, 1.01, "heap") / MiB).toFixed(1)} MiB`,
);
if (growth > 32 * MiB) {
  console.log(`soak: FAILED: RSS grew by more than 32 MiB after the warm-up`);
  Deno.exit(1);
}
