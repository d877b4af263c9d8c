// Hand-offs of a live host session between relays, through checkpoints.
import process from "node:process";
import { test } from "node:test";
import assert from "node:assert/strict";
import {
  ClipboardError,
  ClipboardType,
  createGuestPipeline,
  createHostPipeline,
  decodeCheckpoint,
  type GuestPipeline,
  GuestSession,
  type HostPipeline,
  type HostPipelineOptions,
} from "../mod.ts";
import { connectGuest, Link } from "./_link.ts";
import { prng, randBytes, until } from "./_helpers.ts";

const TEXT = ClipboardType.UTF8_TEXT;
const PNG = ClipboardType.IMAGE_PNG;
const text = (s: string) => new TextEncoder().encode(s);
const PNG_BYTES = new Uint8Array([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a, 0, 0, 0, 13]);
const BIG = randBytes(prng(1), 3 * 1024 * 1024); // the guest's 3 MiB paste, in 2048-byte chunks
const HOST_BIG = randBytes(prng(2), 300 * 1024); // the host's 300 KiB paste, written in 64 KiB pieces

/** A short fingerprint of bytes, for transcripts. */
function digest(bytes: Uint8Array): string {
  let h = 0x811c9dc5;
  for (const b of bytes) h = Math.imul(h ^ b, 0x01000193);
  return `${bytes.length} bytes #${(h >>> 0).toString(16)}`;
}

interface Transcript {
  host: string[];
  guest: string[];
  g2h: Uint8Array;
  h2g: Uint8Array;
  /** Where in the guest's byte stream its 3 MiB paste starts and ends. */
  big: [number, number];
  handOffs: number;
}

/**
 * The scripted exchange: text, PNG and PRIMARY both ways, mouse, a guest
 * paste pending on a slow provider, the guest's 3 MiB paste and the host's
 * 300 KiB one. With `handOffAt`, the relay is handed off to a new one each
 * time the relay has read that many of the guest's bytes; with `forced`,
 * also while the slow provider works and while the host's paste is being
 * written.
 */
async function exchange(
  options: { handOffAt?: number[]; forced?: boolean } = {},
): Promise<Transcript> {
  const g2h = new Link();
  const h2g = new Link();
  const transport = { readable: g2h.readable, writable: h2g.writable };
  const host: string[] = [];
  const guestEvents: string[] = [];
  const hostData = new Map<string, Uint8Array>();
  const guestData = new Map<string, Uint8Array>();
  let forceOnProvide = false;
  let slow = false;
  const hostOptions: HostPipelineOptions = {
    maxMessageSize: 8 << 20,
    clipboard: {
      onGuestGrab: (s, t) => void host.push(`guest grab ${s} [${t}]`),
      onGuestRelease: (s) => void host.push(`guest release ${s}`),
      provide(s, t) {
        const data = hostData.get(`${s}/${t}`);
        if (forceOnProvide) {
          forceOnProvide = false;
          setTimeout(() => void handOff(), 0);
        }
        return slow ? new Promise((resolve) => setTimeout(() => resolve(data), 2)) : data;
      },
    },
  };
  let relay: HostPipeline = createHostPipeline(transport, hostOptions);
  const successor = new WeakMap<HostPipeline, HostPipeline>();
  const claimed = new WeakSet<object>();
  let handOffs = 0;
  let lock = Promise.resolve();
  const handOff = () =>
    lock = lock.then(async () => {
      const a = relay;
      const checkpoint = await a.checkpoint();
      await a.done;
      relay = createHostPipeline(transport, {
        ...hostOptions,
        restore: checkpoint,
        resume: "continued",
      });
      successor.set(a, relay);
      handOffs++;
    });
  const points = options.handOffAt ?? [];
  let next = 0;
  g2h.stopAt = points[0];
  g2h.onStop = async () => {
    await handOff();
    g2h.stopAt = points[++next];
  };
  /** Runs a host call on the current relay, once no hand-off is under way. */
  const onHost = async (call: (relay: HostPipeline) => boolean | void): Promise<void> => {
    for (;;) {
      await lock;
      try {
        if (call(relay) !== false) return;
      } catch (error) {
        if (!(error instanceof ClipboardError && error.code === "CLOSED")) throw error;
      }
    }
  };
  /** The host pastes, following its request across hand-offs. */
  const hostPaste = async (selection: number, type: number): Promise<Uint8Array> => {
    await lock;
    let owner = relay;
    let result = owner.session.request(selection, type, { timeout: 0 });
    for (;;) {
      try {
        return await result;
      } catch (error) {
        if (!(error instanceof ClipboardError && error.code === "CLOSED")) throw error;
        await lock;
        const heir = successor.get(owner);
        if (heir === undefined) throw error;
        owner = heir;
        const resumed = heir.session.resumedRequests.find((r) =>
          r.selection === selection && r.type === type && !claimed.has(r)
        );
        if (resumed !== undefined) claimed.add(resumed);
        // A request the old relay refused never left: ask the new one.
        result = resumed?.result ?? heir.session.request(selection, type, { timeout: 0 });
      }
    }
  };

  const guest: GuestPipeline = createGuestPipeline({
    readable: h2g.readable,
    writable: g2h.writable,
  }, {
    maxMessageSize: 8 << 20,
    requestTimeout: 0,
    onMouse: (m) => void guestEvents.push(`mouse ${m.x},${m.y},${m.buttons},${m.display}`),
    clipboard: {
      onHostGrab: (s, t) => void guestEvents.push(`host grab ${s} [${t}]`),
      onHostRelease: (s) => void guestEvents.push(`host release ${s}`),
      provide: (s, t) => guestData.get(`${s}/${t}`),
    },
  });
  const guestPaste = async (selection: number, type: number) =>
    guestEvents.push(`guest pasted ${digest(await guest.session.request(selection, type))}`);

  await until(
    () => relay.session.guestCaps !== undefined && guest.session.hostCaps !== undefined,
    "caps",
  );
  // Guest → host: text, then PRIMARY.
  guestData.set("0/1", text("guest text é ✓"));
  guest.session.grab(0, [TEXT]);
  await until(() => host.includes("guest grab 0 [1]"), "the guest's grab");
  host.push(`host pasted ${digest(await hostPaste(0, TEXT))}`);
  guestData.set("1/1", text("primary"));
  guest.session.grab(1, [TEXT]);
  await until(() => host.includes("guest grab 1 [1]"), "the guest's PRIMARY grab");
  host.push(`host pasted ${digest(await hostPaste(1, TEXT))}`);
  // Host → guest: text and PNG, and PRIMARY.
  hostData.set("0/1", text("host text"));
  hostData.set("0/2", PNG_BYTES);
  await onHost((r) => r.session.grab(0, [TEXT, PNG]));
  await until(() => guestEvents.includes("host grab 0 [1,2]"), "the host's grab");
  await guestPaste(0, PNG);
  await guestPaste(0, TEXT);
  hostData.set("1/1", text("host primary"));
  await onHost((r) => r.session.grab(1, [TEXT]));
  await until(() => guestEvents.includes("host grab 1 [1]"), "the host's PRIMARY grab");
  await guestPaste(1, TEXT);
  // Mouse.
  for (const [x, y, buttons] of [[1, 2, 0], [3, 4, 2], [5, 6, 0]] as const) {
    await onHost((r) => r.session.mouse({ x, y, buttons }));
  }
  await until(
    () => guestEvents.filter((e) => e.startsWith("mouse")).length === 3,
    "the mouse states",
  );
  // A guest paste pending while the host's provider works.
  hostData.set("2/1", text("slow secondary"));
  await onHost((r) => r.session.grab(2, [TEXT]));
  await until(() => guestEvents.includes("host grab 2 [1]"), "the host's SECONDARY grab");
  slow = true;
  forceOnProvide = options.forced ?? false;
  await guestPaste(2, TEXT);
  slow = false;
  // The guest's 3 MiB paste, multi-chunk.
  guestData.set("0/1", BIG);
  guest.session.grab(0, [TEXT]);
  await until(
    () => host.filter((e) => e === "guest grab 0 [1]").length === 2,
    "the guest's second grab",
  );
  const bigStart = g2h.written;
  host.push(`host pasted ${digest(await hostPaste(0, TEXT))}`);
  const bigEnd = g2h.written;
  // The host's 300 KiB paste, handed off while it is being written.
  hostData.set("0/1", HOST_BIG);
  await onHost((r) => r.session.grab(0, [TEXT]));
  await until(
    () => guestEvents.filter((e) => e === "host grab 0 [1]").length === 1,
    "the host's second grab",
  );
  h2g.slowWrites = true;
  forceOnProvide = options.forced ?? false;
  await guestPaste(0, TEXT);
  h2g.slowWrites = false;

  await lock;
  await guest.close();
  await relay.done;
  return {
    host,
    guest: guestEvents,
    g2h: g2h.bytes(),
    h2g: h2g.bytes(),
    big: [bigStart, bigEnd],
    handOffs,
  };
}

test("StateCheckpoint hands a live session off at every chunk and message header byte, and at a seeded sample of offsets, with nothing lost or doubled", async () => {
  const reference = await exchange();
  assert.ok(reference.host.includes(`host pasted ${digest(BIG)}`));
  assert.equal(reference.guest.at(-1), `guest pasted ${digest(HOST_BIG)}`);
  const seed = Number(process.env.VDAGENT_HAND_OFF_SEED ?? Date.now() % 0x7fff_ffff);
  // deno-lint-ignore no-console
  console.log(`hand-off offsets: seed ${seed} (VDAGENT_HAND_OFF_SEED=${seed} repeats it)`);
  const points = handOffPoints(reference.g2h, reference.big, prng(seed));
  const run = await exchange({ handOffAt: points, forced: true });
  assert.equal(run.handOffs, points.length + 2, "every planned and forced hand-off happened");
  assert.deepEqual(run.host, reference.host);
  assert.deepEqual(run.guest, reference.guest);
  assert.ok(sameBytes(run.g2h, reference.g2h), "the guest's byte stream is the same");
  assert.ok(sameBytes(run.h2g, reference.h2g), "the host's byte stream is the same");
});

/**
 * Where the every-offset hand-off test hands off in the guest's byte stream:
 * at every byte of every message's chunk and message headers and one byte
 * either side (so each header is cut at every byte, and every message
 * boundary is hit); at every byte of the chunk headers of the 3 MiB paste's
 * first three and last two continuation chunks, and of 16 others drawn from
 * `random`; and at 48 offsets drawn from `random` anywhere in the stream.
 */
function handOffPoints(wire: Uint8Array, big: [number, number], random: () => number): number[] {
  const view = new DataView(wire.buffer, wire.byteOffset);
  const points = new Set<number>();
  const cut = (from: number, to: number) => {
    for (let at = from; at <= to; at++) if (at >= 1 && at < wire.length) points.add(at);
  };
  const continuations: number[] = [];
  let remaining = 0;
  for (let at = 0; at + 8 <= wire.length;) {
    const size = view.getUint32(at + 4, true);
    if (remaining === 0) {
      cut(at - 1, at + 8 + 20 + 1); // the chunk header, the message header, a byte of payload
      remaining = 20 + view.getUint32(at + 8 + 16, true);
    } else {
      continuations.push(at);
    }
    remaining -= size;
    at += 8 + size;
    if (remaining === 0) cut(at - 1, at);
  }
  const inBig = continuations.filter((at) => at > big[0] && at < big[1]);
  assert.ok(inBig.length > 1000, `${inBig.length} continuation chunks in the 3 MiB paste`);
  const chosen = [...inBig.slice(0, 3), ...inBig.slice(-2)];
  for (let i = 0; i < 16; i++) chosen.push(inBig[Math.floor(random() * inBig.length)]!);
  for (const at of chosen) cut(at - 1, at + 8 + 1);
  for (let i = 0; i < 48; i++) {
    const at = 1 + Math.floor(random() * (wire.length - 1));
    cut(at, at);
  }
  return [...points].sort((a, b) => a - b);
}

function sameBytes(a: Uint8Array, b: Uint8Array): boolean {
  return a.length === b.length && a.every((x, i) => x === b[i]);
}

/** Message boundaries of a guest byte stream (chunk headers included). */
function boundaries(wire: Uint8Array): number[] {
  const view = new DataView(wire.buffer, wire.byteOffset);
  const out: number[] = [];
  for (let at = 0; at < wire.length;) {
    at += 8 + view.getUint32(at + 4, true); // the Linux agent and GuestSession send small messages in one chunk
    out.push(at);
  }
  return out;
}

/** A host and a guest over two links; the host can be replaced. */
function rig(hostOptions: HostPipelineOptions = {}) {
  const g2h = new Link();
  const h2g = new Link();
  const transport = { readable: g2h.readable, writable: h2g.writable };
  const events: string[] = [];
  const guest = createGuestPipeline({ readable: h2g.readable, writable: g2h.writable }, {
    requestTimeout: 0,
    onHostCaps: (_, request) => void events.push(`caps request=${request}`),
    clipboard: {
      onHostGrab: (s, t) => void events.push(`host grab ${s} [${t}]`),
      provide: (s) => text(`guest ${s}`),
    },
  });
  const relay = createHostPipeline(transport, {
    ...hostOptions,
    clipboard: {
      provide: (s) => text(`host ${s}`),
      onGuestGrab: (s) => void events.push(`guest grab ${s}`),
    },
  });
  return { g2h, h2g, transport, events, guest, relay };
}

/** After a hand-off, the clipboard works both ways on `selection`. */
async function bothWays(
  relay: HostPipeline,
  guest: GuestPipeline,
  events: string[],
  selection: number,
) {
  const before = events.length;
  guest.session.grab(selection, [TEXT]);
  await until(() => events.slice(before).includes(`guest grab ${selection}`), "the guest's grab");
  assert.equal(
    new TextDecoder().decode(await relay.session.request(selection, TEXT, { timeout: 0 })),
    `guest ${selection}`,
  );
  relay.session.grab(selection, [TEXT]);
  await until(
    () => events.slice(before).includes(`host grab ${selection} [1]`),
    "the host's grab",
  );
  assert.equal(
    new TextDecoder().decode(await guest.session.request(selection, TEXT)),
    `host ${selection}`,
  );
}

test("StateCheckpoint in minimal mode hands off at every message boundary, and the clipboard keeps working", async () => {
  // The guest copies on every selection; a hand-off lands at each boundary
  // of its byte stream. Minimal checkpoints carry the serials and ownership.
  const prelude = [0, 1, 0, 2, 1];
  const reference = rig();
  await until(() => reference.relay.session.guestCaps !== undefined, "caps");
  reference.relay.session.grab(0, [TEXT]);
  for (const s of prelude) reference.guest.session.grab(s, [TEXT]);
  await until(() => reference.relay.session.guestOffer(1)?.serial === 1, "the last grab");
  const points = boundaries(reference.g2h.bytes());
  await reference.guest.close();
  assert.equal(points.length, 2 + prelude.length, "caps, caps, and a grab per copy");
  for (const point of points) {
    const r = rig();
    let relay = r.relay;
    let size = 0;
    r.g2h.stopAt = point;
    r.g2h.onStop = async () => {
      const checkpoint = await relay.checkpoint({ mode: "minimal" });
      size = checkpoint.length;
      await relay.done;
      relay = createHostPipeline(r.transport, {
        restore: checkpoint,
        resume: "continued",
        clipboard: {
          provide: (s) => text(`host ${s}`),
          onGuestGrab: (s) => void r.events.push(`guest grab ${s}`),
        },
      });
      r.g2h.stopAt = undefined;
    };
    await until(() => relay.session.guestCaps !== undefined, "caps");
    relay.session.grab(0, [TEXT]);
    for (const s of prelude) r.guest.session.grab(s, [TEXT]);
    const end = points.at(-1)!;
    await until(
      () => r.g2h.stopAt === undefined && r.g2h.read >= end,
      `the hand-off at ${point}`,
    );
    assert.ok(size > 0 && size <= 64, `a minimal checkpoint of ${size} bytes`);
    for (const s of [0, 1, 2]) await bothWays(relay, r.guest, r.events, s);
    assert.equal(
      r.events.filter((e) => e === "caps request=true").length,
      1,
      `one client only, point ${point}`,
    );
    await r.guest.close();
    await relay.done;
  }
});

test("createHostPipeline with resume: reconnected announces request=1, re-grabs, and forgets the guest's offers", async () => {
  // The guest session outlives two connections, as the Linux agent does when
  // its port closes and reopens.
  const events: string[] = [];
  const guest = new GuestSession({
    requestTimeout: 0,
    onHostCaps: (_, request) => void events.push(`caps request=${request}`),
    onDiagnostic: (d) => void events.push(`guest ${d.code}`),
    clipboard: {
      onHostGrab: (s, t) => void events.push(`host grab ${s} [${t}]`),
      provide: (s) => text(`guest ${s}`),
    },
  });
  const hostOptions = {
    clipboard: {
      provide: (s: number) => text(`host ${s}`),
      onGuestGrab: (s: number) => void events.push(`guest grab ${s}`),
    },
  };
  const connect = (options: HostPipelineOptions = {}) =>
    connectGuest(guest, { ...hostOptions, ...options });
  const first = connect({});
  await until(() => first.relay.session.guestCaps !== undefined, "caps");
  guest.grab(1, [TEXT]);
  first.relay.session.grab(0, [TEXT]);
  await until(
    () => events.includes("guest grab 1") && events.includes("host grab 0 [1]"),
    "both grabs",
  );
  for (let i = 0; i < 3; i++) guest.grab(2, [TEXT]);
  await until(() => first.relay.session.guestOffer(2)?.serial === 2, "the guest's third grab");
  const checkpoint = await first.relay.checkpoint();
  // The guest copies again; the grab goes out on the old port, which nobody reads any more, and
  // is lost when the port closes. The guest's serial for PRIMARY moved on all the same.
  const written = first.g2h.written;
  guest.grab(1, [TEXT]);
  await until(() => first.g2h.written > written, "the lost grab");
  assert.deepEqual(guest.serials, [1, 2, 3]);
  // The port closes and reopens; the guest hears that the client went away.
  await first.port.handOff(false, () => {});
  const mark = events.length;
  const second = connect({ restore: checkpoint, resume: "reconnected" });
  guest.clientDisconnected();
  // B announces itself with request=1: the guest answers, starts its serials again, and B
  // grabs what the host owned again, with serial 0.
  await until(
    () => events.slice(mark).includes("host grab 0 [1]"),
    "the host's grab, sent again",
  );
  assert.deepEqual(events.slice(mark), ["caps request=true", "host grab 0 [1]"]);
  assert.equal(second.relay.session.guestOffer(1), undefined, "the guest's offer is gone");
  assert.deepEqual(guest.serials, [1, 0, 0], "serials restarted at B's announcement");
  assert.equal(new TextDecoder().decode(await guest.request(0, TEXT)), "host 0");
  // B's grab of the selection whose grab was lost is accepted, and the guest's next grab
  // reaches B with serial 0.
  second.relay.session.grab(1, [TEXT]);
  await until(() => events.slice(mark).includes("host grab 1 [1]"), "B's PRIMARY grab");
  guest.grab(2, [TEXT]);
  await until(
    () => second.relay.session.guestOffer(2)?.serial === 0,
    "the guest's next grab, serial 0",
  );
  assert.equal(new TextDecoder().decode(await second.relay.session.request(2, TEXT)), "guest 2");
  assert.equal(events.filter((e) => e.startsWith("guest GRAB_DISCARDED")).length, 0);
  await second.relay.close().catch(() => {});
  await second.port.done.catch(() => {});
});

test("createHostPipeline hands a guest paste pending in the checkpoint to the new provider, or releases it", async () => {
  for (const has of [true, false]) {
    let answerA!: (data: Uint8Array | undefined) => void;
    let asked = false;
    const g2h = new Link();
    const h2g = new Link();
    const transport = { readable: g2h.readable, writable: h2g.writable };
    const guest = createGuestPipeline({ readable: h2g.readable, writable: g2h.writable }, {
      requestTimeout: 0,
    });
    const a = createHostPipeline(transport, {
      clipboard: {
        provide: () => {
          asked = true;
          return new Promise((resolve) => answerA = resolve);
        },
      },
    });
    await until(
      () => a.session.guestCaps !== undefined && guest.session.hostCaps !== undefined,
      "caps",
    );
    a.session.grab(0, [TEXT]);
    await until(() => guest.session.hostOffer(0) !== undefined, "the host's grab");
    const paste = guest.session.request(0, TEXT);
    await until(() => asked, "the paste to reach the provider");
    const checkpoint = await a.checkpoint();
    assert.deepEqual(decodeCheckpoint(checkpoint).selections[0].guestRequests, [TEXT]);
    const written = h2g.written;
    answerA(text("too late: A was handed off"));
    await new Promise((r) => setTimeout(r, 5));
    assert.equal(h2g.written, written, "after checkpoint() the old relay sends nothing");
    const b = createHostPipeline(transport, {
      restore: checkpoint,
      resume: "continued",
      clipboard: { provide: () => has ? text("from B") : undefined },
    });
    if (has) {
      assert.equal(new TextDecoder().decode(await paste), "from B");
    } else {
      await assert.rejects(paste, (e) => e instanceof ClipboardError && e.code === "RELEASED");
    }
    await guest.close();
    await b.done;
  }
});
