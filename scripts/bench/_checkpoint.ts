// K: a checkpoint's round trip through a host session, timed in one run like
// the other cases (median of the timed rounds).
import type { BenchLibrary } from "./_cases.ts";

/**
 * Sessions built at a time to restore into. With all 2 000 of a round built
 * at once, one process in two measured 11 µs per round trip instead of 4
 * throughout; in batches of 100, 8 processes of 8 measured 3.2–3.5 µs. We
 * have not pinned down what the many live sessions change in V8.
 */
const BATCH = 100;

/** What K measured. */
export interface CheckpointResult {
  /** Untimed rounds before the timed ones. */
  warmups: number;
  /** Timed rounds. */
  runs: number;
  /** Round trips per round. */
  rounds: number;
  /** Bytes of the minimal checkpoint. */
  bytes: number;
  /** Median microseconds per minimal round trip. */
  minimalUs: number;
  /** Median microseconds per lossless round trip (session state, no bytes in flight). */
  losslessUs: number;
}

/**
 * Times capture (the session's snapshot) + encode + decode + restore into a
 * session that exists already: a relay that restores builds its session
 * anyway, so building it is not part of the round trip. The captured session
 * has negotiated with a Linux-like guest and holds offers and serials.
 */
export function measureCheckpoint(
  lib: BenchLibrary,
  warmups: number,
  runs: number,
  rounds: number,
): CheckpointResult {
  const { HostSession, encodeCheckpoint, decodeCheckpoint } = lib;
  const port = lib.hostPort;
  const source = new HostSession();
  const live = port.hostCoreOf(source);
  const state = live.snapshot();
  // A session mid-way: the guest's caps, serials, an offer each way.
  Object.assign(state, {
    guestCaps: [0x00038de7],
    selections: [
      {
        lastSerial: 41,
        hostOffer: [1],
        guestRequests: [],
        guestOffer: { serial: 41, types: [1, 2] },
        hostRequests: [],
      },
      { lastSerial: 7, guestRequests: [1], hostRequests: [] },
      { lastSerial: 0, guestRequests: [], hostRequests: [] },
    ],
  });
  live.restore(state, { reconnected: false, drained: false, offers: true });
  const round = (mode: "minimal" | "lossless"): number => {
    let ms = 0;
    for (let done = 0; done < rounds; done += BATCH) {
      // Sessions to restore into, built before the clock starts (and before
      // their own announcement, which restoring cancels).
      const n = Math.min(BATCH, rounds - done);
      const targets = Array.from({ length: n }, () => port.hostCoreOf(new HostSession()));
      const t0 = performance.now();
      for (let i = 0; i < n; i++) {
        const bytes = encodeCheckpoint({ mode, ...live.snapshot() });
        targets[i]!.restore(decodeCheckpoint(bytes), {
          reconnected: false,
          drained: false,
          offers: true,
        });
      }
      ms += performance.now() - t0;
    }
    return ms * 1000 / rounds;
  };
  // Interleaved like the other cases: both modes warm up before either is timed.
  const minimalUs: number[] = [];
  const losslessUs: number[] = [];
  for (let run = 0; run < warmups + runs; run++) {
    const minimal = round("minimal");
    const lossless = round("lossless");
    if (run < warmups) continue;
    minimalUs.push(minimal);
    losslessUs.push(lossless);
  }
  const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[xs.length >> 1]!;
  return {
    warmups,
    runs,
    rounds,
    bytes: encodeCheckpoint({ mode: "minimal", ...live.snapshot() }).length,
    minimalUs: median(minimalUs),
    losslessUs: median(losslessUs),
  };
}
