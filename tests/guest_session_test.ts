import { test } from "node:test";
import assert from "node:assert/strict";
import { ClipboardError, ClipboardType, GuestSession, type SessionDiagnostic } from "../mod.ts";
import { BOTH, drive, settle } from "./_session.ts";
import { u32s } from "./_helpers.ts";

const TEXT = ClipboardType.UTF8_TEXT;
const PNG = ClipboardType.IMAGE_PNG;
const QEMU_CAPS = [0x00020061];
const bytes = (s: string) => new TextEncoder().encode(s);

function connected(options: ConstructorParameters<typeof GuestSession>[0] = {}) {
  const guest = new GuestSession(options);
  const d = drive(guest);
  d.send({}, { kind: "announce_capabilities", request: false, caps: QEMU_CAPS });
  d.take();
  return { guest, d };
}

test("GuestSession announces the Linux agent's caps with request=1, or fewer when told", () => {
  const cases: [ConstructorParameters<typeof GuestSession>[0], number][] = [
    [{}, 0x00038de7],
    [{ selection: false, grabSerial: false }, 0x00038de7 & ~(1 << 6) & ~(1 << 17)],
    [{ caps: [0x6b7] }, 0x6b7],
  ];
  for (const [options, word] of cases) {
    assert.deepEqual(drive(new GuestSession(options)).take({}), [
      { kind: "announce_capabilities", request: true, caps: [word] },
    ]);
  }
});

test("GuestSession treats the host's request=1 as a new client: answers, resets serials, releases its clipboard", () => {
  const events: string[] = [];
  const { guest, d } = connected({
    clipboard: {
      onHostGrab: (s) => events.push(`host grab ${s}`),
      onHostRelease: (s) => events.push(`host release ${s}`),
    },
  });
  guest.grab(0, [TEXT]);
  guest.grab(0, [TEXT]);
  guest.grab(1, [TEXT]);
  d.send(BOTH, { kind: "clipboard_grab", selection: 2, serial: 0, types: [TEXT] });
  assert.deepEqual(guest.serials, [2, 1, 1]);
  d.take();
  d.send({}, { kind: "announce_capabilities", request: true, caps: QEMU_CAPS });
  assert.deepEqual(d.take(), [
    { kind: "announce_capabilities", request: false, caps: [0x00038de7] },
    { kind: "clipboard_release", selection: 0 },
    { kind: "clipboard_release", selection: 1 },
  ]);
  assert.deepEqual(guest.serials, [0, 0, 0]);
  assert.deepEqual(events, ["host grab 2", "host release 2"]);
  assert.equal(guest.guestOffer(0), undefined);
  // The host's request=0 is an answer, not a new client.
  guest.grab(0, [TEXT]);
  d.take();
  d.send({}, { kind: "announce_capabilities", request: false, caps: QEMU_CAPS });
  assert.deepEqual(d.take(), []);
  assert.deepEqual(guest.serials, [1, 0, 0]);
});

test("GuestSession accepts a host grab with the expected serial or one less, and discards the rest", () => {
  const diagnostics: SessionDiagnostic[] = [];
  const { guest, d } = connected({ onDiagnostic: (x) => diagnostics.push(x) });
  // [serial sent by the host, accepted?, the guest's counter afterwards]
  const table: [number, boolean, number][] = [
    [1, false, 0],
    [0, true, 1], // expected
    [0, true, 1], // expected − 1: "client wins", counter unchanged
    [2, false, 1],
    [1, true, 2],
    [0, false, 2],
  ];
  for (const [i, [serial, accepted, after]] of table.entries()) {
    const types = [i + 1];
    d.send(BOTH, { kind: "clipboard_grab", selection: 1, serial, types });
    assert.equal(guest.hostOffer(1)?.types[0] === i + 1, accepted, `row ${i}`);
    assert.equal(guest.serials[1], after, `row ${i} counter`);
  }
  assert.equal(diagnostics.filter((x) => x.code === "GRAB_DISCARDED").length, 3);
});

test("GuestSession applies the serial rules across the 2^32 wrap", () => {
  const { guest, d } = connected();
  d.send(BOTH, { kind: "clipboard_grab", selection: 0, serial: 0xffff_ffff, types: [TEXT] });
  assert.equal(guest.hostOffer(0)?.serial, 0xffff_ffff, "0 − 1 wraps to 0xFFFFFFFF: client wins");
  assert.equal(guest.serials[0], 0);
  for (let i = 0; i < 3; i++) guest.grab(0, [TEXT]);
  assert.deepEqual(d.take().map((p) => p.kind === "clipboard_grab" && p.serial), [0, 1, 2]);
});

test("GuestSession sends its grab serial then increments it, per selection", () => {
  const { guest, d } = connected();
  guest.grab(0, [TEXT]);
  guest.grab(1, [TEXT]);
  guest.grab(0, [PNG]);
  assert.deepEqual(d.take(), [
    { kind: "clipboard_grab", selection: 0, serial: 0, types: [TEXT] },
    { kind: "clipboard_grab", selection: 1, serial: 0, types: [TEXT] },
    { kind: "clipboard_grab", selection: 0, serial: 1, types: [PNG] },
  ]);
});

test("GuestSession hands MOUSE_STATE to its mouse handler", () => {
  const moves: unknown[] = [];
  const { d } = connected({ onMouse: (state) => moves.push(state) });
  d.send({}, { kind: "mouse_state", x: 7, y: 8, buttons: 4, display: 2 });
  assert.deepEqual(moves, [{ x: 7, y: 8, buttons: 4, display: 2 }]);
});

test("GuestSession serves the host's paste from its provider, and answers type NONE when it cannot", async () => {
  const { guest, d } = connected({
    clipboard: {
      provide: (_, type) => type === TEXT ? Promise.resolve(bytes("guest")) : undefined,
    },
  });
  const none = {
    kind: "clipboard",
    selection: 0,
    type: ClipboardType.NONE,
    data: new Uint8Array(0),
  };
  d.send(BOTH, { kind: "clipboard_request", selection: 0, type: TEXT });
  assert.deepEqual(d.take(), [none], "nothing owned");
  guest.grab(0, [TEXT, PNG]);
  d.take();
  d.send(BOTH, { kind: "clipboard_request", selection: 0, type: TEXT });
  await settle();
  assert.deepEqual(d.take(), [{
    kind: "clipboard",
    selection: 0,
    type: TEXT,
    data: bytes("guest"),
  }]);
  d.send(BOTH, { kind: "clipboard_request", selection: 0, type: PNG });
  assert.deepEqual(d.take(), [none], "the provider has nothing");
  d.send(BOTH, { kind: "clipboard_request", selection: 0, type: ClipboardType.IMAGE_BMP });
  assert.deepEqual(d.take(), [none], "not offered");
});

test("GuestSession drops a provider's late answer to a host that has since reconnected", async () => {
  let answer: (data: Uint8Array) => void = () => {};
  const { guest, d } = connected({
    clipboard: { provide: () => new Promise<Uint8Array>((resolve) => answer = resolve) },
  });
  guest.grab(1, [TEXT]);
  d.take();
  d.send(BOTH, { kind: "clipboard_request", selection: 1, type: TEXT });
  // A new client that lays messages out without the selection prefix.
  d.send({}, { kind: "announce_capabilities", request: true, caps: [0x6b7] });
  d.take({});
  answer(bytes("for the old client"));
  await settle();
  assert.deepEqual(d.take({}), []);
});

test("GuestSession honours the host's MAX_CLIPBOARD as the Linux agent does: the type with no data", () => {
  const { guest, d } = connected({ clipboard: { provide: () => bytes("12345") } });
  d.send({}, { kind: "max_clipboard", max: 4 });
  guest.grab(0, [TEXT]);
  d.take();
  d.send(BOTH, { kind: "clipboard_request", selection: 0, type: TEXT });
  assert.deepEqual(d.take(), [{
    kind: "clipboard",
    selection: 0,
    type: TEXT,
    data: new Uint8Array(0),
  }]);
});

test("GuestSession pastes the host's data, and fails the paste on release and close", async () => {
  const { guest, d } = connected();
  d.send(BOTH, { kind: "clipboard_grab", selection: 0, serial: 0, types: [TEXT] });
  const pasted = guest.request(0, TEXT);
  assert.deepEqual(d.take(), [{ kind: "clipboard_request", selection: 0, type: TEXT }]);
  d.send(BOTH, { kind: "clipboard", selection: 0, type: TEXT, data: bytes("host") });
  assert.deepEqual(await pasted, bytes("host"));
  const released = guest.request(0, TEXT);
  d.send(BOTH, { kind: "clipboard_release", selection: 0 });
  await assert.rejects(released, (e) => e instanceof ClipboardError && e.code === "RELEASED");
  assert.deepEqual(d.take(), [{ kind: "clipboard_request", selection: 0, type: TEXT }]);
  await assert.rejects(
    guest.request(0, TEXT),
    (e) => e instanceof ClipboardError && e.code === "NOT_OFFERED",
  );
  assert.deepEqual(d.take(), [], "a paste the host cannot answer is not sent");
  d.send(BOTH, { kind: "clipboard_grab", selection: 0, serial: 1, types: [TEXT] });
  const closed = guest.request(0, TEXT);
  d.close();
  await assert.rejects(closed, (e) => e instanceof ClipboardError && e.code === "CLOSED");
});

test("GuestSession sends nothing for a refused request: the 17th over maxRequests, an aborted signal", async () => {
  const { guest, d } = connected();
  d.send(BOTH, { kind: "clipboard_grab", selection: 0, serial: 0, types: [TEXT] });
  const accepted = Array.from({ length: 16 }, () => guest.request(0, TEXT, { timeout: 0 }));
  assert.equal(d.raw().length, 16, "16 CLIPBOARD_REQUESTs");
  await assert.rejects(
    guest.request(0, TEXT),
    (e) => e instanceof ClipboardError && e.code === "TOO_MANY_REQUESTS",
  );
  assert.deepEqual(d.raw(), [], "the 17th is not written");
  d.send(BOTH, { kind: "clipboard", selection: 0, type: TEXT, data: bytes("one") });
  assert.deepEqual(await accepted[0], bytes("one"));
  await assert.rejects(
    guest.request(0, TEXT, { signal: AbortSignal.abort() }),
    (e) => e instanceof ClipboardError && e.code === "ABORTED",
  );
  assert.deepEqual(d.raw(), [], "an aborted request is not written");
  d.close();
  await Promise.allSettled(accepted);
});

test("GuestSession without selection and serial behaves like the Windows agent", () => {
  const { guest, d } = connected({ selection: false, grabSerial: false });
  guest.grab(0, [TEXT]);
  assert.deepEqual(d.raw()[0]!.data, u32s(TEXT));
  assert.throws(
    () => guest.grab(1, [TEXT]),
    (e) => e instanceof ClipboardError && e.code === "UNSUPPORTED",
  );
  d.send({}, { kind: "clipboard_grab", selection: 0, types: [PNG] });
  assert.deepEqual(guest.hostOffer(0), { types: [PNG] });
});

test("GuestSession ignores messages of the wrong size, as the Linux agent does", () => {
  const diagnostics: string[] = [];
  const moves: unknown[] = [];
  const { d } = connected({
    onDiagnostic: (x) => diagnostics.push(x.code),
    onMouse: (m) => moves.push(m),
  });
  d.sendRaw({ port: 1, type: 1, opaque: 0n, data: new Uint8Array(12) });
  d.sendRaw({ port: 1, type: 9, opaque: 0n, data: new Uint8Array(5) });
  assert.deepEqual(moves, []);
  assert.deepEqual(diagnostics, ["INVALID_PAYLOAD", "INVALID_PAYLOAD"]);
});

test("GuestSession acknowledges MONITORS_CONFIG with REPLY", () => {
  const { d } = connected();
  d.send({}, {
    kind: "monitors_config",
    flags: 0,
    monitors: [{ width: 800, height: 600, depth: 32, x: 0, y: 0 }],
  });
  assert.deepEqual(d.take(), [{ kind: "reply", messageType: 2, error: 1 }]);
});

test("GuestSession forgets its PRIMARY grab when the host re-announces without CLIPBOARD_SELECTION", () => {
  const { guest, d } = connected();
  guest.grab(1, [TEXT]);
  assert.deepEqual(d.take().map((m) => m.kind), ["clipboard_grab"]);
  d.send({}, { kind: "announce_capabilities", request: false, caps: [0x21] });
  assert.deepEqual(d.take({}), []);
  guest.release(1);
  assert.deepEqual(d.take({}), []);
  assert.equal(guest.guestOffer(1), undefined);
});

test("GuestSession keeps a grab made before the host is known and sends it after the host's caps", () => {
  const guest = new GuestSession();
  const d = drive(guest);
  guest.grab(0, [TEXT]);
  assert.equal(d.take({}).length, 1, "only the announcement leaves");
  d.send({}, { kind: "announce_capabilities", request: true, caps: QEMU_CAPS });
  assert.deepEqual(d.take(), [
    { kind: "announce_capabilities", request: false, caps: [0x00038de7] },
    { kind: "clipboard_grab", selection: 0, serial: 0, types: [TEXT] },
  ]);
});
