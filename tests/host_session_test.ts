import { test } from "node:test";
import assert from "node:assert/strict";
import {
  ChunkDeframer,
  ClipboardError,
  ClipboardType,
  GuestSession,
  HostSession,
  MessageAssembler,
  MessageFramer,
  type SessionDiagnostic,
} from "../mod.ts";
import { BOTH, drive, LINUX_CAPS, restoreProbing, settle, WINDOWS_CAPS } from "./_session.ts";
import { collect, cut, fixture, fixtureJson, u32s, until } from "./_helpers.ts";

const TEXT = ClipboardType.UTF8_TEXT;
const PNG = ClipboardType.IMAGE_PNG;
const bytes = (s: string) => new TextEncoder().encode(s);

/** A host that has negotiated with a Linux-like guest; its output so far is discarded. */
function negotiated(options: ConstructorParameters<typeof HostSession>[0] = {}, caps = LINUX_CAPS) {
  const host = new HostSession(options);
  const d = drive(host);
  d.send({}, { kind: "announce_capabilities", request: true, caps });
  d.take();
  return { host, d };
}

test("HostSession announces its caps with request=1 according to its options", () => {
  const cases: [ConstructorParameters<typeof HostSession>[0], number][] = [
    [{}, 0x00020061],
    [{ clipboard: false }, 0x1],
    [{ mouse: false }, 0x00020060],
    [{ mouse: false, clipboard: false }, 0],
    [{ maxClipboard: 1000 }, 0x00020461],
  ];
  for (const [options, word] of cases) {
    const d = drive(new HostSession(options));
    assert.deepEqual(d.take({}), [{ kind: "announce_capabilities", request: true, caps: [word] }]);
  }
});

test("HostSession answers the guest's request=1 with request=0, and request=0 with nothing", () => {
  const host = new HostSession();
  const d = drive(host);
  d.take();
  d.send({}, { kind: "announce_capabilities", request: true, caps: [...LINUX_CAPS, 0x5] });
  assert.deepEqual(d.take({}), [{
    kind: "announce_capabilities",
    request: false,
    caps: [0x00020061],
  }]);
  assert.deepEqual(host.guestCaps, [0x00038de7, 0x5], "all words are kept");
  assert.deepEqual(host.layout, { selection: true, grabSerial: true });
  d.send({}, { kind: "announce_capabilities", request: false, caps: LINUX_CAPS });
  assert.deepEqual(d.take({}), []);
});

test("HostSession answers a guest's second request=1 with request=1, so the guest zeroes its serials too", () => {
  const { d } = negotiated();
  d.send({}, { kind: "announce_capabilities", request: true, caps: LINUX_CAPS });
  assert.deepEqual(d.take({}), [{
    kind: "announce_capabilities",
    request: true,
    caps: [0x00020061],
  }]);
  // The guest's answer to that is not answered.
  d.send({}, { kind: "announce_capabilities", request: false, caps: LINUX_CAPS });
  assert.deepEqual(d.take({}), []);
});

test("HostSession treats guest caps as a restart: serials zeroed, offers and requests dropped, handlers told", async () => {
  const events: string[] = [];
  const { host, d } = negotiated({
    clipboard: {
      onGuestGrab: (s) => events.push(`grab ${s}`),
      onGuestRelease: (s) => events.push(`release ${s}`),
    },
    onGuestCaps: (caps) => events.push(`caps ${caps}`),
  });
  d.send(BOTH, { kind: "clipboard_grab", selection: 1, serial: 7, types: [TEXT] });
  const pending = host.request(1, TEXT);
  d.take();
  d.send({}, { kind: "announce_capabilities", request: true, caps: LINUX_CAPS });
  await assert.rejects(pending, (e) => e instanceof ClipboardError && e.code === "PEER_RESET");
  assert.equal(host.guestOffer(1), undefined);
  assert.deepEqual(events, [`caps ${0x38de7}`, "grab 1", "release 1", `caps ${0x38de7}`]);
  // last_serial is back to 0: a guest grab with serial 0 is accepted again.
  d.send(BOTH, { kind: "clipboard_grab", selection: 1, serial: 0, types: [TEXT] });
  assert.deepEqual(host.guestOffer(1), { serial: 0, types: [TEXT] });
});

test("HostSession keeps a grab with a serial at or after last_serial and discards an older one", () => {
  const diagnostics: SessionDiagnostic[] = [];
  const offers: number[][] = [];
  const { host, d } = negotiated({
    clipboard: { onGuestGrab: (_, types) => offers.push([...types]) },
    onDiagnostic: (x) => diagnostics.push(x),
  });
  // [serial sent by the guest, accepted?]
  const table: [number, boolean][] = [[0, true], [0, true], [5, true], [4, false], [5, true], [
    6,
    true,
  ], [1, false]];
  for (const [i, [serial, accepted]] of table.entries()) {
    d.send(BOTH, { kind: "clipboard_grab", selection: 0, serial, types: [i + 1] });
    assert.equal(
      host.guestOffer(0)?.serial === serial && offers.at(-1)?.[0] === i + 1,
      accepted,
      `row ${i}`,
    );
  }
  assert.deepEqual(diagnostics.map((x) => x.code), ["GRAB_DISCARDED", "GRAB_DISCARDED"]);
  assert.equal(d.take().length, 0, "a discarded grab is not answered");
});

test("HostSession compares serials across the 2^32 wrap", () => {
  const { host, d } = negotiated();
  const table: [number, boolean][] = [
    [0xffff_fffe, false], // two steps before 0
    [0x7fff_ffff, true], // just under half the circle ahead
    [0xffff_fffe, true],
    [0xffff_ffff, true],
    [0, true], // after 0xFFFFFFFF comes 0, where QEMU's plain comparison would discard it
    [1, true],
    [0xffff_ffff, false], // now two steps back
    [0x8000_0000, true],
  ];
  for (const [i, [serial, accepted]] of table.entries()) {
    const before = host.guestOffer(0)?.serial;
    d.send(BOTH, { kind: "clipboard_grab", selection: 0, serial, types: [TEXT] });
    assert.equal(host.guestOffer(0)?.serial, accepted ? serial : before, `row ${i}`);
  }
});

test("HostSession grabs with the serial of the guest's last grab and keeps it", () => {
  const { host, d } = negotiated();
  d.send(BOTH, { kind: "clipboard_grab", selection: 0, serial: 3, types: [TEXT] });
  host.grab(0, [TEXT]);
  host.grab(0, [TEXT, PNG]);
  host.grab(1, [TEXT]);
  assert.deepEqual(d.take(), [
    // 3 is the guest's expected serial − 1: the Linux agent accepts it ("client wins"), again
    // and again, and 0 is its expected serial on PRIMARY.
    { kind: "clipboard_grab", selection: 0, serial: 3, types: [TEXT] },
    { kind: "clipboard_grab", selection: 0, serial: 3, types: [TEXT, PNG] },
    { kind: "clipboard_grab", selection: 1, serial: 0, types: [TEXT] },
  ]);
  assert.equal(host.guestOffer(0), undefined, "the host took the selection over");
  host.release(0);
  host.release(2); // not owned: nothing
  assert.deepEqual(d.take(), [{ kind: "clipboard_release", selection: 0 }]);
  assert.equal(host.hostOffer(0), undefined);
});

test("HostSession grabs are accepted by the guest's rule whichever of them were lost on the way", () => {
  // Grabs written to a VM that had stopped for its migration never reach the guest. With QEMU's
  // rule (send last_serial, then increment it) the host runs ahead of the guest and every later
  // grab is discarded; the host's own rule keeps every grab acceptable.
  for (let lost = 0; lost < 16; lost++) {
    const discarded: string[] = [];
    const guestGrabs: number[] = [];
    const guest = new GuestSession({
      onDiagnostic: (x) => void discarded.push(x.code),
      clipboard: { onHostGrab: (s) => void guestGrabs.push(s) },
    });
    const g = drive(guest);
    const { host, d } = negotiated();
    g.send(BOTH, { kind: "announce_capabilities", request: false, caps: host.hostCaps });
    g.take(); // the guest's own announcement
    // The guest copies once, then the host copies four times; bit i of `lost` drops grab i.
    guest.grab(0, [TEXT]);
    d.send(BOTH, ...g.take());
    for (let i = 0; i < 4; i++) {
      host.grab(0, [TEXT]);
      const [grab] = d.take();
      if ((lost & (1 << i)) === 0) g.send(BOTH, grab!);
    }
    host.grab(0, [TEXT]);
    g.send(BOTH, d.take()[0]!);
    assert.deepEqual(discarded, [], `lost ${lost.toString(2)}`);
    assert.equal(guestGrabs.length, 5 - popcount(lost), `lost ${lost.toString(2)}`);
    assert.deepEqual(guest.hostOffer(0)?.types, [TEXT]);
  }
});

function popcount(x: number): number {
  let n = 0;
  for (; x; x &= x - 1) n++;
  return n;
}

test("HostSession ignores clipboard messages for selection 3 and up with a diagnostic", () => {
  const diagnostics: SessionDiagnostic[] = [];
  const grabs: number[] = [];
  const { d } = negotiated({
    clipboard: { onGuestGrab: (s) => grabs.push(s) },
    onDiagnostic: (x) => diagnostics.push(x),
  });
  d.send(BOTH, { kind: "clipboard_grab", selection: 3, serial: 0, types: [TEXT] });
  d.send(BOTH, { kind: "clipboard_request", selection: 200, type: TEXT });
  assert.deepEqual(grabs, []);
  assert.deepEqual(diagnostics.map((x) => [x.code, x.selection]), [["BAD_SELECTION", 3], [
    "BAD_SELECTION",
    200,
  ]]);
  assert.deepEqual(d.take(), []);
});

test("HostSession resolves a request with the guest's data", async () => {
  const { host, d } = negotiated();
  d.send(BOTH, { kind: "clipboard_grab", selection: 1, serial: 0, types: [TEXT, PNG] });
  const text = host.request(1, TEXT);
  const png = host.request(1, PNG);
  assert.deepEqual(d.take(), [
    { kind: "clipboard_request", selection: 1, type: TEXT },
    { kind: "clipboard_request", selection: 1, type: PNG },
  ]);
  // Answers arrive out of order; each settles the request of its type.
  d.send(BOTH, { kind: "clipboard", selection: 1, type: PNG, data: bytes("png") });
  d.send(BOTH, { kind: "clipboard", selection: 1, type: TEXT, data: bytes("text") });
  assert.deepEqual(await text, bytes("text"));
  assert.deepEqual(await png, bytes("png"));
});

test("HostSession lays out a repeated request as the guest's latest caps say", async () => {
  const { host, d } = negotiated({ requestTimeout: 0 });
  const paste = () => {
    const request = host.request(0, TEXT);
    request.catch(() => {}); // the re-announcement below fails the first two
    return d.raw().map((m) => m.data);
  };
  d.send(BOTH, { kind: "clipboard_grab", selection: 0, serial: 0, types: [TEXT] });
  assert.deepEqual([...paste(), ...paste()], [u32s(0, TEXT), u32s(0, TEXT)]);
  d.send({}, { kind: "announce_capabilities", request: false, caps: WINDOWS_CAPS });
  d.send({}, { kind: "clipboard_grab", selection: 0, types: [TEXT] });
  d.raw();
  assert.deepEqual(paste(), [u32s(TEXT)], "no selection prefix once the guest lacks it");
  await settle();
});

test("HostSession rejects a request on release, NONE, timeout, abort and close, and one the guest does not offer", async () => {
  const { host, d } = negotiated({ requestTimeout: 20 });
  const code = (c: string) => (e: unknown) => e instanceof ClipboardError && e.code === c;
  await assert.rejects(host.request(0, TEXT), code("NOT_OFFERED"));
  d.send(BOTH, { kind: "clipboard_grab", selection: 0, serial: 0, types: [TEXT] });
  await assert.rejects(host.request(0, PNG), code("NOT_OFFERED"));
  assert.deepEqual(d.take(), [], "a request the guest cannot answer is not sent");
  const released = host.request(0, TEXT, { timeout: 0 });
  d.send(BOTH, { kind: "clipboard_release", selection: 0 });
  await assert.rejects(released, code("RELEASED"));
  d.send(BOTH, { kind: "clipboard_grab", selection: 0, serial: 1, types: [TEXT] });
  const none = host.request(0, TEXT);
  d.send(BOTH, {
    kind: "clipboard",
    selection: 0,
    type: ClipboardType.NONE,
    data: new Uint8Array(0),
  });
  await assert.rejects(none, code("NO_DATA"));
  await assert.rejects(host.request(0, TEXT), code("TIMEOUT"));
  const controller = new AbortController();
  const aborted = host.request(0, TEXT, { signal: controller.signal });
  controller.abort();
  await assert.rejects(aborted, code("ABORTED"));
  const closing = host.request(0, TEXT, { timeout: 0 });
  d.close();
  await assert.rejects(closing, code("CLOSED"));
  await assert.rejects(host.request(0, TEXT), code("CLOSED"));
});

test("HostSession bounds the requests outstanding on a selection", async () => {
  const { host, d } = negotiated({ maxRequests: 2 });
  d.send(BOTH, { kind: "clipboard_grab", selection: 0, serial: 0, types: [TEXT] });
  const a = host.request(0, TEXT, { timeout: 0 });
  const b = host.request(0, TEXT, { timeout: 0 });
  await assert.rejects(
    host.request(0, TEXT),
    (e) => e instanceof ClipboardError && e.code === "TOO_MANY_REQUESTS",
  );
  d.close();
  await assert.rejects(a);
  await assert.rejects(b);
});

test("HostSession sends nothing for a refused request: the 17th over maxRequests, an aborted signal", async () => {
  const code = (c: string) => (e: unknown) => e instanceof ClipboardError && e.code === c;
  const diagnostics: string[] = [];
  const { host, d } = negotiated({
    onDiagnostic: (diagnostic) => diagnostics.push(diagnostic.code),
  });
  d.send(BOTH, { kind: "clipboard_grab", selection: 0, serial: 0, types: [TEXT] });
  const accepted = Array.from({ length: 16 }, () => host.request(0, TEXT, { timeout: 0 }));
  assert.equal(d.raw().length, 16, "16 CLIPBOARD_REQUESTs");
  await assert.rejects(host.request(0, TEXT), code("TOO_MANY_REQUESTS"));
  assert.deepEqual(d.raw(), [], "the 17th is not written");
  // The guest answers the first: it was asked, so nothing is unsolicited.
  d.send(BOTH, { kind: "clipboard", selection: 0, type: TEXT, data: bytes("one") });
  assert.equal(new TextDecoder().decode(await accepted[0]!), "one");
  const aborted = AbortSignal.abort();
  await assert.rejects(host.request(0, TEXT, { signal: aborted }), code("ABORTED"));
  assert.deepEqual(d.raw(), [], "an aborted request is not written");
  assert.deepEqual(diagnostics, [], "no answer came unasked");
  d.close();
  await Promise.allSettled(accepted);
});

test("HostSession restored while probing never sends a request it refused", async () => {
  const code = (c: string) => (e: unknown) => e instanceof ClipboardError && e.code === c;
  const host = new HostSession({ maxRequests: 1 });
  const d = drive(host);
  restoreProbing(host, [0], [TEXT]);
  assert.deepEqual(d.take(), [{ kind: "clipboard_request", selection: 2, type: 0 }]);
  await assert.rejects(host.request(0, TEXT, { signal: AbortSignal.abort() }), code("ABORTED"));
  const first = host.request(0, TEXT, { timeout: 0 });
  await assert.rejects(host.request(0, TEXT), code("TOO_MANY_REQUESTS"));
  d.send(BOTH, { kind: "clipboard", selection: 2, type: 0, data: new Uint8Array(0) });
  assert.deepEqual(d.take(), [{ kind: "clipboard_request", selection: 0, type: TEXT }]);
  d.close();
  await assert.rejects(first);
});

test("HostSession answers a guest paste with the provider's data, also from a slow provider", async () => {
  let slow!: (data: Uint8Array | undefined) => void;
  const { host, d } = negotiated({
    clipboard: {
      provide: (selection, type) =>
        selection === 0
          ? bytes(`data ${type}`)
          : new Promise<Uint8Array | undefined>((resolve) => slow = resolve),
    },
  });
  host.grab(0, [TEXT, PNG]);
  host.grab(1, [TEXT]);
  d.take();
  d.send(BOTH, { kind: "clipboard_request", selection: 0, type: PNG });
  assert.deepEqual(d.take(), [{
    kind: "clipboard",
    selection: 0,
    type: PNG,
    data: bytes("data 2"),
  }]);
  d.send(BOTH, { kind: "clipboard_request", selection: 1, type: TEXT });
  assert.deepEqual(d.take(), [], "the request is pending while the provider works");
  slow(bytes("late"));
  await settle();
  assert.deepEqual(d.take(), [{
    kind: "clipboard",
    selection: 1,
    type: TEXT,
    data: bytes("late"),
  }]);
});

test("HostSession answers a paste it cannot serve with CLIPBOARD_RELEASE, never leaving it pending", async () => {
  const diagnostics: string[] = [];
  const { host, d } = negotiated({
    clipboard: {
      provide: (selection) => {
        if (selection === 2) throw new Error("boom");
        return selection === 1 ? Promise.resolve(new Uint8Array(0)) : undefined;
      },
    },
    onDiagnostic: (x) => diagnostics.push(x.code),
  });
  const release = (selection: number) => [{ kind: "clipboard_release", selection }];
  // Not owned by the host.
  d.send(BOTH, { kind: "clipboard_request", selection: 0, type: TEXT });
  assert.deepEqual(d.take(), release(0));
  // Owned, but the type was not offered.
  host.grab(0, [PNG]);
  d.take();
  d.send(BOTH, { kind: "clipboard_request", selection: 0, type: TEXT });
  assert.deepEqual(d.take(), release(0));
  assert.equal(host.hostOffer(0), undefined, "after the release the host no longer owns it");
  // The provider has nothing.
  host.grab(0, [TEXT]);
  d.take();
  d.send(BOTH, { kind: "clipboard_request", selection: 0, type: TEXT });
  assert.deepEqual(d.take(), release(0));
  // Empty data counts as nothing.
  host.grab(1, [TEXT]);
  d.take();
  d.send(BOTH, { kind: "clipboard_request", selection: 1, type: TEXT });
  await settle();
  assert.deepEqual(d.take(), release(1));
  // The provider throws.
  host.grab(2, [TEXT]);
  d.take();
  d.send(BOTH, { kind: "clipboard_request", selection: 2, type: TEXT });
  assert.deepEqual(d.take(), release(2));
  assert.deepEqual(diagnostics, ["PROVIDER_FAILED"]);
});

test("HostSession tells the handler about a guest release, and accepts the Linux agent's 1-byte release", () => {
  const events: string[] = [];
  const { d } = negotiated({
    clipboard: {
      onGuestGrab: (s) => events.push(`grab ${s}`),
      onGuestRelease: (s) => events.push(`release ${s}`),
    },
    onDiagnostic: (x) => events.push(x.code),
  });
  d.send(BOTH, { kind: "clipboard_grab", selection: 0, serial: 0, types: [TEXT] });
  d.send(BOTH, { kind: "clipboard_grab", selection: 1, serial: 0, types: [TEXT] });
  d.send(BOTH, { kind: "clipboard_release", selection: 0 });
  d.sendRaw({ port: 1, type: 9, opaque: 0n, data: new Uint8Array([1]) });
  assert.deepEqual(events, ["grab 0", "grab 1", "release 0", "LEGACY_RELEASE", "release 1"]);
});

test("HostSession sends mouse states only once the guest announced MOUSE_STATE, keeping the latest", () => {
  const host = new HostSession();
  const d = drive(host);
  d.take();
  host.mouse({ x: 1, y: 1 });
  host.mouse({ x: 10, y: 20, buttons: ["left", "right"], display: 1 });
  assert.deepEqual(d.take(), []);
  d.send({}, { kind: "announce_capabilities", request: false, caps: [0x2] }); // no MOUSE_STATE
  host.mouse({ x: 11, y: 21 });
  assert.deepEqual(d.take(), []);
  d.send({}, { kind: "announce_capabilities", request: false, caps: LINUX_CAPS });
  assert.deepEqual(d.take(), [{ kind: "mouse_state", x: 11, y: 21, buttons: 0, display: 0 }]);
  host.mouse({ x: 5, y: 6, buttons: 2 | 16 });
  assert.deepEqual(d.take(), [{ kind: "mouse_state", x: 5, y: 6, buttons: 18, display: 0 }]);
  assert.throws(() => host.mouse({ x: -1, y: 0 }), RangeError);
  assert.throws(() => host.mouse({ x: 0, y: 0, buttons: ["thumb" as "left"] }), RangeError);
  assert.throws(() => new HostSession({ mouse: false }).mouse({ x: 0, y: 0 }), TypeError);
});

test("HostSession sends MAX_CLIPBOARD when the guest has the cap and refuses larger data", async () => {
  const diagnostics: string[] = [];
  const { host, d } = negotiated(
    { maxClipboard: 4, onDiagnostic: (x) => diagnostics.push(x.code) },
    [0],
  );
  assert.deepEqual(d.take(), [], "a guest without MAX_CLIPBOARD is not sent one");
  // The guest restarts, now with MAX_CLIPBOARD; its answer to ours does not repeat the limit.
  d.send({}, { kind: "announce_capabilities", request: true, caps: LINUX_CAPS });
  assert.deepEqual(d.take().filter((p) => p.kind === "max_clipboard"), [{
    kind: "max_clipboard",
    max: 4,
  }]);
  d.send({}, { kind: "announce_capabilities", request: false, caps: LINUX_CAPS });
  assert.deepEqual(d.take(), []);
  d.send(BOTH, { kind: "clipboard_grab", selection: 0, serial: 0, types: [TEXT] });
  const big = host.request(0, TEXT);
  d.send(BOTH, { kind: "clipboard", selection: 0, type: TEXT, data: bytes("12345") });
  await assert.rejects(big, (e) => e instanceof ClipboardError && e.code === "TOO_LARGE");
  const fits = host.request(0, TEXT);
  d.send(BOTH, { kind: "clipboard", selection: 0, type: TEXT, data: bytes("1234") });
  assert.deepEqual(await fits, bytes("1234"));
  assert.deepEqual(diagnostics, ["TOO_LARGE"]);
});

test("HostSession refuses to send data over the guest's MAX_CLIPBOARD with a typed error, and releases", () => {
  const diagnostics: SessionDiagnostic[] = [];
  const { host, d } = negotiated({
    clipboard: { provide: () => bytes("too long") },
    onDiagnostic: (x) => diagnostics.push(x),
  });
  d.send({}, { kind: "max_clipboard", max: 3 });
  host.grab(0, [TEXT]);
  d.take();
  d.send(BOTH, { kind: "clipboard_request", selection: 0, type: TEXT });
  assert.deepEqual(d.take(), [{ kind: "clipboard_release", selection: 0 }]);
  assert.equal(diagnostics[0]?.code, "TOO_LARGE");
  assert.ok(
    diagnostics[0]?.error instanceof ClipboardError && diagnostics[0].error.code === "TOO_LARGE",
  );
});

test("HostSession hands every other message to onMessage as a typed object", () => {
  const kinds: string[] = [];
  const { d } = negotiated({ onMessage: (p) => kinds.push(p.kind) });
  d.send(
    BOTH,
    { kind: "reply", messageType: 2, error: 1 },
    { kind: "file_xfer_status", id: 1, result: 3 },
    { kind: "file_xfer_start", id: 1, metadata: "x" },
    { kind: "file_xfer_data", id: 1, data: bytes("abc") },
    { kind: "graphics_device_info", displays: [] },
    { kind: "audio_volume_sync", playback: true, mute: false, volume: [1] },
    { kind: "mouse_state", x: 0, y: 0, buttons: 0, display: 0 },
    { kind: "unknown", type: 99, data: bytes("?") },
  );
  d.sendRaw({ port: 1, type: 8, opaque: 0n, data: new Uint8Array(3) });
  assert.deepEqual(kinds, [
    "reply",
    "file_xfer_status",
    "file_xfer_start",
    "file_xfer_data",
    "graphics_device_info",
    "audio_volume_sync",
    "mouse_state",
    "unknown",
    "invalid",
  ]);
});

test("HostSession with a Windows-like guest speaks without selection prefix or serials", () => {
  const diagnostics: string[] = [];
  const { host, d } = negotiated({
    clipboard: { provide: () => bytes("w") },
    onDiagnostic: (x) => diagnostics.push(x.code),
  }, WINDOWS_CAPS);
  assert.deepEqual(host.layout, { selection: false, grabSerial: false });
  host.grab(0, [TEXT]);
  assert.deepEqual(d.raw()[0]!.data, u32s(TEXT), "no selection, no serial");
  assert.throws(
    () => host.grab(1, [TEXT]),
    (e) => e instanceof ClipboardError && e.code === "UNSUPPORTED",
  );
  d.send({}, { kind: "clipboard_request", selection: 0, type: TEXT });
  assert.deepEqual(d.take({}), [{ kind: "clipboard", selection: 0, type: TEXT, data: bytes("w") }]);
  d.send({}, { kind: "clipboard_grab", selection: 0, types: [PNG] });
  assert.deepEqual(host.guestOffer(0), { types: [PNG] });
  assert.deepEqual(diagnostics, []);
});

test("HostSession with a mouse-only guest ignores clipboard messages and refuses clipboard calls", async () => {
  const diagnostics: string[] = [];
  const { host, d } = negotiated({ onDiagnostic: (x) => diagnostics.push(x.code) }, [0x1]);
  d.send(BOTH, { kind: "clipboard_grab", selection: 0, serial: 0, types: [TEXT] });
  assert.deepEqual(diagnostics, ["CLIPBOARD_DISABLED"]);
  assert.throws(
    () => host.grab(0, [TEXT]),
    (e) => e instanceof ClipboardError && e.code === "DISABLED",
  );
  await assert.rejects(
    host.request(0, TEXT),
    (e) => e instanceof ClipboardError && e.code === "DISABLED",
  );
  host.mouse({ x: 3, y: 4 });
  assert.deepEqual(d.take({}), [{ kind: "mouse_state", x: 3, y: 4, buttons: 0, display: 0 }]);
});

test("HostSession keeps a grab made before the guest's caps and sends it when they arrive", () => {
  const host = new HostSession();
  const d = drive(host);
  host.grab(1, [TEXT]);
  assert.equal(d.take({}).length, 1, "only the announcement leaves");
  d.send({}, { kind: "announce_capabilities", request: true, caps: LINUX_CAPS });
  assert.deepEqual(d.take().slice(1), [{
    kind: "clipboard_grab",
    selection: 1,
    serial: 0,
    types: [TEXT],
  }]);
  // The guest's answer to our announcement does not repeat it; a guest restart does.
  d.send({}, { kind: "announce_capabilities", request: false, caps: LINUX_CAPS });
  assert.deepEqual(d.take(), []);
  d.send({}, { kind: "announce_capabilities", request: true, caps: LINUX_CAPS });
  assert.deepEqual(d.take().slice(1), [{
    kind: "clipboard_grab",
    selection: 1,
    serial: 0,
    types: [TEXT],
  }]);
});

test("HostSession forgets a grab released before the guest's caps, and tells the guest nothing", () => {
  const host = new HostSession();
  const d = drive(host);
  host.grab(1, [TEXT]);
  host.release(1);
  assert.equal(d.take({}).length, 1, "only the announcement leaves");
  d.send({}, { kind: "announce_capabilities", request: true, caps: LINUX_CAPS });
  assert.deepEqual(d.take().map((m) => m.kind), ["announce_capabilities"]);
});

test("HostSession forgets its PRIMARY grab when the guest re-announces without CLIPBOARD_SELECTION", () => {
  // Found by the fuzzer: the grab outlived the layout that could carry it, and
  // release() then threw the encoder's RangeError.
  const { host, d } = negotiated();
  host.grab(1, [TEXT]);
  assert.deepEqual(d.take().map((m) => m.kind), ["clipboard_grab"]);
  d.send({}, { kind: "announce_capabilities", request: false, caps: WINDOWS_CAPS });
  assert.deepEqual(d.take({}), []);
  host.release(1);
  assert.deepEqual(d.take({}), []);
});

test("HostSession validates its arguments with RangeError", () => {
  assert.throws(() => new HostSession({ maxClipboard: -1 }), RangeError);
  assert.throws(() => new HostSession({ requestTimeout: -5 }), RangeError);
  assert.throws(() => new HostSession({ maxGrabTypes: 0 }), RangeError);
  const host = new HostSession();
  assert.throws(() => host.grab(3, [TEXT]), RangeError);
  assert.throws(() => host.grab(0, []), RangeError);
  assert.throws(() => host.grab(0, [0]), RangeError);
  assert.throws(() => host.guestOffer(-1), RangeError);
});

test("HostSession makes the host capture's decisions when replaying the guest capture", async () => {
  // The capture's host requested every guest offer, then grabbed CLIPBOARD
  // with text, and answered the guest's paste with 5 000 × "x".
  const g2h = await fixture("linux-agent-0.22.1/guest-to-host.bin");
  const h2g = await fixture("linux-agent-0.22.1/host-to-guest.bin");
  const log = await fixtureJson<{ dir?: string; bytes?: number }[]>("linux-agent-0.22.1/log.json");
  const reads = cut(g2h, log.filter((e) => e.dir === "g2h").map((e) => e.bytes!));
  const messages = (await collect(
    ReadableStream.from(reads).pipeThrough(new ChunkDeframer()).pipeThrough(new MessageAssembler()),
  )).flat();
  const host = new HostSession({
    clipboard: {
      onGuestGrab: (selection, types) => void host.request(selection, types[0]!).catch(() => {}),
      provide: () => new Uint8Array(5000).fill(0x78),
    },
  });
  const d = drive(host);
  const out = d.raw();
  for (const [i, message] of messages.entries()) {
    if (i === messages.length - 1) host.grab(0, [TEXT]); // before the guest's paste
    d.sendRaw(message);
    out.push(...d.raw());
  }
  const [wire] = await collect(
    ReadableStream.from([out]).pipeThrough(new MessageFramer()),
  ) as [Uint8Array];
  // Ours also answers the guest's request=1 with request=0 (36 bytes), which
  // the capture's minimal host did not; everything after it is identical.
  assert.deepEqual(wire.subarray(0, 36), h2g.subarray(0, 36));
  assert.deepEqual(
    [...wire.subarray(36, 72)],
    [
      1,
      0,
      0,
      0,
      28,
      0,
      0,
      0,
      1,
      0,
      0,
      0,
      6,
      0,
      0,
      0,
      0,
      0,
      0,
      0,
      0,
      0,
      0,
      0,
      8,
      0,
      0,
      0,
      0,
      0,
      0,
      0,
      0x61,
      0,
      2,
      0,
    ],
  );
  assert.deepEqual(wire.subarray(72), h2g.subarray(36));
});

test("HostSession releases a guest paste that waits too long for the provider, and drops the late answer", async () => {
  const diagnostics: string[] = [];
  let answer!: (data: Uint8Array) => void;
  const { host, d } = negotiated({
    guestRequestTimeout: 5,
    clipboard: { provide: () => new Promise((resolve) => answer = resolve) },
    onDiagnostic: (x) => diagnostics.push(x.code),
  });
  host.grab(0, [TEXT]);
  d.take();
  d.send(BOTH, { kind: "clipboard_request", selection: 0, type: TEXT });
  const released: unknown[] = [];
  await until(() => (released.push(...d.take()), released.length > 0), "the release");
  assert.deepEqual(released, [{ kind: "clipboard_release", selection: 0 }]);
  assert.deepEqual(diagnostics, ["REQUEST_EXPIRED"]);
  answer(bytes("too late"));
  await settle();
  assert.deepEqual(d.take(), [], "the late answer goes nowhere");
});

test("HostSession bounds the guest's pastes pending on a selection", () => {
  const diagnostics: string[] = [];
  const { host, d } = negotiated({
    maxRequests: 2,
    guestRequestTimeout: 0,
    clipboard: { provide: () => new Promise(() => {}) },
    onDiagnostic: (x) => diagnostics.push(x.code),
  });
  host.grab(0, [TEXT]);
  d.take();
  for (let i = 0; i < 2; i++) d.send(BOTH, { kind: "clipboard_request", selection: 0, type: TEXT });
  assert.deepEqual(d.take(), [], "two pastes wait for the provider");
  d.send(BOTH, { kind: "clipboard_request", selection: 0, type: TEXT });
  assert.deepEqual(d.take(), [{ kind: "clipboard_release", selection: 0 }]);
  assert.deepEqual(diagnostics, ["TOO_MANY_REQUESTS"]);
});
