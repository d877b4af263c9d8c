// Counts the byte arrays code allocates by size, by standing in for the
// global `Uint8Array` constructor while a measurement runs. `new
// Uint8Array(n)` is how the library allocates every buffer whose size comes
// from a peer (bodies, chunks, frames, checkpoint parts), so the largest `n`
// seen is the largest buffer a peer made it allocate. Copies made with
// `slice()` do not go through the constructor; they are views' copies of
// input, so never larger than the input.

/** What one measurement saw. */
export interface Allocations {
  /** `new Uint8Array(n)` calls with a length. */
  count: number;
  /** Sum of their lengths. */
  total: number;
  /** The largest length. */
  largest: number;
}

const Original = Uint8Array;
let current: Allocations | undefined;
const Counting: Uint8ArrayConstructor = new Proxy(Original, {
  construct(target, args, newTarget): object {
    const n = args[0];
    if (current !== undefined && typeof n === "number") {
      current.count++;
      current.total += n;
      if (n > current.largest) current.largest = n;
    }
    return Reflect.construct(target, args, newTarget === Counting ? target : newTarget);
  },
});

/**
 * Counts allocations from now until `stop()`, which returns what it saw and
 * puts the real constructor back. Measurements do not nest.
 */
export function countAllocations(): { stop(): Allocations; peek(): Allocations } {
  if (current !== undefined) throw new Error("countAllocations: a measurement is running");
  const seen: Allocations = { count: 0, total: 0, largest: 0 };
  current = seen;
  (globalThis as { Uint8Array: unknown }).Uint8Array = Counting;
  return {
    peek: () => ({ ...seen }),
    stop() {
      (globalThis as { Uint8Array: unknown }).Uint8Array = Original;
      current = undefined;
      return seen;
    },
  };
}

/** Ends a measurement a failed run left running. */
export function stopCounting(): void {
  (globalThis as { Uint8Array: unknown }).Uint8Array = Original;
  current = undefined;
}
