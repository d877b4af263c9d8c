// Test helpers: an independent reference encoder, a seeded PRNG and stream utilities.
// The encoder here is written separately from src/ so tests do not check the
// library against itself.

import type { MessageHandler } from "../src/wire/_message_reader.ts";

/** Concatenates byte arrays. */
export function concat(...parts: Uint8Array[]): Uint8Array {
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let at = 0;
  for (const p of parts) {
    out.set(p, at);
    at += p.length;
  }
  return out;
}

/** Little-endian u32 words as bytes. */
export function u32s(...words: number[]): Uint8Array {
  const out = new Uint8Array(4 * words.length);
  const view = new DataView(out.buffer);
  words.forEach((w, i) => view.setUint32(4 * i, w >>> 0, true));
  return out;
}

/** A chunk: header (port, size) then the payload. */
export function chunk(port: number, payload: Uint8Array, size = payload.length): Uint8Array {
  return concat(u32s(port, size), payload);
}

/** A message: 20-byte header then the payload. */
export function message(
  type: number,
  payload: Uint8Array,
  opts: { protocol?: number; opaque?: bigint; size?: number } = {},
): Uint8Array {
  const header = new Uint8Array(20);
  const view = new DataView(header.buffer);
  view.setUint32(0, opts.protocol ?? 1, true);
  view.setUint32(4, type, true);
  view.setBigUint64(8, opts.opaque ?? 0n, true);
  view.setUint32(16, opts.size ?? payload.length, true);
  return concat(header, payload);
}

/** A whole message framed as chunks of at most `max` bytes. */
export function framed(port: number, type: number, payload: Uint8Array, max = 2048): Uint8Array {
  const m = message(type, payload);
  const parts: Uint8Array[] = [];
  for (let i = 0; i < m.length; i += max) parts.push(chunk(port, m.subarray(i, i + max)));
  return concat(...parts);
}

/** Mulberry32: a small seeded PRNG. */
export function prng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** Random integer in [min, max]. */
export function randInt(rand: () => number, min: number, max: number): number {
  return min + Math.floor(rand() * (max - min + 1));
}

/** Random bytes. */
export function randBytes(rand: () => number, n: number): Uint8Array {
  const out = new Uint8Array(n);
  for (let i = 0; i < n; i++) out[i] = Math.floor(rand() * 256);
  return out;
}

/** Cuts bytes at the given sizes (cycling); views, not copies. */
export function cut(bytes: Uint8Array, sizes: number[]): Uint8Array[] {
  const out: Uint8Array[] = [];
  let at = 0;
  for (let i = 0; at < bytes.length; i++) {
    const n = sizes[i % sizes.length]!;
    out.push(bytes.subarray(at, at + n));
    at += n;
  }
  return out;
}

/** Cuts bytes into reads of random sizes in [1, max]. */
export function randomCut(rand: () => number, bytes: Uint8Array, max: number): Uint8Array[] {
  const out: Uint8Array[] = [];
  for (let at = 0; at < bytes.length;) {
    const n = randInt(rand, 1, max);
    out.push(bytes.subarray(at, at + n));
    at += n;
  }
  return out;
}

/** Everything a stream yields (`Array.fromAsync`, which Node 20 lacks). */
export async function collect<T>(stream: AsyncIterable<T>): Promise<T[]> {
  const out: T[] = [];
  for await (const item of stream) out.push(item);
  return out;
}

/** Pipes `inputs` through `stream` and returns everything it emitted. */
export async function through<I, O>(
  inputs: Iterable<I>,
  stream: TransformStream<I, O>,
): Promise<O[]> {
  return await collect(ReadableStream.from(inputs).pipeThrough(stream));
}

/** Reads a fixture of the project. */
export async function fixture(path: string): Promise<Uint8Array> {
  const { readFile } = await import("node:fs/promises");
  return new Uint8Array(await readFile(new URL(`./fixtures/${path}`, import.meta.url)));
}

/** Reads a JSON fixture. */
export async function fixtureJson<T>(path: string): Promise<T> {
  return JSON.parse(new TextDecoder().decode(await fixture(path))) as T;
}

/** Whether two byte arrays are equal (a tight loop: fast on large arrays). */
export function sameBytes(a: Uint8Array, b: Uint8Array): boolean {
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false;
  return true;
}

/** Messages compared field by field; fast on large payloads. */
export function sameMessages(
  actual: readonly { port: number; type: number; opaque: bigint; data: Uint8Array }[],
  expected: readonly { port: number; type: number; opaque: bigint; data: Uint8Array }[],
): boolean {
  return actual.length === expected.length && actual.every((m, i) => {
    const e = expected[i]!;
    return m.port === e.port && m.type === e.type && m.opaque === e.opaque &&
      sameBytes(m.data, e.data);
  });
}

/**
 * Resolves when `check` holds, polling the event loop. The limit of 20 000
 * turns only keeps a broken run from hanging; nothing depends on timing.
 */
export async function until(check: () => boolean, what: string): Promise<void> {
  for (let i = 0; i < 20_000; i++) {
    if (check()) return;
    await new Promise((r) => setTimeout(r, 1));
  }
  throw new Error(`Timed out waiting for ${what}`);
}

/**
 * Resolves once `check` returns a value (neither `undefined` nor `false`); each function in
 * `waiters` re-checks, for whoever has news to call; rejects with what `check` throws, or
 * after `timeoutMs`.
 */
export function waitFor<T>(
  waiters: Set<() => void>,
  check: () => T | undefined | false,
  what: string,
  timeoutMs = 15_000,
): Promise<T> {
  return new Promise<T>((resolve, reject) => {
    const wake = () => {
      let value: T | undefined | false;
      try {
        value = check();
      } catch (error) {
        waiters.delete(wake);
        clearTimeout(timer);
        return reject(error);
      }
      if (value === undefined || value === false) return;
      waiters.delete(wake);
      clearTimeout(timer);
      resolve(value);
    };
    const timer = setTimeout(() => {
      waiters.delete(wake);
      reject(new Error(`no ${what} within ${timeoutMs} ms`));
    }, timeoutMs);
    waiters.add(wake);
    wake();
  });
}

/**
 * Collects unhandled promise rejections until `stop()`: through the
 * `unhandledrejection` event where the global scope is an `EventTarget`
 * (Deno, browsers), through `process` on Node.
 */
export async function watchUnhandledRejections(): Promise<{ reasons: unknown[]; stop(): void }> {
  const reasons: unknown[] = [];
  const scope = globalThis as Partial<EventTarget>;
  if (typeof scope.addEventListener === "function") {
    const target = scope as EventTarget;
    const listener = (event: Event) => {
      reasons.push((event as Event & { reason: unknown }).reason);
      event.preventDefault();
    };
    target.addEventListener("unhandledrejection", listener);
    return { reasons, stop: () => target.removeEventListener("unhandledrejection", listener) };
  }
  const { default: process } = await import("node:process");
  const listener = (reason: unknown) => void reasons.push(reason);
  process.on("unhandledRejection", listener);
  return { reasons, stop: () => process.off("unhandledRejection", listener) };
}

/** A `MessageReader` handler for a handler that takes the payload as one view, `data`. */
export function withView(
  handler: (
    port: number,
    type: number,
    opaque: bigint,
    data: Uint8Array,
    skipped: number | undefined,
  ) => void,
): MessageHandler {
  return (port, type, opaque, bytes, start, end, skipped) =>
    handler(port, type, opaque, bytes.subarray(start, end), skipped);
}
