// How a hand-off holds when the guest sits behind QEMU's socket chardev (tests/_qemu_port.ts):
// draining the old connection, a reconnected restore that keeps the serials (probe, no
// announcement), one that cannot (announcement), a continued restore across a migration whose
// last bytes were lost, and the announcement or probe a guest dropped.
import { test } from "node:test";
import assert from "node:assert/strict";
import {
  ClipboardType,
  createHostPipeline,
  decodeCheckpoint,
  GuestSession,
  type HostPipeline,
  type HostPipelineOptions,
  HostSession,
  type SessionDiagnostic,
  StateCheckpoint,
  type Transport,
} from "../mod.ts";
import { hostCoreOf } from "../src/session/_session_cores.ts";
import { QemuPort } from "./_qemu_port.ts";
import { BOTH, drive, LINUX_CAPS, restoreProbing } from "./_session.ts";
import { until } from "./_helpers.ts";

const TEXT = ClipboardType.UTF8_TEXT;
const text = (s: string) => new TextEncoder().encode(s);
const str = (b: Uint8Array) => new TextDecoder().decode(b);

/** A guest on a QEMU port, and what it saw. */
function guestOnPort(options: { closeDelay?: number } = {}) {
  const events: string[] = [];
  const guestData = new Map<number, string>();
  const guest = new GuestSession({
    requestTimeout: 0,
    onHostCaps: (_, request) => void events.push(`caps request=${request}`),
    onDiagnostic: (d) => void events.push(`guest ${d.code}`),
    clipboard: {
      onHostGrab: (s, t) => void events.push(`host grab ${s} [${t}]`),
      onHostRelease: (s) => void events.push(`host release ${s}`),
      provide: (s) => guestData.has(s) ? text(guestData.get(s)!) : undefined,
    },
  });
  const port = new QemuPort(guest, options);
  const copy = (selection: number, data: string) => {
    guestData.set(selection, data);
    guest.grab(selection, [TEXT]);
  };
  return { guest, port, events, copy };
}

/** A relay on a new connection to `port`, or on a connection made before. */
function relayOn(port: QemuPort | Transport, options: HostPipelineOptions = {}) {
  const events: string[] = [];
  const diagnostics: SessionDiagnostic[] = [];
  const hostData = new Map<number, string>();
  const relay = createHostPipeline(port instanceof QemuPort ? port.connect() : port, {
    retryInterval: 20,
    ...options,
    onDiagnostic: (d) => void diagnostics.push(d),
    clipboard: {
      onGuestGrab: (s) => void events.push(`guest grab ${s}`),
      onGuestRelease: (s) => void events.push(`guest release ${s}`),
      provide: (s) => hostData.has(s) ? text(hostData.get(s)!) : undefined,
    },
  });
  const copy = (selection: number, data: string) => {
    hostData.set(selection, data);
    relay.session.grab(selection, [TEXT]);
  };
  return { relay, events, diagnostics, copy, hostData };
}

const paste = async (relay: HostPipeline, selection: number) =>
  str(await relay.session.request(selection, TEXT, { timeout: 0 }));

test("HostPipeline.checkpoint with drain reads what the guest sent until QEMU closes its side", async () => {
  for (const drain of [false, true]) {
    const g = guestOnPort();
    const a = relayOn(g.port);
    await until(() => a.relay.session.guestCaps !== undefined, "caps");
    // The guest copies just as the relay stops: its grab is on its way.
    g.copy(1, "copied as the relay stopped");
    const state = decodeCheckpoint(await a.relay.checkpoint({ drain }));
    assert.equal(state.drained, drain ? true : undefined);
    assert.deepEqual(
      state.selections[1].guestOffer,
      drain ? { serial: 0, types: [TEXT] } : undefined,
      drain ? "the grab was read into the checkpoint" : "the grab was left in the transport",
    );
    await a.relay.done;
  }
});

test("createHostPipeline resumed reconnected from a drained checkpoint probes instead of announcing, then grabs again with the guest's serials", async () => {
  const g = guestOnPort();
  const a = relayOn(g.port);
  await until(() => a.relay.session.guestCaps !== undefined, "caps");
  g.copy(0, "guest 1");
  g.copy(0, "guest 2");
  await until(() => a.relay.session.guestOffer(0)?.serial === 1, "the guest's grabs");
  a.copy(1, "host primary");
  await until(() => g.events.includes("host grab 1 [1]"), "the host's grab");
  const checkpoint = await a.relay.checkpoint({ drain: true });
  await a.relay.done;
  // The guest hears the client leave: it releases its CLIPBOARD copy and drops the host's PRIMARY.
  await until(() => g.events.includes("host release 1"), "the close");
  // Its user copies again while no relay is connected: the grab waits in QEMU.
  g.copy(0, "copied while no relay was connected");

  const b = relayOn(g.port, { restore: checkpoint, resume: "reconnected" });
  b.hostData.set(1, "host primary");
  await until(() => b.events.includes("guest grab 0"), "the copy made in the gap");
  assert.deepEqual(b.events, ["guest release 0", "guest grab 0"]);
  assert.equal(b.relay.session.guestOffer(0)?.serial, 2, "the guest's serial went on");
  assert.equal(await paste(b.relay, 0), "copied while no relay was connected");
  await until(() => g.events.at(-1) === "host grab 1 [1]", "the host's grab, again");
  assert.equal(str(await g.guest.request(1, TEXT)), "host primary");
  // Both ways, with no reset: the guest's next grab carries serial 3.
  g.copy(0, "guest 3");
  await until(() => b.relay.session.guestOffer(0)?.serial === 3, "the guest's next grab");
  b.copy(0, "host clipboard");
  await until(() => g.guest.hostOffer(0) !== undefined, "the host's CLIPBOARD grab");
  assert.equal(str(await g.guest.request(0, TEXT)), "host clipboard");
  assert.deepEqual(
    g.events.filter((e) => e === "caps request=true" || e.startsWith("guest ")),
    ["caps request=true"],
    "one client for the guest, and no grab discarded",
  );
  assert.deepEqual(b.diagnostics, []);
  await b.relay.close();
});

test("createHostPipeline resumed reconnected probes again when the guest dropped its probe", async () => {
  // The next relay connects before the guest has handled the close: what it writes is dropped.
  const g = guestOnPort({ closeDelay: 30 });
  const a = relayOn(g.port);
  await until(() => a.relay.session.guestCaps !== undefined, "caps");
  a.copy(0, "host text");
  await until(() => g.events.includes("host grab 0 [1]"), "the host's grab");
  const checkpoint = await a.relay.checkpoint({ drain: true });
  await a.relay.done;
  const b = relayOn(g.port, { restore: checkpoint, resume: "reconnected" });
  b.hostData.set(0, "host text");
  await until(() => g.port.dropped > 0, "the dropped probe");
  await until(() => g.events.filter((e) => e === "host grab 0 [1]").length === 2, "the re-grab");
  assert.equal(str(await g.guest.request(0, TEXT)), "host text");
  assert.equal(g.events.filter((e) => e === "caps request=true").length, 1, "no announcement");
  await b.relay.close();
});

test("createHostPipeline resumed reconnected from a checkpoint that was not drained announces itself", async () => {
  // The relay crashes: its latest continuous checkpoint may miss a grab the guest sent it.
  const g = guestOnPort();
  const checkpoints = new StateCheckpoint({ continuous: true });
  const crash = new AbortController();
  const a = relayOn(g.port, { checkpoints, signal: crash.signal });
  await until(() => a.relay.session.guestCaps !== undefined, "caps");
  a.copy(0, "host text");
  await until(() => g.events.includes("host grab 0 [1]"), "the host's grab");
  const reader = checkpoints.readable.getReader();
  let latest: Uint8Array | undefined;
  for (;;) {
    const { value } = await reader.read();
    latest = value;
    if (decodeCheckpoint(value!).selections[0].hostOffer !== undefined) break;
  }
  reader.releaseLock();
  crash.abort(new Error("the relay crashed"));
  await a.relay.done.catch(() => {});
  const b = relayOn(g.port, { restore: latest!, resume: "reconnected" });
  b.hostData.set(0, "host text");
  await until(() => g.events.filter((e) => e === "host grab 0 [1]").length === 2, "the re-grab");
  assert.equal(g.events.filter((e) => e === "caps request=true").length, 2, "one more client");
  assert.deepEqual(g.guest.serials, [1, 0, 0], "the serials restarted, then B's grab moved one");
  assert.equal(str(await g.guest.request(0, TEXT)), "host text");
  await b.relay.close();
});

test("createHostPipeline resumed after a migration sends again what the stopped source lost", async () => {
  for (const early of [true, false]) {
    const g = guestOnPort();
    const a = relayOn(g.port);
    await until(() => a.relay.session.guestCaps !== undefined, "caps");
    g.copy(0, "guest text");
    g.copy(1, "guest primary");
    await until(() => a.relay.session.guestOffer(1) !== undefined, "the guest's grabs");
    // The source VM stops; the relay's copy and its paste go to a VM that will never run again.
    g.port.stopForMigration();
    a.copy(0, "host text");
    a.relay.session.request(1, TEXT).catch(() => {}); // handed off: B gets the answer
    // A standby connected to the destination before the guest resumes there.
    const standby = early ? g.port.connect() : undefined;
    const checkpoint = await a.relay.checkpoint({ drain: true });
    await a.relay.done;
    assert.ok(g.port.lost > 0, "bytes were written to the stopped source");
    assert.ok(decodeCheckpoint(checkpoint).drained);
    const next = standby === undefined
      ? undefined
      : relayOn(standby, { restore: checkpoint, resume: "continued" });
    g.port.resumeAfterMigration();
    // The standby continues; a relay that connects after the resume is reconnected.
    const b = next ?? relayOn(g.port, { restore: checkpoint, resume: "reconnected" });
    b.hostData.set(0, "host text");
    await until(() => g.guest.hostOffer(0) !== undefined, "the host's grab, sent again");
    assert.equal(str(await g.guest.request(0, TEXT)), "host text");
    // The paste the source lost is asked again and answered where the guest's port stayed open;
    // where it closed, the guest released its copy, which settles the paste.
    const [resumed] = b.relay.session.resumedRequests;
    if (early) assert.equal(str(await resumed!.result), "guest primary");
    else await assert.rejects(resumed!.result, (e) => (e as { code: string }).code === "RELEASED");
    assert.equal(g.events.filter((e) => e.startsWith("guest ")).length, 0, "nothing discarded");
    assert.equal(g.events.filter((e) => e === "caps request=true").length, 1, "one client");
    assert.deepEqual(b.diagnostics, []);
    await b.relay.close();
  }
});

test("HostSession restored from a drained checkpoint announces itself when the guest releases a selection whose grab it never saw", () => {
  const diagnostics: SessionDiagnostic[] = [];
  const host = new HostSession({ onDiagnostic: (d) => void diagnostics.push(d) });
  const d = drive(host);
  hostCoreOf(host).restore({
    hostCaps: host.hostCaps,
    guestCaps: LINUX_CAPS,
    selections: [
      { lastSerial: 4, guestRequests: [], guestOffer: { serial: 4, types: [TEXT] } },
      { lastSerial: 2, guestRequests: [] },
      { lastSerial: 0, guestRequests: [] },
    ],
  }, { reconnected: true, drained: true, offers: true });
  assert.deepEqual(d.take(), [{ kind: "clipboard_request", selection: 2, type: 0 }], "a probe");
  // The release of the known copy is expected; one of PRIMARY means a grab was lost.
  d.send(BOTH, { kind: "clipboard_release", selection: 0 });
  assert.deepEqual(d.take(), []);
  d.send(BOTH, { kind: "clipboard_release", selection: 1 });
  assert.deepEqual(diagnostics.map((x) => x.code), ["LOST_GRAB"]);
  assert.deepEqual(d.take(), [{
    kind: "announce_capabilities",
    request: true,
    caps: host.hostCaps,
  }]);
  d.close();
});

test("HostSession announces itself again when the guest leaves its announcement unanswered", async () => {
  // A new client's first bytes are dropped while the guest handles the previous client's close.
  const g = guestOnPort({ closeDelay: 30 });
  const a = relayOn(g.port);
  await until(() => a.relay.session.guestCaps !== undefined, "caps");
  await a.relay.close(); // no hand-off: the next relay starts fresh
  const b = relayOn(g.port);
  await until(() => b.relay.session.guestCaps !== undefined, "the answer to the second try");
  assert.ok(g.port.dropped > 0, "the first announcement was dropped");
  b.copy(0, "host text");
  await until(() => g.guest.hostOffer(0) !== undefined, "the host's grab");
  assert.equal(str(await g.guest.request(0, TEXT)), "host text");
  await b.relay.close();
});

test("HostSession restored reconnected sends a paste asked while probing once the guest answers, unless it settled", async () => {
  const host = new HostSession();
  const d = drive(host);
  restoreProbing(host, [0, 1], [TEXT]);
  assert.deepEqual(d.take(), [{ kind: "clipboard_request", selection: 2, type: 0 }]);
  const clipboard = host.request(0, TEXT);
  const primary = host.request(1, TEXT);
  assert.deepEqual(d.take(), [], "nothing but the probe until the guest answers it");
  d.send(BOTH, { kind: "clipboard_release", selection: 1 });
  await assert.rejects(primary, (e) => (e as { code: string }).code === "RELEASED");
  d.send(BOTH, { kind: "clipboard", selection: 2, type: 0, data: new Uint8Array(0) });
  assert.deepEqual(d.take(), [{ kind: "clipboard_request", selection: 0, type: TEXT }]);
  d.send(BOTH, { kind: "clipboard", selection: 0, type: TEXT, data: text("guest") });
  assert.equal(str(await clipboard), "guest");
  d.close();
});

test("createHostPipeline hands on a grab still owed to the guest: reconnected, then continued at once", async () => {
  // A grabbed PRIMARY; B restores A's checkpoint on a new connection and owes the guest that grab
  // until the guest answers its announcement; C takes B's checkpoint over at once, continued.
  const g = guestOnPort();
  const connA = g.port.connect();
  const a = relayOn(connA);
  await until(() => a.relay.session.guestCaps !== undefined, "caps");
  a.copy(1, "host primary");
  await until(() => g.events.includes("host grab 1 [1]"), "A's grab");
  const fromA = await a.relay.checkpoint();
  await a.relay.done;
  connA.closeWrite(); // A's relay closes its socket
  const conn = g.port.connect();
  const b = relayOn(conn, { restore: fromA, resume: "reconnected" });
  const fromB = await b.relay.checkpoint();
  await b.relay.done;
  assert.equal(decodeCheckpoint(fromB).selections[1].hostOfferSent, false, "still owed");
  const c = relayOn(conn, { restore: fromB, resume: "continued" });
  c.hostData.set(1, "host primary");
  await until(() => g.events.filter((e) => e === "host grab 1 [1]").length === 2, "the grab");
  assert.equal(str(await g.guest.request(1, TEXT)), "host primary");
  await c.relay.close();
});

test("HostSession restored continued takes the answer to the probe its predecessor sent", () => {
  const host = new HostSession({ retryInterval: 0 });
  const d = drive(host);
  hostCoreOf(host).restore({
    hostCaps: host.hostCaps,
    guestCaps: LINUX_CAPS,
    selections: [
      { lastSerial: 3, guestRequests: [], hostOffer: [TEXT], hostOfferSent: false },
      { lastSerial: 0, guestRequests: [] },
      { lastSerial: 0, guestRequests: [] },
    ],
    awaiting: "probe",
  }, { reconnected: false, drained: false, offers: true });
  assert.deepEqual(d.take(), [], "the question is on its way already");
  d.send(BOTH, { kind: "clipboard", selection: 2, type: 0, data: new Uint8Array(0) });
  assert.deepEqual(d.take(), [{ kind: "clipboard_grab", selection: 0, serial: 3, types: [TEXT] }]);
  d.close();
});
