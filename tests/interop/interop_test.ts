// Interop with the real Linux guest agent (Debian's spice-vdagent 0.22.x): each scenario starts
// its own guest stack (tests/interop/_guest_stack.ts), connects `createHostPipeline` to it over
// a unix socket, and asserts on what the guest user sees (xclip, the uinput device) and on the
// agent's log. A failing scenario prints the agent's log and the wire transcript.
//
// VDAGENT_INTEROP decides what happens when the Debian packages are missing (tests/interop/_gate.ts).
//
// Deno.test, not node:test: this suite is Deno-only (it spawns processes), and Deno.test's
// sanitizers (turned on below) fail a scenario that leaves a process, a socket or a timer behind.
import assert from "node:assert/strict";
import {
  Capability,
  capabilityWords,
  ClipboardError,
  ClipboardType,
  MouseButton,
  type MouseInput,
  Selection,
} from "../../mod.ts";
import { prng, sameBytes } from "../_helpers.ts";
import {
  ABS_X,
  ABS_Y,
  BTN_EXTRA,
  BTN_LEFT,
  BTN_MIDDLE,
  BTN_RIGHT,
  BTN_SIDE,
  EV_ABS,
  EV_KEY,
  EV_REL,
  EV_SYN,
  type GuestStack,
  type InputEvent,
  REL_WHEEL,
  startGuestStack,
  SYN_REPORT,
} from "./_guest_stack.ts";
import { requireBinaries, run, SANITIZE } from "./_gate.ts";
import { makePng } from "./_png.ts";
import { openRelay, type Relay, type RelayOptions } from "./_relay.ts";

const TEXT = ClipboardType.UTF8_TEXT;
const PNG = ClipboardType.IMAGE_PNG;
const CLIPBOARD = Selection.CLIPBOARD;
const PRIMARY = Selection.PRIMARY;
const encode = (s: string) => new TextEncoder().encode(s);
const decode = (b: Uint8Array) => new TextDecoder().decode(b);

/** What spice-vdagentd 0.22 announces (`send_capabilities` in vdagentd.c). */
const LINUX_AGENT_CAPS = capabilityWords([
  Capability.MOUSE_STATE,
  Capability.MONITORS_CONFIG,
  Capability.REPLY,
  Capability.CLIPBOARD_BY_DEMAND,
  Capability.CLIPBOARD_SELECTION,
  Capability.SPARSE_MONITORS_CONFIG,
  Capability.GUEST_LINEEND_LF,
  Capability.MAX_CLIPBOARD,
  Capability.AUDIO_VOLUME_SYNC,
  Capability.GRAPHICS_DEVICE_INFO,
  Capability.CLIPBOARD_NO_RELEASE_ON_REGRAB,
  Capability.CLIPBOARD_GRAB_SERIAL,
]);

// ---- the gate (tests/interop/_gate.ts) -----------------------------------------------------

interface Context {
  stack: GuestStack;
  /** Opens a relay on the stack; the scenario closes it (or the runner does, on failure). */
  openRelay(options?: RelayOptions): Promise<Relay>;
}

/** Registers a scenario that runs in a fresh guest stack and reports the log if it fails. */
function scenario(name: string, fn: (context: Context) => Promise<void>): void {
  if (!run) return;
  Deno.test({ name, ...SANITIZE }, async () => {
    requireBinaries();
    const stack = await startGuestStack();
    const relays: Relay[] = [];
    try {
      await fn({
        stack,
        openRelay: async (options) => {
          const relay = await openRelay(stack, options);
          relays.push(relay);
          return relay;
        },
      });
    } catch (error) {
      const wires = relays.map((r) => `--- ${r.name}: wire ---\n${r.transcript()}`).join("\n");
      // deno-lint-ignore no-console
      console.error(`\n=== ${name} failed ===\n--- agent log ---\n${stack.log()}\n${wires}\n`);
      throw error;
    } finally {
      await Promise.all(relays.map((r) => r.close().catch(() => {})));
      await stack.stop();
    }
  });
}

/** Log lines of `re` since `since`, from `src`. */
function logCount(stack: GuestStack, re: RegExp, since = 0, src?: string): number {
  return stack.findLogs(re, src === undefined ? { since } : { since, src }).length;
}

/** Exactly `bytes` bytes of UTF-8 text with 1- to 4-byte characters and newlines. */
function utf8Text(bytes: number, seed: number): Uint8Array {
  const rand = prng(seed);
  const pieces = ["a", "b", "z", " ", "\n", "é", "ö", "✓", "日", "本", "𝄞", "—"];
  const parts: string[] = [];
  let size = 0;
  while (size < bytes - 4) {
    const piece = pieces[(rand() * pieces.length) | 0]!;
    parts.push(piece);
    size += encode(piece).length;
  }
  parts.push("x".repeat(bytes - size));
  const out = encode(parts.join(""));
  assert.equal(out.length, bytes);
  return out;
}

/** Waits until the session agent took a host grab and owns the X selection. */
async function guestTakesHostGrab(stack: GuestStack, mark: number, selection = 0) {
  await stack.waitForLog(new RegExp(`received clipboard grab, arg1: ${selection},`), {
    since: mark,
    src: "vdagent",
  });
  await stack.waitForGuestOwner(selection === 0 ? "clipboard" : "primary", "agent");
}

// ---- the harness itself ---------------------------------------------------------------------

if (run) {
  Deno.test({
    name: "GuestStack stops every process it started and removes its temp dir",
    ...SANITIZE,
  }, async () => {
    const stack = await startGuestStack();
    const pids = stack.pids();
    await stack.stop();
    for (const pid of [pids.xvfb, pids.socat, pids.uinputReader, pids.daemon, pids.agent]) {
      assert.notEqual(pid, null);
      let state = "gone";
      try {
        state = Deno.readTextFileSync(`/proc/${pid}/stat`).split(") ")[1]?.[0] ?? "gone";
      } catch { /* gone */ }
      assert.ok(state === "gone" || state === "Z", `process ${pid} is still running (${state})`);
    }
    assert.throws(() => Deno.statSync(stack.dir), Deno.errors.NotFound);
  });
}

// ---- a. capabilities ------------------------------------------------------------------------

scenario(
  "createHostPipeline negotiates caps with the real agent (a)",
  async ({ stack, openRelay }) => {
    const relay = await openRelay();
    await relay.negotiated();
    // The guest announced first (request=1, one chunk of 28 bytes), then answered our request=1.
    const guestCaps = relay.wire.filter((m) =>
      m.dir === "in" && m.payload.kind === "announce_capabilities"
    );
    assert.deepEqual(guestCaps.map((m) => [m.payload, m.chunks]), [
      [{ kind: "announce_capabilities", request: true, caps: [0x00038de7] }, [28]],
      [{ kind: "announce_capabilities", request: false, caps: [0x00038de7] }, [28]],
    ]);
    assert.deepEqual(relay.session.guestCaps, [0x00038de7]);
    assert.deepEqual(relay.session.guestCaps, LINUX_AGENT_CAPS);
    assert.deepEqual(relay.session.layout, { selection: true, grabSerial: true });
    const hostCaps = relay.wire.filter((m) =>
      m.dir === "out" && m.payload.kind === "announce_capabilities"
    );
    assert.deepEqual(hostCaps.map((m) => m.payload), [
      { kind: "announce_capabilities", request: true, caps: relay.session.hostCaps },
      { kind: "announce_capabilities", request: false, caps: relay.session.hostCaps },
    ]);
    // The daemon took our request=1 as a new client, once, and found nothing malformed.
    await stack.waitForLog(/New client connected/, { src: "vdagentd" });
    assert.equal(logCount(stack, /New client connected/), 1);
    assert.equal(logCount(stack, /invalid message|wrong protocol|unknown message type/), 0);
    assert.deepEqual(relay.events.filter((e) => e.kind === "diagnostic"), []);
    await relay.close();
  },
);

// ---- b. guest → host ------------------------------------------------------------------------

scenario(
  "createHostPipeline receives the real agent's text, 1 MiB text, PRIMARY and PNG (b)",
  async ({ stack, openRelay }) => {
    const relay = await openRelay();
    await relay.negotiated();

    // Short UTF-8 text.
    const short = "héllo wörld ✓ 日本語 𝄞";
    let mark = stack.logMark();
    let since = relay.events.length;
    await stack.guestCopy(short);
    await relay.waitEvent("guest-grab", (e) => e.selection === CLIPBOARD, since);
    assert.deepEqual(relay.session.guestOffer(CLIPBOARD), { serial: 0, types: [TEXT] });
    assert.equal(decode(await relay.session.request(CLIPBOARD, TEXT)), short);
    assert.equal(
      logCount(
        stack,
        new RegExp(`sent clipboard data, arg1: 0, arg2: 1, size ${encode(short).length}$`),
        mark,
        "vdagent",
      ),
      1,
    );

    // 1 MiB of text: the agent sends it as one chunk.
    const big = utf8Text(1024 * 1024, 1);
    mark = stack.logMark();
    since = relay.events.length;
    let wireAt = relay.wire.length;
    await stack.guestCopy(big);
    await relay.waitEvent("guest-grab", (e) => e.selection === CLIPBOARD, since);
    assert.deepEqual(relay.session.guestOffer(CLIPBOARD), { serial: 1, types: [TEXT] });
    assert.ok(sameBytes(await relay.session.request(CLIPBOARD, TEXT), big), "1 MiB differs");
    const data = await relay.waitWire("in", (p) => p.kind === "clipboard", wireAt);
    assert.deepEqual(data.chunks, [20 + 8 + big.length]);
    assert.equal(
      logCount(stack, /sent clipboard data, arg1: 0, arg2: 1, size 1048576$/, mark, "vdagent"),
      1,
    );

    // PRIMARY has its own serials.
    mark = stack.logMark();
    since = relay.events.length;
    await stack.guestCopy("selected with the mouse", { selection: "primary" });
    await relay.waitEvent("guest-grab", (e) => e.selection === PRIMARY, since);
    assert.deepEqual(relay.session.guestOffer(PRIMARY), { serial: 0, types: [TEXT] });
    assert.equal(decode(await relay.session.request(PRIMARY, TEXT)), "selected with the mouse");
    assert.equal(logCount(stack, /sent clipboard grab, arg1: 1,/, mark, "vdagent"), 1);

    // A PNG, offered as image/png only.
    const png = await makePng(64, 48, 2);
    mark = stack.logMark();
    since = relay.events.length;
    wireAt = relay.wire.length;
    await stack.guestCopy(png, { target: "image/png" });
    await relay.waitEvent("guest-grab", (e) => e.selection === CLIPBOARD, since);
    assert.deepEqual(relay.session.guestOffer(CLIPBOARD), { serial: 2, types: [PNG] });
    assert.ok(sameBytes(await relay.session.request(CLIPBOARD, PNG), png), "the PNG differs");
    await assert.rejects(
      relay.session.request(CLIPBOARD, TEXT),
      (e) => e instanceof ClipboardError && e.code === "NOT_OFFERED",
    );
    assert.equal(
      logCount(
        stack,
        new RegExp(`sent clipboard data, arg1: 0, arg2: 2, size ${png.length}$`),
        mark,
        "vdagent",
      ),
      1,
    );

    // The guest user's copy goes away: the host hears a RELEASE.
    mark = stack.logMark();
    since = relay.events.length;
    await stack.guestRelease("clipboard");
    await relay.waitEvent("guest-release", (e) => e.selection === CLIPBOARD, since);
    assert.equal(relay.session.guestOffer(CLIPBOARD), undefined);
    await stack.waitForLog(/sent clipboard release, arg1: 0,/, { since: mark, src: "vdagent" });

    // Nothing was dropped or adjusted on the way.
    assert.deepEqual(relay.events.filter((e) => e.kind === "diagnostic"), []);
    await relay.close();
  },
);

// ---- c. host → guest ------------------------------------------------------------------------

scenario(
  "createHostPipeline's grabs paste in the real guest: 5 000 B, 1 MiB, PNG, release (c)",
  async ({ stack, openRelay }) => {
    const relay = await openRelay();
    await relay.negotiated();

    // 5 000 bytes of text: one message in chunks of 2048 + 2048 + 932 bytes.
    const text = utf8Text(5000, 3);
    let mark = stack.logMark();
    let wireAt = relay.wire.length;
    relay.copy(CLIPBOARD, new Map([[TEXT, text]]));
    await guestTakesHostGrab(stack, mark);
    let paste = await stack.guestPaste();
    assert.ok(paste.ok, paste.stderr);
    assert.ok(sameBytes(paste.data, text), "the 5 000 bytes differ");
    const grab = await relay.waitWire("out", (p) => p.kind === "clipboard_grab", wireAt);
    assert.deepEqual(grab.payload, {
      kind: "clipboard_grab",
      selection: CLIPBOARD,
      serial: 0,
      types: [TEXT],
    });
    let sent = await relay.waitWire("out", (p) => p.kind === "clipboard", wireAt);
    assert.deepEqual(sent.chunks, [2048, 2048, 932]);
    assert.equal(
      logCount(stack, /received clipboard data, arg1: 0, arg2: 1, size 5000$/, mark, "vdagent"),
      1,
    );

    // 1 MiB of text.
    const big = utf8Text(1024 * 1024, 4);
    mark = stack.logMark();
    wireAt = relay.wire.length;
    relay.copy(CLIPBOARD, new Map([[TEXT, big]]));
    await guestTakesHostGrab(stack, mark);
    paste = await stack.guestPaste();
    assert.ok(paste.ok, paste.stderr);
    assert.ok(sameBytes(paste.data, big), "the 1 MiB differs");
    sent = await relay.waitWire("out", (p) => p.kind === "clipboard", wireAt);
    assert.equal(sent.chunks.length, Math.ceil((20 + 8 + big.length) / 2048));
    assert.equal(
      logCount(stack, /received clipboard data, arg1: 0, arg2: 1, size 1048576$/, mark, "vdagent"),
      1,
    );

    // A PNG: the guest offers image/png, and only that.
    const png = await makePng(160, 120, 5);
    mark = stack.logMark();
    relay.copy(CLIPBOARD, new Map([[PNG, png]]));
    await guestTakesHostGrab(stack, mark);
    const targets = await stack.guestTargets("clipboard");
    assert.ok(targets.includes("image/png"), targets.join(" "));
    assert.ok(!targets.includes("UTF8_STRING"), targets.join(" "));
    paste = await stack.guestPaste({ target: "image/png" });
    assert.ok(paste.ok, paste.stderr);
    assert.ok(sameBytes(paste.data, png), "the PNG differs");
    assert.equal(
      logCount(
        stack,
        new RegExp(`received clipboard data, arg1: 0, arg2: 2, size ${png.length}$`),
        mark,
        "vdagent",
      ),
      1,
    );

    // The host releases: the guest's selection is empty and its paste fails at once.
    mark = stack.logMark();
    relay.session.release(CLIPBOARD);
    await stack.waitForLog(/received clipboard release, arg1: 0,/, { since: mark, src: "vdagent" });
    await stack.waitForGuestOwner("clipboard", "none");
    paste = await stack.guestPaste({ timeoutMs: 5000 });
    assert.equal(paste.ok, false);
    assert.equal(paste.timedOut, false);
    assert.match(paste.stderr, /not available/);

    // A grab with no data behind it: the guest gets a RELEASE and its paste fails at once
    // instead of hanging (the agent waits forever for an answer of the type it asked for).
    mark = stack.logMark();
    relay.copy(CLIPBOARD, new Map([[TEXT, new Uint8Array(0)]]));
    await guestTakesHostGrab(stack, mark);
    paste = await stack.guestPaste({ timeoutMs: 5000 });
    assert.equal(paste.ok, false);
    assert.equal(paste.timedOut, false);
    assert.match(paste.stderr, /not available/);
    await stack.waitForLog(/received clipboard release, arg1: 0,/, { since: mark, src: "vdagent" });
    assert.equal(relay.session.hostOffer(CLIPBOARD), undefined);

    // Every host grab was accepted by serial.
    assert.equal(logCount(stack, /grab discard/), 0);
    assert.deepEqual(relay.events.filter((e) => e.kind === "diagnostic"), []);
    await relay.close();
  },
);

// ---- d. mouse -------------------------------------------------------------------------------

scenario(
  "createHostPipeline's mouse states arrive as uinput events in the real guest (d)",
  async ({ stack, openRelay }) => {
    const relay = await openRelay();
    await relay.negotiated();
    const abs = (code: number, value: number): InputEvent => ({ type: EV_ABS, code, value });
    const key = (code: number, value: number): InputEvent => ({ type: EV_KEY, code, value });
    const wheel = (value: number): InputEvent => ({ type: EV_REL, code: REL_WHEEL, value });
    const syn: InputEvent = { type: EV_SYN, code: SYN_REPORT, value: 0 };
    // The daemon reports what changed since the previous state, then a SYN.
    const steps: [MouseInput, InputEvent[]][] = [
      [{ x: 100, y: 200 }, [abs(ABS_X, 100), abs(ABS_Y, 200), syn]],
      [{ x: 100, y: 200, buttons: ["left"] }, [key(BTN_LEFT, 1), syn]],
      [{ x: 300, y: 200, buttons: ["left"] }, [abs(ABS_X, 300), syn]],
      [{ x: 300, y: 250 }, [abs(ABS_Y, 250), key(BTN_LEFT, 0), syn]],
      [{ x: 300, y: 250, buttons: ["right"] }, [key(BTN_RIGHT, 1), syn]],
      [{ x: 300, y: 250, buttons: MouseButton.MIDDLE }, [
        key(BTN_MIDDLE, 1),
        key(BTN_RIGHT, 0),
        syn,
      ]],
      [{ x: 300, y: 250 }, [key(BTN_MIDDLE, 0), syn]],
      [{ x: 300, y: 250, buttons: ["up"] }, [wheel(1), syn]],
      [{ x: 300, y: 250 }, [syn]],
      [{ x: 300, y: 250, buttons: ["down"] }, [wheel(-1), syn]],
      [{ x: 300, y: 250 }, [syn]],
      [{ x: 300, y: 250, buttons: ["side", "extra"] }, [key(BTN_SIDE, 1), key(BTN_EXTRA, 1), syn]],
      [{ x: 1023, y: 767 }, [
        abs(ABS_X, 1023),
        abs(ABS_Y, 767),
        key(BTN_SIDE, 0),
        key(BTN_EXTRA, 0),
        syn,
      ]],
    ];
    const wireAt = relay.wire.length;
    for (const [input] of steps) relay.session.mouse(input);
    const expected = steps.flatMap(([, events]) => events);
    // The last step ends with the only ABS_X 1023: once it is there, everything before is too.
    const events = await stack.waitForUinput(expected.length);
    await stack.waitForLog(/mouse-event: mon 0 1023x767/, { src: "vdagentd" });
    assert.deepEqual(stack.uinputEvents(), expected, JSON.stringify(events));
    assert.equal(
      relay.wire.slice(wireAt).filter((m) => m.payload.kind === "mouse_state").length,
      steps.length,
    );
    assert.equal(logCount(stack, /mouse-event: mon 0 /, 0, "vdagentd"), steps.length);
    assert.equal(logCount(stack, /mouse: btn-left down/, 0, "vdagentd"), 1);
    assert.equal(logCount(stack, /mouse: wheel-up/, 0, "vdagentd"), 1);
    assert.equal(logCount(stack, /mouse: wheel-down/, 0, "vdagentd"), 1);
    await relay.close();
  },
);

// ---- g (control). a second host that announces is a new client ------------------------------

scenario(
  "createHostPipeline announcing after another host gets a RELEASE and a serial reset (g)",
  async ({ stack, openRelay }) => {
    const a = await openRelay({ name: "A" });
    await a.negotiated();
    for (let i = 0; i < 3; i++) {
      const since = a.events.length;
      await stack.guestCopy(`guest copy ${i}`);
      await a.waitEvent("guest-grab", (e) => e.selection === CLIPBOARD, since);
      assert.deepEqual(a.session.guestOffer(CLIPBOARD), { serial: i, types: [TEXT] });
    }
    assert.deepEqual(a.grabSerials("in", CLIPBOARD), [0, 1, 2]);
    await a.close();
    await stack.waitForLog(/host disconnected|closed by the harness/, { src: "harness" });
    // The guest does not notice a host leaving.
    const mark = stack.logMark();
    await new Promise((resolve) => setTimeout(resolve, 200));
    assert.equal(logCount(stack, /./, mark, "vdagentd"), 0);

    // B is a fresh pipeline: it announces request=1, so the guest treats it as a new client.
    const b = await openRelay({ name: "B" });
    await b.negotiated();
    const release = await b.waitWire("in", (p) => p.kind === "clipboard_release", 0);
    assert.deepEqual(release.payload, { kind: "clipboard_release", selection: CLIPBOARD });
    assert.deepEqual(release.chunks, [24]);
    await stack.waitForLog(/sent clipboard release, arg1: 0,/, { since: mark, src: "vdagent" });
    assert.equal(logCount(stack, /sent client disconnected/, mark, "vdagentd"), 1);
    assert.equal(logCount(stack, /received client disconnected/, mark, "vdagent"), 1);
    assert.equal(logCount(stack, /New client connected/), 2);
    assert.equal(b.session.guestOffer(CLIPBOARD), undefined);
    // The user's text is still in the guest's clipboard, but the host cannot see it any more.
    const own = await stack.guestPaste();
    assert.equal(own.text, "guest copy 2");

    // The serials restarted: the guest's next grab carries 0, not 3.
    const since = b.events.length;
    await stack.guestCopy("guest copy after B");
    await b.waitEvent("guest-grab", (e) => e.selection === CLIPBOARD, since);
    assert.deepEqual(b.session.guestOffer(CLIPBOARD), { serial: 0, types: [TEXT] });
    assert.equal(decode(await b.session.request(CLIPBOARD, TEXT)), "guest copy after B");
    assert.deepEqual(b.grabSerials("in", CLIPBOARD), [0]);
    assert.equal(stack.hostConnections(), 2);
    await b.close();
  },
);

// ---- i. guest agent restart -----------------------------------------------------------------

scenario(
  "createHostPipeline recovers by itself when the real agent restarts (i)",
  async ({ stack, openRelay }) => {
    const relay = await openRelay();
    await relay.negotiated();
    // The host owns CLIPBOARD, the guest owns PRIMARY.
    let mark = stack.logMark();
    relay.copy(CLIPBOARD, new Map([[TEXT, encode("host text")]]));
    await guestTakesHostGrab(stack, mark);
    assert.equal((await stack.guestPaste()).text, "host text");
    let since = relay.events.length;
    await stack.guestCopy("guest primary", { selection: "primary" });
    await relay.waitEvent("guest-grab", (e) => e.selection === PRIMARY, since);

    mark = stack.logMark();
    since = relay.events.length;
    const wireAt = relay.wire.length;
    await stack.restartAgent();
    // The old daemon releases what the guest owned with a 1-byte RELEASE, accepted as such.
    const legacy = await relay.waitEvent(
      "diagnostic",
      (e) => e.diagnostic.code === "LEGACY_RELEASE",
      since,
    );
    assert.equal(legacy.diagnostic.selection, PRIMARY);
    await relay.waitEvent("guest-release", (e) => e.selection === PRIMARY, since);
    assert.equal(relay.session.guestOffer(PRIMARY), undefined);
    // The new daemon announces request=1; the session answers request=1 (a second announcement
    // is a restart) and grabs again, with serial 0.
    await relay.waitEvent("guest-caps", () => true, since);
    const reannounce = await relay.waitWire(
      "in",
      (p) => p.kind === "announce_capabilities",
      wireAt,
    );
    assert.deepEqual(reannounce.payload, {
      kind: "announce_capabilities",
      request: true,
      caps: [0x00038de7],
    });
    const answer = await relay.waitWire("out", (p) => p.kind === "announce_capabilities", wireAt);
    assert.deepEqual(answer.payload, {
      kind: "announce_capabilities",
      request: true,
      caps: relay.session.hostCaps,
    });
    const regrab = await relay.waitWire("out", (p) => p.kind === "clipboard_grab", wireAt);
    assert.deepEqual(regrab.payload, {
      kind: "clipboard_grab",
      selection: CLIPBOARD,
      serial: 0,
      types: [TEXT],
    });
    assert.equal(logCount(stack, /vdagentd quitting/, mark, "vdagentd"), 1);
    await stack.waitForLog(/New client connected/, { since: mark, src: "vdagentd" });

    // The host's grab is pasteable again.
    await guestTakesHostGrab(stack, mark);
    const paste = await stack.guestPaste();
    assert.ok(paste.ok, paste.stderr);
    assert.equal(paste.text, "host text");
    // The guest's copy reaches the host again, with the new daemon's next serial.
    since = relay.events.length;
    await stack.guestCopy("guest text after the restart");
    await relay.waitEvent("guest-grab", (e) => e.selection === CLIPBOARD, since);
    assert.deepEqual(relay.session.guestOffer(CLIPBOARD), { serial: 1, types: [TEXT] });
    assert.equal(
      decode(await relay.session.request(CLIPBOARD, TEXT)),
      "guest text after the restart",
    );
    assert.equal(logCount(stack, /grab discard/), 0);
    assert.deepEqual(
      relay.events.filter((e) => e.kind === "diagnostic").map((e) => e.diagnostic.code),
      ["LEGACY_RELEASE"],
    );
    await relay.close();
  },
);

scenario(
  "createHostPipeline's grab survives a restart of the real session agent (i, logout/login)",
  async ({ stack, openRelay }) => {
    const relay = await openRelay();
    await relay.negotiated();
    // The guest copies three times (serials 0, 1, 2), then the host copies.
    for (let i = 0; i < 3; i++) {
      const since = relay.events.length;
      await stack.guestCopy(`guest copy ${i}`);
      await relay.waitEvent("guest-grab", (e) => e.selection === CLIPBOARD, since);
    }
    let mark = stack.logMark();
    relay.copy(CLIPBOARD, new Map([[TEXT, encode("host text")]]));
    await guestTakesHostGrab(stack, mark);
    assert.equal((await stack.guestPaste()).text, "host text");

    // Only the session agent restarts, as when the guest user logs out and in: the daemon
    // closes and reopens its port and announces request=1 again, but keeps its serials (3)
    // unless the host answers request=1. Answered with request=0, as QEMU does, the session's
    // grab with serial 0 is discarded ("grab discard, serial 0 != session serial 3").
    mark = stack.logMark();
    const since = relay.events.length;
    const wireAt = relay.wire.length;
    await stack.restartSessionAgent();
    await relay.waitEvent("guest-caps", () => true, since);
    assert.equal(logCount(stack, /vdagentd quitting/, mark), 0, "the daemon kept running");
    const answer = await relay.waitWire("out", (p) => p.kind === "announce_capabilities", wireAt);
    assert.equal(answer.payload.kind === "announce_capabilities" && answer.payload.request, true);
    await stack.waitForLog(/New client connected/, { since: mark, src: "vdagentd" });
    // The session grabs again and the guest pastes the host's text, as after a full restart.
    await guestTakesHostGrab(stack, mark);
    const paste = await stack.guestPaste({ timeoutMs: 5000 });
    assert.ok(paste.ok, paste.stderr);
    assert.equal(paste.text, "host text");
    assert.equal(logCount(stack, /grab discard/, mark), 0);
    // The host's next copy is pasteable too.
    mark = stack.logMark();
    relay.copy(CLIPBOARD, new Map([[TEXT, encode("host text 2")]]));
    await guestTakesHostGrab(stack, mark);
    assert.equal((await stack.guestPaste()).text, "host text 2");
    assert.equal(logCount(stack, /grab discard/), 0);
    await relay.close();
  },
);
