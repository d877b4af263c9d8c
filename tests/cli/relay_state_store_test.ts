// The relay's state store (scripts/relay/state_store.ts) over files in memory: who may write,
// what an older state is, what a write leaves behind. The relay's own tests
// (tests/cli/relay_test.ts) run the same over real files.
import { test } from "node:test";
import assert from "node:assert/strict";
import { encodeCheckpoint } from "../../mod.ts";
import { encodeStateFile, importStateKey } from "../../scripts/relay/state_file.ts";
import { type StateFiles, StateStore } from "../../scripts/relay/state_store.ts";

/** Files in memory, one process's view of them: `pid`, on `hostname`. */
class MemoryFiles implements StateFiles {
  readonly files: Map<string, Uint8Array>;
  readonly alive: Set<number>;
  readonly hostname: string;
  readonly pid: number;
  /** Every name created, in order. */
  readonly created: string[] = [];

  constructor(pid: number, shared?: MemoryFiles, hostname = "here") {
    this.files = shared?.files ?? new Map();
    this.alive = shared?.alive ?? new Set();
    this.alive.add(pid);
    this.pid = pid;
    this.hostname = hostname;
  }

  read(path: string, maxBytes: number): Promise<Uint8Array | undefined> {
    const bytes = this.files.get(path);
    if (bytes !== undefined && bytes.length > maxBytes) {
      return Promise.reject(Object.assign(new Error("too large"), { code: "TOO_LARGE" }));
    }
    return Promise.resolve(bytes);
  }
  createNew(path: string, bytes: Uint8Array): Promise<boolean> {
    if (this.files.has(path)) return Promise.resolve(false);
    this.files.set(path, bytes.slice());
    this.created.push(path);
    return Promise.resolve(true);
  }
  rename(from: string, to: string): Promise<void> {
    const bytes = this.files.get(from);
    if (bytes === undefined) return Promise.reject(new Error(`no ${from}`));
    this.files.delete(from);
    this.files.set(to, bytes);
    return Promise.resolve();
  }
  remove(path: string): Promise<void> {
    this.files.delete(path);
    return Promise.resolve();
  }
  list(dir: string): Promise<string[]> {
    return Promise.resolve(
      [...this.files.keys()].filter((p) => p.startsWith(`${dir}/`)).map((p) =>
        p.slice(dir.length + 1)
      ),
    );
  }
  syncDir(): Promise<void> {
    return Promise.resolve();
  }
  processAlive(pid: number): boolean {
    return this.alive.has(pid);
  }
}

const PATH = "/run/vm1.state";
const MAX = 1 << 20;
const checkpoint = encodeCheckpoint({
  mode: "lossless",
  hostCaps: [0x00020061],
  guestCaps: [0x00038de7],
  selections: [
    { lastSerial: 4, guestRequests: [] },
    { lastSerial: 0, guestRequests: [] },
    { lastSerial: 0, guestRequests: [] },
  ],
});
const state = { checkpoint, hostCopies: [], guestCopies: [], handedOff: false };
const names = (files: MemoryFiles) => [...files.files.keys()].sort();

test("StateStore.lock lets one relay at a time hold a state, on this machine or another", async () => {
  const a = new MemoryFiles(100);
  const b = new MemoryFiles(200, a);
  const remote = new MemoryFiles(100, a, "there");
  const held = await StateStore.lock(a, PATH, { maxBytes: MAX });
  await assert.rejects(
    StateStore.lock(b, PATH, { maxBytes: MAX }),
    (e: Error & { code?: string }) =>
      e.code === "LOCKED" && /held by the relay with pid 100 on here/.test(e.message),
  );
  // A pid of another machine cannot be looked at: its lock holds even if this one has no such pid.
  a.alive.delete(100);
  await assert.rejects(StateStore.lock(remote, PATH, { maxBytes: MAX }), { code: "LOCKED" });
  a.alive.add(100);
  await held.unlock();
  const next = await StateStore.lock(b, PATH, { maxBytes: MAX });
  assert.equal(next.brokeStale, undefined);
  assert.deepEqual(await StateStore.holder(a, PATH), {
    ...JSON.parse(new TextDecoder().decode(a.files.get(`${PATH}.lock`))),
    stale: false,
  });
});

test("StateStore.lock takes over the lock of a relay that died on this machine, and removes its half-written files", async () => {
  const a = new MemoryFiles(100);
  const held = await StateStore.lock(a, PATH, { maxBytes: MAX });
  await held.read();
  await held.write(state);
  // Killed in the middle of its next write: a temporary file is left, and the lock.
  a.files.set(`/run/.vm1.state.${"ab".repeat(16)}.tmp`, new Uint8Array(10));
  a.files.set(`/run/.vm1.state.generation.${"cd".repeat(16)}.tmp`, new Uint8Array(1));
  a.files.set("/run/.other.state.0123.tmp", new Uint8Array(1));
  a.alive.delete(100);
  const b = new MemoryFiles(200, a);
  const next = await StateStore.lock(b, PATH, { maxBytes: MAX });
  assert.equal(next.brokeStale?.pid, 100);
  assert.deepEqual(names(b), [
    "/run/.other.state.0123.tmp",
    "/run/vm1.state",
    "/run/vm1.state.generation",
    "/run/vm1.state.lock",
  ]);
  assert.deepEqual((await next.read())?.checkpoint, checkpoint);
  // The dead relay, were it only stopped, can write no more.
  await assert.rejects(held.write(state), { code: "FENCED" });
});

test("StateStore.write replaces the state through a new file of an unpredictable name, and moves the generation on", async () => {
  const files = new MemoryFiles(100);
  const store = await StateStore.lock(files, PATH, { maxBytes: MAX });
  assert.equal(await store.read(), undefined);
  await store.write(state);
  await store.write({ ...state, handedOff: true });
  assert.equal(store.generation, 2);
  const temps = files.created.filter((name) => name.endsWith(".tmp"));
  assert.equal(temps.length, 4, "one for the state and one for the generation, each time");
  for (const name of temps) {
    assert.match(name, /^\/run\/\.vm1\.state(\.generation)?\.[0-9a-f]{32}\.tmp$/);
  }
  assert.equal(new Set(temps).size, 4);
  assert.equal(new TextDecoder().decode(files.files.get(`${PATH}.generation`)), "2\n");
  await store.unlock();
  assert.deepEqual(names(files), [PATH, `${PATH}.generation`]);
  await assert.rejects(store.write(state), { code: "FENCED" });
});

test("StateStore reads a state, its generation and its lock again when they are replaced as it opens them, and gives up after five tries", async () => {
  const writer = new MemoryFiles(100);
  const store = await StateStore.lock(writer, PATH, { maxBytes: MAX });
  await store.write(state);
  // Another relay's view, in which each file is replaced (renamed over) as it is opened, `races`
  // times in a row, as a standby polling while the active relay writes sees it.
  const reader = new MemoryFiles(200, writer);
  let races = 0;
  const seen: string[] = [];
  const read = reader.read.bind(reader);
  reader.read = (path, maxBytes) => {
    seen.push(path);
    if (races-- > 0) {
      return Promise.reject(Object.assign(new Error("replaced"), { code: "CHANGED" }));
    }
    return read(path, maxBytes);
  };
  races = 4;
  assert.equal(await StateStore.writtenGeneration(reader, PATH), 1);
  races = 4;
  assert.equal((await StateStore.holder(reader, PATH))?.pid, 100);
  assert.deepEqual(seen, [
    ...Array(5).fill(`${PATH}.generation`),
    ...Array(5).fill(`${PATH}.lock`),
  ]);
  races = 5;
  await assert.rejects(StateStore.writtenGeneration(reader, PATH), { code: "CHANGED" });
  await store.unlock();
  const next = await StateStore.lock(reader, PATH, { maxBytes: MAX });
  races = 3;
  assert.equal((await next.read())?.handedOff, false);
});

test("StateStore.write refuses once another relay holds the lock, or the lock was removed", async () => {
  const a = new MemoryFiles(100);
  const store = await StateStore.lock(a, PATH, { maxBytes: MAX });
  await store.write(state);
  const before = a.files.get(PATH);
  // An operator removes the lock of a relay that seems stuck, and starts another one.
  await a.remove(`${PATH}.lock`);
  const b = await StateStore.lock(new MemoryFiles(200, a), PATH, { maxBytes: MAX });
  await assert.rejects(
    store.write(state),
    (e: Error & { code?: string }) =>
      e.code === "FENCED" && /taken over by the relay with pid 200/.test(e.message),
  );
  assert.equal(a.files.get(PATH), before, "nothing written");
  await b.unlock();
  await assert.rejects(store.write(state), { code: "FENCED" });
});

test("StateStore.read refuses a state older than one written since, and one forged without the key", async () => {
  const key = await importStateKey("42".repeat(32));
  const files = new MemoryFiles(100);
  const store = await StateStore.lock(files, PATH, { key, maxBytes: MAX });
  await store.write(state);
  const old = files.files.get(PATH)!;
  await store.write(state);
  await store.write(state);
  // Someone puts the older file back.
  files.files.set(PATH, old);
  await assert.rejects(
    store.read(),
    (e: Error & { code?: string }) =>
      e.code === "STALE" &&
      /holds generation 1, but generation 3 was written since/.test(e.message),
  );
  files.files.set(PATH, await encodeStateFile({ ...state, generation: 9 }));
  await assert.rejects(store.read(), { code: "UNAUTHENTICATED" });
  const other = await importStateKey("43".repeat(32));
  files.files.set(PATH, await encodeStateFile({ ...state, generation: 9 }, other));
  await assert.rejects(store.read(), { code: "BAD_MAC" });
  files.files.set(PATH, await encodeStateFile({ ...state, generation: 9 }, key));
  assert.equal((await store.read())?.generation, 9);
  await store.write(state);
  assert.equal(store.generation, 10);
});

test("StateStore.read refuses a state file over the size limit before reading it", async () => {
  const files = new MemoryFiles(100);
  const store = await StateStore.lock(files, PATH, { maxBytes: 100 });
  files.files.set(PATH, new Uint8Array(101));
  await assert.rejects(store.read(), { code: "TOO_LARGE" });
});
