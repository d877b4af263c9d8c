import { test } from "node:test";
import assert from "node:assert/strict";
import {
  ChunkDeframer,
  ClipboardError,
  ClipboardType,
  createGuestPipeline,
  createHostPipeline,
  type GuestPipelineOptions,
  type HostPipelineOptions,
  HostSession,
  MessageAssembler,
  MessageFramer,
  Selection,
  type TransferProgress,
  type Transport,
  VdagentProtocolError,
} from "../mod.ts";
import { chunk, message, prng, randInt, until, watchUnhandledRejections } from "./_helpers.ts";

const TEXT = ClipboardType.UTF8_TEXT;
const PNG = ClipboardType.IMAGE_PNG;
const bytes = (s: string) => new TextEncoder().encode(s);
const PNG_BYTES = new Uint8Array([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a, 1, 2, 3]);

/** A one-way byte pipe that cuts what passes into pieces of random sizes. */
function fragmentingPipe(rand: () => number, max: number): TransformStream<Uint8Array, Uint8Array> {
  return new TransformStream({
    transform(bytes, controller) {
      for (let at = 0; at < bytes.length;) {
        const n = randInt(rand, 1, max);
        controller.enqueue(bytes.slice(at, at + n));
        at += n;
      }
    },
  });
}

/** A host pipeline and a guest pipeline joined by two fragmenting pipes. */
function backToBack(
  seed: number,
  host: HostPipelineOptions,
  guest: GuestPipelineOptions,
  max = 300,
) {
  const rand = prng(seed);
  const toGuest = fragmentingPipe(rand, max);
  const toHost = fragmentingPipe(rand, max);
  return {
    host: createHostPipeline({ readable: toHost.readable, writable: toGuest.writable }, host),
    guest: createGuestPipeline({ readable: toGuest.readable, writable: toHost.writable }, guest),
  };
}

test("createHostPipeline and createGuestPipeline exchange text, PNG, PRIMARY and mouse over fragmenting pipes", async () => {
  for (const seed of [1, 2, 3, 4, 5]) {
    const guestClipboard = new Map<string, Uint8Array>();
    const hostClipboard = new Map<string, Uint8Array>();
    const guestOffers: [number, readonly number[]][] = [];
    const hostOffers: [number, readonly number[]][] = [];
    const moves: unknown[] = [];
    const { host, guest } = backToBack(seed, {
      clipboard: {
        onGuestGrab: (s, t) => guestOffers.push([s, t]),
        provide: (s, t) => hostClipboard.get(`${s}/${t}`),
      },
    }, {
      onMouse: (m) => moves.push(m),
      clipboard: {
        onHostGrab: (s, t) => hostOffers.push([s, t]),
        provide: (s, t) => guestClipboard.get(`${s}/${t}`),
      },
    });
    // Guest → host: text, PNG, PRIMARY.
    guestClipboard.set("0/1", bytes("héllo from the guest ✓"));
    guestClipboard.set("0/2", PNG_BYTES);
    guest.session.grab(Selection.CLIPBOARD, [TEXT, PNG]);
    await until(() => guestOffers.length === 1, "the guest's grab");
    assert.deepEqual(await host.session.request(0, TEXT), bytes("héllo from the guest ✓"));
    assert.deepEqual(await host.session.request(0, PNG), PNG_BYTES);
    guestClipboard.set("1/1", bytes("primary from the guest"));
    guest.session.grab(Selection.PRIMARY, [TEXT]);
    await until(() => guestOffers.length === 2, "the guest's PRIMARY grab");
    assert.deepEqual(guestOffers, [[0, [TEXT, PNG]], [1, [TEXT]]]);
    assert.deepEqual(await host.session.request(1, TEXT), bytes("primary from the guest"));
    // Host → guest: text, PNG, PRIMARY.
    hostClipboard.set("0/1", bytes("from the host"));
    hostClipboard.set("0/2", PNG_BYTES);
    hostClipboard.set("1/1", bytes("host primary"));
    host.session.grab(Selection.CLIPBOARD, [TEXT, PNG]);
    host.session.grab(Selection.PRIMARY, [TEXT]);
    await until(() => hostOffers.length === 2, "the host's grabs");
    assert.deepEqual(hostOffers, [[0, [TEXT, PNG]], [1, [TEXT]]]);
    assert.deepEqual(await guest.session.request(0, TEXT), bytes("from the host"));
    assert.deepEqual(await guest.session.request(0, PNG), PNG_BYTES);
    assert.deepEqual(await guest.session.request(1, TEXT), bytes("host primary"));
    // Mouse states arrive in order.
    const states = [
      { x: 10, y: 20, buttons: 0, display: 0 },
      { x: 11, y: 21, buttons: 2, display: 0 },
      { x: 640, y: 480, buttons: 0, display: 1 },
    ];
    for (const s of states) host.session.mouse(s);
    await until(() => moves.length === 3, "the mouse states");
    assert.deepEqual(moves, states);
    await host.close();
    await guest.done;
    await host.done;
  }
});

test("createHostPipeline and createGuestPipeline paste 100 MiB both ways, with progress", async () => {
  const big = new Uint8Array(100 * 1024 * 1024);
  for (let i = 0; i < big.length; i += 4096) big[i] = i >>> 12;
  const progress: TransferProgress[] = [];
  const guestProgress: TransferProgress[] = [];
  const maxMessageSize = 128 << 20; // over the default of 64 MiB
  const { host, guest } = backToBack(9, {
    maxMessageSize,
    onProgress: (p) => progress.push(p),
    clipboard: { provide: () => big },
  }, {
    maxMessageSize,
    onProgress: (p) => guestProgress.push(p),
    clipboard: { provide: () => big },
  }, 70_000);
  const hostGrabbed = new Promise<void>((resolve) => {
    const check = () => guest.session.hostOffer(0) ? resolve() : setTimeout(check, 1);
    check();
  });
  guest.session.grab(0, [TEXT]);
  await until(() => host.session.guestOffer(0) !== undefined, "the guest's grab");
  const fromGuest = await host.session.request(0, TEXT, { timeout: 0 });
  assert.equal(fromGuest.length, big.length);
  assert.ok(fromGuest.every((b, i) => b === big[i]));
  host.session.grab(0, [TEXT]);
  await hostGrabbed;
  const fromHost = await guest.session.request(0, TEXT, { timeout: 0 });
  assert.equal(fromHost.length, big.length);
  assert.ok(fromHost.every((b, i) => b === big[i]));
  await host.close();
  await guest.done;
  const total = big.length + 8; // selection prefix and type
  for (
    const [side, events, direction] of [["host", progress, "in"], [
      "guest",
      guestProgress,
      "out",
    ]] as const
  ) {
    const these = events.filter((p) => p.direction === direction);
    assert.ok(these.length > 100, `${side} reported ${direction} progress ${these.length} times`);
    assert.ok(these.every((p) => p.total === total && p.type === 4));
    assert.ok(
      these.every((p, i) => i === 0 || p.done > these[i - 1]!.done),
      `${side} ${direction} progress only grows`,
    );
    assert.equal(these.at(-1)!.done, total);
  }
  assert.equal(progress.filter((p) => p.direction === "out").at(-1)?.done, total);
  assert.equal(guestProgress.filter((p) => p.direction === "in").at(-1)?.done, total);
});

test("createHostPipeline's progress tells the selection of each clipboard transfer, both ways", async () => {
  const big = new Uint8Array(2 * 1024 * 1024).fill(7);
  const progress: TransferProgress[] = [];
  const { host, guest } = backToBack(
    10,
    {
      onProgress: (p) => progress.push(p),
      clipboard: { provide: () => big },
    },
    { clipboard: { provide: () => big } },
    70_000,
  );
  guest.session.grab(Selection.PRIMARY, [TEXT]);
  await until(() => host.session.guestOffer(Selection.PRIMARY) !== undefined, "the guest's grab");
  assert.equal((await host.session.request(Selection.PRIMARY, TEXT)).length, big.length);
  host.session.grab(Selection.CLIPBOARD, [TEXT]);
  await until(() => guest.session.hostOffer(Selection.CLIPBOARD) !== undefined, "the host's grab");
  assert.equal((await guest.session.request(Selection.CLIPBOARD, TEXT)).length, big.length);
  await until(
    () => progress.some((p) => p.direction === "out" && p.done === p.total),
    "the host's last progress",
  );
  await host.close();
  await guest.done;
  const seen = (
    direction: string,
  ) => [...new Set(progress.filter((p) => p.direction === direction).map((p) => p.selection))];
  assert.deepEqual(seen("in"), [Selection.PRIMARY]);
  assert.deepEqual(seen("out"), [Selection.CLIPBOARD]);
});

/** A transport fed from a list of reads, whose written bytes are collected. */
function scripted(reads: Uint8Array[]): Transport & { written: Uint8Array[] } {
  const written: Uint8Array[] = [];
  return {
    written,
    readable: ReadableStream.from(reads),
    writable: new WritableStream({ write: (b) => void written.push(b.slice()) }),
  };
}

test("createHostPipeline ends with the VdagentProtocolError of a framing error, and fails pending requests", async () => {
  const caps = chunk(1, message(6, new Uint8Array([1, 0, 0, 0, 0xe7, 0x8d, 3, 0])));
  const grab = chunk(1, message(7, new Uint8Array([0, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0])));
  const source = new TransformStream<Uint8Array, Uint8Array>();
  const writer = source.writable.getWriter();
  const relay = createHostPipeline({ readable: source.readable, writable: new WritableStream() });
  await writer.write(caps);
  await writer.write(grab);
  await until(() => relay.session.guestOffer(0) !== undefined, "the grab");
  const pending = relay.session.request(0, TEXT);
  await writer.write(new Uint8Array([3, 0, 0, 0, 1, 0, 0, 0]));
  await assert.rejects(
    relay.done,
    (e) => e instanceof VdagentProtocolError && e.code === "UNKNOWN_PORT" && e.offset === 76,
  );
  await assert.rejects(pending, (e) => e instanceof ClipboardError && e.code === "CLOSED");
});

test("createHostPipeline ends with TRUNCATED when the guest stops inside a message", async () => {
  const relay = createHostPipeline(
    scripted([chunk(1, message(4, new Uint8Array(10))).subarray(0, 20)]),
  );
  await assert.rejects(
    relay.done,
    (e) => e instanceof VdagentProtocolError && e.code === "TRUNCATED",
  );
});

test("createHostPipeline resolves done when the guest closes cleanly, after writing what it queued", async () => {
  const transport = scripted([chunk(1, message(6, new Uint8Array([1, 0, 0, 0, 1, 0, 0, 0])))]);
  const relay = createHostPipeline(transport);
  await relay.done;
  // Its announcement and its answer to the guest's request=1.
  assert.deepEqual(transport.written.map((w) => w.length), [36, 36]);
});

test("createHostPipeline passes a transport error on through done", async () => {
  const boom = new Error("socket reset");
  const relay = createHostPipeline({
    readable: new ReadableStream({ pull: (c) => c.error(boom) }),
    writable: new WritableStream(),
  });
  await assert.rejects(relay.done, (e) => e === boom);
  const writeFails = createHostPipeline({
    readable: new ReadableStream(),
    writable: new WritableStream({ write: () => Promise.reject(boom) }),
  });
  await assert.rejects(writeFails.done, (e) => e === boom);
});

test("createHostPipeline tears down on abort without unhandled rejections", async () => {
  const unhandled = await watchUnhandledRejections();
  try {
    const controller = new AbortController();
    let cancelled: unknown;
    let aborted: unknown;
    const relay = createHostPipeline({
      readable: new ReadableStream({ cancel: (r) => void (cancelled = r) }),
      writable: new WritableStream({ abort: (r) => void (aborted = r) }),
    }, { signal: controller.signal });
    const reason = new Error("shutting down");
    controller.abort(reason);
    await assert.rejects(relay.done, (e) => e === reason);
    assert.equal(cancelled, reason);
    assert.equal(aborted, reason);
    // An already aborted signal works too.
    const late = createHostPipeline(scripted([]), { signal: AbortSignal.abort(reason) });
    await assert.rejects(late.done, (e) => e === reason);
    await new Promise((r) => setTimeout(r, 10));
    assert.deepEqual(unhandled.reasons, []);
  } finally {
    unhandled.stop();
  }
});

test("createHostPipeline stops reading the guest while its output is stalled", async () => {
  // The guest asks for a 4 MiB paste again and again; the transport accepts
  // nothing. The relay must stop taking the guest's bytes.
  const caps = chunk(1, message(6, new Uint8Array([1, 0, 0, 0, 0xe7, 0x8d, 3, 0])));
  const ask = chunk(1, message(8, new Uint8Array([0, 0, 0, 0, 1, 0, 0, 0])));
  let pulled = 0;
  const readable = new ReadableStream<Uint8Array>({
    pull(controller) {
      pulled++;
      controller.enqueue(pulled === 1 ? caps : ask);
    },
  }, { highWaterMark: 0 });
  const writable = new WritableStream<Uint8Array>({ write: () => new Promise(() => {}) });
  const controller = new AbortController();
  const relay = createHostPipeline({ readable, writable }, {
    clipboard: { provide: () => new Uint8Array(4 << 20) },
    signal: controller.signal,
  });
  relay.session.grab(0, [TEXT]);
  await new Promise((r) => setTimeout(r, 50));
  const stalledAt = pulled;
  await new Promise((r) => setTimeout(r, 50));
  assert.equal(pulled, stalledAt, "no more reads while stalled");
  assert.ok(stalledAt <= 4, `read ${stalledAt} times before stopping`);
  controller.abort();
  await assert.rejects(relay.done);
});

test("ChunkDeframer, MessageAssembler, HostSession and MessageFramer compose into a relay in one line", async () => {
  const rand = prng(11);
  const toGuest = fragmentingPipe(rand, 50);
  const toHost = fragmentingPipe(rand, 50);
  const transport = { readable: toHost.readable, writable: toGuest.writable };
  let offered = false;
  const session = new HostSession({ clipboard: { onGuestGrab: () => offered = true } });
  const relay = transport.readable.pipeThrough(new ChunkDeframer()).pipeThrough(
    new MessageAssembler(),
  )
    .pipeThrough(session).pipeThrough(new MessageFramer()).pipeTo(transport.writable);
  const guest = createGuestPipeline({ readable: toGuest.readable, writable: toHost.writable }, {
    clipboard: { provide: () => bytes("composed") },
  });
  guest.session.grab(1, [TEXT]);
  await until(() => offered, "the guest's grab");
  assert.deepEqual(await session.request(1, TEXT), bytes("composed"));
  // The guest closes its side; the relay's chain ends and closes the other.
  await guest.close();
  await relay;
});
