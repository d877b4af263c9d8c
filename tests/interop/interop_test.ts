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
  type CheckpointMode,
  ClipboardError,
  ClipboardType,
  decodeCheckpoint,
  describeCheckpoint,
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
  type GuestStackOptions,
  type InputEvent,
  pollUntil,
  REL_WHEEL,
  startGuestStack,
  SYN_REPORT,
} from "./_guest_stack.ts";
import { requireBinaries, run, SANITIZE } from "./_gate.ts";
import { makePng } from "./_png.ts";
import { type HandOff, openRelay, type Relay, type RelayOptions } from "./_relay.ts";

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
  /**
   * A continued hand-off: `from.handOff()`, then a relay on a new connection that restores the
   * checkpoint (`resume: "continued"`) and reads `from`'s unread bytes first.
   */
  handOff(
    from: Relay,
    options?: RelayOptions & { mode?: CheckpointMode },
  ): Promise<{ relay: Relay; handOff: HandOff }>;
}

/** Registers a scenario that runs in a fresh guest stack and reports the log if it fails. */
function scenario(
  name: string,
  fn: (context: Context) => Promise<void>,
  stackOptions: GuestStackOptions = {},
): void {
  if (!run) return;
  Deno.test({ name, ...SANITIZE }, async () => {
    requireBinaries();
    const stack = await startGuestStack(stackOptions);
    const relays: Relay[] = [];
    const open = async (options?: RelayOptions) => {
      const relay = await openRelay(stack, options);
      relays.push(relay);
      return relay;
    };
    try {
      await fn({
        stack,
        openRelay: open,
        handOff: async (from, options = {}) => {
          const { mode, ...relayOptions } = options;
          const handOff = await from.handOff(mode === undefined ? {} : { mode });
          const relay = await open({
            restore: handOff.checkpoint,
            resume: "continued",
            unread: handOff.unread,
            continues: from,
            ...relayOptions,
          });
          return { relay, handOff };
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

/** With VDAGENT_INTEROP_REPORT=1, prints a measured figure (for the README). */
function report(line: string): void {
  if (Deno.env.get("VDAGENT_INTEROP_REPORT") !== "1") return;
  // deno-lint-ignore no-console
  console.error(`[interop] ${line}`);
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

const selectionName = (selection: number) => selection === CLIPBOARD ? "clipboard" : "primary";

/** The guest user copies each text in turn on `selection`; each copy reaches `relay`. */
async function guestCopies(
  stack: GuestStack,
  relay: Relay,
  texts: string[],
  selection: number = CLIPBOARD,
): Promise<void> {
  for (const text of texts) {
    const since = relay.events.length;
    await stack.guestCopy(text, { selection: selectionName(selection) });
    await relay.waitEvent("guest-grab", (e) => e.selection === selection, since);
  }
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

// ---- e. hand-off with a checkpoint ----------------------------------------------------------

/**
 * Scenario e. With `restore: false`, relay B starts fresh instead of restoring A's checkpoint,
 * which must make it fail (see the control below).
 */
async function handOffWithCheckpoint(
  { stack, openRelay, handOff }: Context,
  restore = true,
): Promise<void> {
  const a = await openRelay({ name: "A" });
  await a.negotiated();
  await stack.waitForLog(/New client connected/, { src: "vdagentd" });
  // The guest copies three times (serials 0, 1, 2), A copies, the guest copies again (3).
  await guestCopies(stack, a, ["guest copy 0", "guest copy 1", "guest copy 2"]);
  assert.deepEqual(a.session.guestOffer(CLIPBOARD), { serial: 2, types: [TEXT] });
  let mark = stack.logMark();
  a.copy(CLIPBOARD, new Map([[TEXT, encode("A's text")]]));
  await guestTakesHostGrab(stack, mark);
  assert.equal((await stack.guestPaste()).text, "A's text");
  await guestCopies(stack, a, ["guest copy 3"]);
  assert.deepEqual(a.grabSerials("in", CLIPBOARD), [0, 1, 2, 3]);
  assert.deepEqual(a.grabSerials("out", CLIPBOARD), [2]);

  // A checkpoints and leaves; B restores without announcing.
  mark = stack.logMark();
  const next = restore
    ? await handOff(a, { name: "B" })
    : await a.handOff().then(async (h) => ({ handOff: h, relay: await openRelay({ name: "B" }) }));
  const b = next.relay;
  const state = decodeCheckpoint(next.handOff.checkpoint);
  assert.equal(state.mode, "lossless");
  assert.deepEqual(state.guestCaps, [0x00038de7]);
  assert.deepEqual(state.selections[CLIPBOARD], {
    lastSerial: 3,
    guestRequests: [],
    guestOffer: { serial: 3, types: [TEXT] },
    hostRequests: [],
  });

  // B knows what the guest user copied last, and fetches it.
  assert.deepEqual(
    b.session.guestOffer(CLIPBOARD),
    { serial: 3, types: [TEXT] },
    "B does not know what the guest user copied",
  );
  assert.equal(decode(await b.session.request(CLIPBOARD, TEXT)), "guest copy 3");

  // B's grab is accepted: the guest pastes B's text.
  const wireAt = b.wire.length;
  b.copy(CLIPBOARD, new Map([[TEXT, encode("B's text")]]));
  await guestTakesHostGrab(stack, mark);
  const paste = await stack.guestPaste();
  assert.ok(paste.ok, paste.stderr);
  assert.equal(paste.text, "B's text");
  assert.equal(logCount(stack, /grab discard/), 0, "the guest discarded a grab");
  assert.equal(logCount(stack, /New client connected/), 1, "the guest saw a new client");
  assert.equal(logCount(stack, /client disconnected/, mark), 0);
  // Serial 3, the guest's last: accepted as "client grab wins".
  const grab = await b.waitWire("out", (p) => p.kind === "clipboard_grab", wireAt);
  assert.deepEqual(grab.payload, {
    kind: "clipboard_grab",
    selection: CLIPBOARD,
    serial: 3,
    types: [TEXT],
  });
  await stack.waitForLog(/client grab wins/, { since: mark, src: "vdagentd" });

  // The guest's next copy reaches B with the next serial, and B fetches it.
  await guestCopies(stack, b, ["guest copy 4"]);
  assert.deepEqual(b.session.guestOffer(CLIPBOARD), { serial: 4, types: [TEXT] });
  assert.equal(decode(await b.session.request(CLIPBOARD, TEXT)), "guest copy 4");
  // B never announced, and nothing was lost on the way.
  assert.equal(b.wire.filter((m) => m.payload.kind === "announce_capabilities").length, 0);
  assert.deepEqual(b.events.filter((e) => e.kind === "diagnostic"), []);
  assert.equal(stack.hostConnections(), 2);
  assert.equal(logCount(stack, /New client connected/), 1);
  await b.close();
}

scenario(
  "createHostPipeline hands a live session to a relay that restores the checkpoint (e)",
  (context) => handOffWithCheckpoint(context),
);

// ---- f. hand-off while the guest pastes -----------------------------------------------------

/**
 * Scenario f: the guest's paste waits for A's data (A's provider never answers) when A hands
 * off; B's provider has `data` or nothing.
 */
async function handOffDuringPaste(
  { stack, openRelay, handOff }: Context,
  data: Uint8Array | undefined,
): Promise<void> {
  const a = await openRelay({ name: "A", provide: () => new Promise<undefined>(() => {}) });
  await a.negotiated();
  let mark = stack.logMark();
  a.copy(CLIPBOARD, new Map([[TEXT, encode("A's text, never sent")]]));
  await guestTakesHostGrab(stack, mark);
  mark = stack.logMark();
  const since = a.events.length;
  let settled = false;
  const pasting = stack.guestPaste({ timeoutMs: 15_000 }).finally(() => settled = true);
  await a.waitEvent("provide", (e) => e.selection === CLIPBOARD && e.type === TEXT, since);
  await stack.waitForLog(/sent clipboard request, arg1: 0, arg2: 1/, { since: mark });
  assert.equal(settled, false, "the paste did not wait for A");

  const t0 = performance.now();
  const { relay: b, handOff: h } = await handOff(a, { name: "B", provide: () => data });
  const restored = performance.now();
  const state = decodeCheckpoint(h.checkpoint);
  assert.deepEqual(state.selections[CLIPBOARD]?.guestRequests, [TEXT]);
  assert.deepEqual(state.selections[CLIPBOARD]?.hostOffer, [TEXT]);
  const paste = await pasting;
  const done = performance.now();
  report(
    `f (${data === undefined ? "no data" : "data"}): checkpoint ${h.checkpointMs.toFixed(1)} ms, ` +
      `hand-off ${(restored - t0).toFixed(1)} ms, paste done ${(done - restored).toFixed(1)} ms ` +
      `after B started, ${(done - t0).toFixed(1)} ms after the hand-off began ` +
      `(the paste had waited ${(paste.elapsedMs - (done - t0)).toFixed(0)} ms on A)`,
  );
  // B's provider was asked once, for the paste A had taken.
  assert.deepEqual(b.events.filter((e) => e.kind === "provide"), [
    { kind: "provide", selection: CLIPBOARD, type: TEXT },
  ]);
  assert.equal(paste.timedOut, false);
  assert.ok(done - t0 < 2000, `the paste took ${done - t0} ms after the hand-off began`);
  if (data !== undefined) {
    assert.ok(paste.ok, paste.stderr);
    assert.ok(sameBytes(paste.data, data));
    await stack.waitForLog(
      new RegExp(`received clipboard data, arg1: 0, arg2: 1, size ${data.length}$`),
      { since: mark, src: "vdagent" },
    );
    assert.equal(b.session.hostOffer(CLIPBOARD)?.[0], TEXT);
  } else {
    // A release: xclip fails at once, and B no longer owns the selection.
    assert.equal(paste.ok, false);
    assert.match(paste.stderr, /not available/);
    await stack.waitForLog(/received clipboard release, arg1: 0,/, { since: mark, src: "vdagent" });
    assert.equal(b.session.hostOffer(CLIPBOARD), undefined);
  }
  assert.equal(logCount(stack, /no corresponding request found/), 0);
  assert.equal(logCount(stack, /New client connected/), 1);
  assert.equal(b.wire.filter((m) => m.payload.kind === "announce_capabilities").length, 0);
  await b.close();
}

scenario(
  "createHostPipeline hands off a guest paste waiting for data; B's provider answers (f)",
  (context) => handOffDuringPaste(context, encode("B's text, for A's paste")),
);

scenario(
  "createHostPipeline hands off a guest paste waiting for data; B has none, the paste fails (f)",
  (context) => handOffDuringPaste(context, undefined),
);

// ---- g. controls: the hand-off tests can fail -----------------------------------------------

scenario(
  "createHostPipeline announcing after another host gets a RELEASE and a serial reset (g)",
  async ({ stack, openRelay }) => {
    const a = await openRelay({ name: "A" });
    await a.negotiated();
    for (let i = 0; i < 3; i++) {
      await guestCopies(stack, a, [`guest copy ${i}`]);
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
    await guestCopies(stack, b, ["guest copy after B"]);
    assert.deepEqual(b.session.guestOffer(CLIPBOARD), { serial: 0, types: [TEXT] });
    assert.equal(decode(await b.session.request(CLIPBOARD, TEXT)), "guest copy after B");
    assert.deepEqual(b.grabSerials("in", CLIPBOARD), [0]);
    assert.equal(stack.hostConnections(), 2);
    await b.close();
  },
);

scenario(
  "createHostPipeline without the restore fails scenario e: relay B is a new client (g)",
  async (context) => {
    // B announces (request=1): the guest treats it as a new client and releases what its user
    // had copied, so B cannot fetch it. (B's grab would still paste, with serials restarted at 0
    // on both sides, but the log shows a second client.)
    await assert.rejects(
      () => handOffWithCheckpoint(context, false),
      (error: Error) => {
        assert.match(error.message, /B does not know what the guest user copied/);
        return true;
      },
    );
    const { stack } = context;
    await pollUntil(() => logCount(stack, /New client connected/) === 2, 5000, "B's new client");
    await stack.waitForLog(/sent clipboard release, arg1: 0/, { src: "vdagent" });
    assert.equal(logCount(stack, /sent client disconnected/, 0, "vdagentd"), 1);
  },
);

scenario(
  "createHostPipeline restoring a stale checkpoint has its grab discarded by the real agent (g)",
  async ({ stack, openRelay, handOff }) => {
    // The control for e: B neither announces nor restores the current state. No public API
    // makes such a session, so B restores a checkpoint A emitted right after negotiation, before
    // the guest's copies: B's serials are 0 where the guest's are 3.
    const a = await openRelay({ name: "A", checkpoints: { continuous: true } });
    await a.negotiated();
    const reader = a.pipeline.checkpoints.readable.getReader();
    const stale = (await reader.read()).value!; // the latest: an unread one is replaced
    reader.releaseLock();
    assert.deepEqual(describeCheckpoint(stale).selections.map((s) => s.lastSerial), [0, 0, 0]);
    assert.deepEqual(decodeCheckpoint(stale).guestCaps, [0x00038de7]);
    await guestCopies(stack, a, ["guest copy 0", "guest copy 1", "guest copy 2"]);
    assert.deepEqual(a.grabSerials("in", CLIPBOARD), [0, 1, 2]);

    const mark = stack.logMark();
    const { relay: b } = await handOff(a, { name: "B", restore: stale });
    assert.equal(b.session.guestOffer(CLIPBOARD), undefined);
    const wireAt = b.wire.length;
    b.copy(CLIPBOARD, new Map([[TEXT, encode("B's text")]]));
    const grab = await b.waitWire("out", (p) => p.kind === "clipboard_grab", wireAt);
    assert.equal(grab.payload.kind === "clipboard_grab" && grab.payload.serial, 0);
    // The agent discards it silently; the guest user still pastes their own old text.
    await stack.waitForLog(/grab discard, serial 0 != session serial 3/, {
      since: mark,
      src: "vdagentd",
    });
    assert.equal(logCount(stack, /received clipboard grab/, mark, "vdagent"), 0);
    assert.equal(await stack.guestOwner("clipboard"), "xclip");
    const paste = await stack.guestPaste();
    assert.ok(paste.ok, paste.stderr);
    assert.equal(paste.text, "guest copy 2");
    assert.equal(b.events.filter((e) => e.kind === "provide").length, 0);
    assert.equal(logCount(stack, /New client connected/), 1);
    assert.equal(b.wire.filter((m) => m.payload.kind === "announce_capabilities").length, 0);
    await b.close();
  },
);

// ---- h. twenty hand-offs under copying on both sides ----------------------------------------

/**
 * The Linux agent's grab serial rule (measured, see the README): a guest grab carries the
 * daemon's counter and advances it; a host grab is accepted if its serial equals the counter
 * (which then advances) or the counter minus one ("client grab wins"). HostSession sends the
 * serial after the last one it saw or sent. Returns the serials the wire must carry.
 */
class SerialModel {
  readonly daemon = [0, 0, 0];
  readonly host = [0, 0, 0];
  readonly expected: { dir: "in" | "out"; selection: number; serial: number }[] = [];

  guestGrab(selection: number): number {
    const serial = this.daemon[selection]!;
    this.daemon[selection] = serial + 1;
    this.host[selection] = serial;
    this.expected.push({ dir: "in", selection, serial });
    return serial;
  }

  hostGrab(selection: number): number {
    const serial = this.host[selection]!;
    const counter = this.daemon[selection]!;
    if (serial === counter) this.daemon[selection] = counter + 1;
    else if (serial !== counter - 1) throw new Error(`the agent would discard serial ${serial}`);
    this.host[selection] = serial + 1;
    this.expected.push({ dir: "out", selection, serial });
    return serial;
  }
}

scenario(
  "createHostPipeline survives twenty hand-offs while both sides copy (h)",
  async ({ stack, openRelay, handOff }) => {
    const ROUNDS = 20;
    // Every relay serves the host's copies from the same place, as relays of one host would.
    const hostData = new Map<string, Uint8Array>();
    const provide = (selection: number, type: number) => hostData.get(`${selection}/${type}`);
    let relay = await openRelay({ name: "R0", provide });
    const relays = [relay];
    await relay.negotiated();
    const model = new SerialModel();
    const where: string[] = [];
    let unread = 0, inbound = 0, outbound = 0, guestOffersCarried = 0, partial = 0;
    const t0 = performance.now();
    for (let i = 0; i < ROUNDS; i++) {
      // The guest copies on one selection while the host copies on the other, and the relay
      // hands off while their grabs are on the way: right away (0), once the daemon passes the
      // guest's grab to the port (1), once the relay has it (2), or once the relay has read
      // only the first `cut` bytes of it, with the host's grab made on the next relay (3).
      const selG = i % 2 === 0 ? CLIPBOARD : PRIMARY;
      const selH = i % 2 === 0 ? PRIMARY : CLIPBOARD;
      const guestText = `guest copy ${i} ✓`;
      const hostText = encode(`host copy ${i} ✓`);
      const variant = i % 4;
      const cut = [1, 8, 13, 33][(i >> 2) % 4]!; // in the chunk header, after it, in the message
      const mark = stack.logMark();
      const since = relay.events.length;
      const read = relay.bytesRead();
      const guestSerial = model.guestGrab(selG);
      hostData.set(`${selH}/${TEXT}`, hostText);
      if (variant === 3) relay.limitReads(cut);
      const copying = stack.guestCopy(guestText, { selection: selectionName(selG) });
      if (variant !== 3) relay.session.grab(selH, [TEXT]);
      if (variant === 1) {
        await stack.waitForLog(new RegExp(`received clipboard grab, arg1: ${selG},`), {
          since: mark,
          src: "vdagentd",
        });
      } else if (variant === 2) {
        await relay.waitEvent("guest-grab", (e) => e.selection === selG, since);
      } else if (variant === 3) {
        const from = relay;
        await pollUntil(() => from.bytesRead() === read + cut, 10_000, `round ${i}: ${cut} bytes`);
      }
      const next = await handOff(relay, { name: `R${i + 1}`, provide });
      const state = decodeCheckpoint(next.handOff.checkpoint);
      if (variant === 3) {
        // The part of the grab's 40 bytes the relay read is in the checkpoint, the rest was
        // still in its socket: the next relay gets both, in order.
        assert.equal(state.wire?.inbound.length, cut);
        assert.equal(next.handOff.unread.length, 40 - cut);
        partial++;
      }
      unread += next.handOff.unread.length;
      inbound += state.wire?.inbound.length ?? 0;
      outbound += state.wire?.outbound.length ?? 0;
      if (state.selections[selG]?.guestOffer?.serial === guestSerial) guestOffersCarried++;
      relay = next.relay;
      relays.push(relay);
      if (variant === 3) relay.session.grab(selH, [TEXT]);
      const hostSerial = model.hostGrab(selH);
      await copying;

      // The guest's copy reached the relay now in charge, with the expected serial.
      const current = relay;
      await pollUntil(
        () => current.session.guestOffer(selG)?.serial === guestSerial,
        10_000,
        `round ${i}: the guest's grab with serial ${guestSerial} on ${current.name}`,
      );
      where.push(relays.find((r) => r.grabSerials("in", selG).includes(guestSerial))!.name);
      assert.equal(decode(await relay.session.request(selG, TEXT)), guestText);
      // The host's copy reached the guest: its user pastes it.
      await guestTakesHostGrab(stack, mark, selH);
      const paste = await stack.guestPaste({ selection: selectionName(selH) });
      assert.ok(paste.ok, `round ${i}: ${paste.stderr}`);
      assert.ok(sameBytes(paste.data, hostText), `round ${i}: pasted ${paste.text}`);
      const hostGrab = [...relays.at(-2)!.wire, ...relay.wire].findLast((m) =>
        m.dir === "out" && m.payload.kind === "clipboard_grab" && m.payload.selection === selH
      );
      assert.deepEqual(hostGrab?.payload, {
        kind: "clipboard_grab",
        selection: selH,
        serial: hostSerial,
        types: [TEXT],
      });
    }
    const elapsed = performance.now() - t0;

    // Every grab crossed the wire once, with the serials the agent's rule gives, in order.
    const grabs = relays.flatMap((r) => r.wire).flatMap((m) =>
      m.payload.kind === "clipboard_grab"
        ? [{ dir: m.dir, selection: m.payload.selection, serial: m.payload.serial }]
        : []
    );
    const bySelection = (list: typeof grabs, selection: number) =>
      list.filter((g) => g.selection === selection);
    for (const selection of [CLIPBOARD, PRIMARY]) {
      assert.deepEqual(
        bySelection(grabs, selection),
        bySelection(model.expected, selection),
        `the grabs of selection ${selection}`,
      );
    }
    assert.equal(grabs.length, 2 * ROUNDS);
    assert.equal(logCount(stack, /grab discard/), 0);
    assert.equal(logCount(stack, /New client connected/), 1);
    assert.equal(logCount(stack, /client disconnected|no corresponding request/), 0);
    assert.equal(stack.hostConnections(), ROUNDS + 1);
    for (const r of relays) {
      assert.deepEqual(r.events.filter((e) => e.kind === "diagnostic"), [], r.name);
      if (r !== relays[0]) {
        assert.equal(r.wire.filter((m) => m.payload.kind === "announce_capabilities").length, 0);
      }
    }
    report(
      `h: ${ROUNDS} hand-offs in ${elapsed.toFixed(0)} ms; guest grabs received by the relay ` +
        `before the hand-off ${where.filter((w, i) => w === `R${i}`).length}, after ` +
        `${where.filter((w, i) => w === `R${i + 1}`).length}; checkpoints carried ` +
        `${guestOffersCarried} guest offers, ${inbound} inbound and ${outbound} outbound bytes ` +
        `(${partial} hand-offs in the middle of a guest grab); ${unread} unread bytes handed on`,
    );
    await relay.close();
  },
);

// ---- reconnected transport ------------------------------------------------------------------

scenario(
  "createHostPipeline resumes after the real guest's port closed and reopened (reconnected)",
  async ({ stack, openRelay }) => {
    let stall = false;
    const a = await openRelay({
      name: "A",
      provide: () => stall ? new Promise<undefined>(() => {}) : encode("A's text"),
    });
    await a.negotiated();
    await guestCopies(stack, a, ["guest copy 0", "guest copy 1"]);
    let mark = stack.logMark();
    a.session.grab(CLIPBOARD, [TEXT]);
    await guestTakesHostGrab(stack, mark);
    assert.equal((await stack.guestPaste()).text, "A's text");
    await guestCopies(stack, a, ["guest primary 0"], PRIMARY);
    assert.deepEqual(a.grabSerials("in", CLIPBOARD), [0, 1]);
    assert.deepEqual(a.grabSerials("out", CLIPBOARD), [1]);
    assert.deepEqual(a.grabSerials("in", PRIMARY), [0]);

    // In flight at the hand-off: the guest pastes A's text, which A never sends, and A asks
    // for the guest's PRIMARY, whose owner is frozen.
    stall = true;
    mark = stack.logMark();
    const since = a.events.length;
    const pasting = stack.guestPaste({ timeoutMs: 15_000 });
    await a.waitEvent("provide", (e) => e.selection === CLIPBOARD, since);
    stack.guestSignalOwner("primary", "SIGSTOP");
    const aRequest = a.session.request(PRIMARY, TEXT);
    aRequest.catch(() => {}); // asserted below
    await stack.waitForLog(/received clipboard request, arg1: 1, arg2: 1/, {
      since: mark,
      src: "vdagent",
    });

    const { checkpoint } = await a.handOff();
    await assert.rejects(aRequest, (e) => e instanceof ClipboardError && e.code === "CLOSED");
    const state = decodeCheckpoint(checkpoint);
    assert.deepEqual(state.selections[CLIPBOARD]?.guestRequests, [TEXT]);
    assert.deepEqual(state.selections[CLIPBOARD]?.hostOffer, [TEXT]);
    assert.deepEqual(state.selections[PRIMARY]?.hostRequests, [TEXT]);
    assert.deepEqual(state.selections[PRIMARY]?.guestOffer, { serial: 0, types: [TEXT] });

    // The guest's port closes and reopens. The agent gives up the paste at once (xclip fails),
    // answers the host's request with no data, releases what its user had offered, and forgets
    // the host's grab: with no host connected, the guest's CLIPBOARD has no owner.
    mark = stack.logMark();
    assert.deepEqual(await stack.reconnectTransport(), { guestNoticed: true });
    const lost = await stack.waitForLog(/lost spice client connection/, {
      since: mark,
      src: "vdagentd",
    });
    await stack.waitForLog(/received client disconnected/, { since: mark, src: "vdagent" });
    const paste = await pasting;
    assert.equal(paste.ok, false);
    assert.equal(paste.timedOut, false);
    assert.match(paste.stderr, /not available/);
    const failed = await stack.waitForLog(/not available/, {
      since: mark,
      src: "xclip-o:clipboard",
    });
    await stack.waitForLog(/sent clipboard data, arg1: 1, arg2: 0, size 0$/, {
      since: mark,
      src: "vdagent",
    });
    await stack.waitForLog(/sent clipboard release, arg1: 1,/, { since: mark, src: "vdagent" });
    assert.equal(logCount(stack, /sent clipboard release, arg1: 0,/, mark, "vdagent"), 0);
    assert.equal(await stack.guestOwner("clipboard"), "none");
    const noHost = await stack.guestPaste({ timeoutMs: 5000 });
    assert.equal(noHost.ok, false);
    assert.equal(noHost.timedOut, false);
    report(
      `reconnected: the guest gave up its pending paste ${(failed.t - lost.t).toFixed(1)} ms ` +
        "after its port closed",
    );

    // The agent kept its serials and does not announce itself: a copy the guest user makes now
    // carries PRIMARY's serial 1 and waits for the next host. (A pty keeps what the guest
    // writes while no host is there; QEMU would drop it.)
    await stack.guestCopy("guest primary in between", { selection: "primary" });
    await stack.waitForLog(/received clipboard grab, arg1: 1,/, { since: mark, src: "vdagentd" });

    // B restores with resume: "reconnected". It announces itself with request=1, as QEMU does
    // when the guest opens its port, because a guest grab lost with the old port would have
    // moved the agent's serials past the checkpoint's (see the next scenario): the agent
    // answers, releases the copy made in between and resets its serials; B grabs again with 0.
    mark = stack.logMark();
    const b = await openRelay({
      name: "B",
      restore: checkpoint,
      resume: "reconnected",
      provide: () => encode("B's text"),
    });
    assert.equal(b.session.guestOffer(PRIMARY), undefined);
    assert.deepEqual(
      b.session.resumedRequests.map((r) => [r.selection, r.type]),
      [[PRIMARY, TEXT]],
    );
    await assert.rejects(
      b.session.resumedRequests[0]!.result,
      (e) => e instanceof ClipboardError && e.code === "NO_DATA",
    );
    await guestTakesHostGrab(stack, mark);
    const pasteB = await stack.guestPaste();
    assert.ok(pasteB.ok, pasteB.stderr);
    assert.equal(pasteB.text, "B's text");
    const sent = b.wire.filter((m) => m.dir === "out").map((m) => m.payload);
    assert.deepEqual(sent.slice(0, 2), [
      { kind: "announce_capabilities", request: true, caps: a.session.hostCaps },
      { kind: "clipboard_grab", selection: CLIPBOARD, serial: 0, types: [TEXT] },
    ]);
    // What the guest sent since its port reopened: the answer to A's request and the release of
    // PRIMARY, the copy made in between with serial 1, then, for B's announcement, its caps and
    // the release of that copy, then the paste.
    assert.deepEqual(b.wire.filter((m) => m.dir === "in").map((m) => m.payload), [
      { kind: "clipboard", selection: PRIMARY, type: 0, data: new Uint8Array(0) },
      { kind: "clipboard_release", selection: PRIMARY },
      { kind: "clipboard_grab", selection: PRIMARY, serial: 1, types: [TEXT] },
      { kind: "announce_capabilities", request: false, caps: [0x00038de7] },
      { kind: "clipboard_release", selection: PRIMARY },
      { kind: "clipboard_request", selection: CLIPBOARD, type: TEXT },
    ]);

    // The guest user's PRIMARY is still theirs in X, but the host has to hear of it again.
    stack.guestSignalOwner("primary", "SIGCONT");
    assert.equal(
      (await stack.guestPaste({ selection: "primary" })).text,
      "guest primary in between",
    );
    await guestCopies(stack, b, ["guest primary 1"], PRIMARY);
    assert.deepEqual(b.session.guestOffer(PRIMARY), { serial: 0, types: [TEXT] });
    assert.equal(decode(await b.session.request(PRIMARY, TEXT)), "guest primary 1");
    // The guest's next copy reaches B with the serial after B's grab.
    await guestCopies(stack, b, ["guest copy 2"]);
    assert.deepEqual(b.session.guestOffer(CLIPBOARD), { serial: 1, types: [TEXT] });
    assert.equal(decode(await b.session.request(CLIPBOARD, TEXT)), "guest copy 2");

    // The guest never announced itself; B's announcement made it log a second client.
    assert.equal(logCount(stack, /New client connected/), 2);
    assert.equal(logCount(stack, /sent client disconnected/, 0, "vdagentd"), 2);
    assert.equal(logCount(stack, /grab discard|no corresponding request/), 0);
    assert.equal(
      b.wire.filter((m) => m.dir === "in" && m.payload.kind === "announce_capabilities").length,
      1,
    );
    assert.deepEqual(b.events.filter((e) => e.kind === "diagnostic"), []);
    assert.equal(b.events.filter((e) => e.kind === "provide").length, 1);
    await b.close();
  },
);

scenario(
  "createHostPipeline's grab is accepted after a reconnect that lost a guest grab (reconnected)",
  async ({ stack, openRelay }) => {
    // A reconnected transport drops the bytes in flight. A guest grab among them still
    // advanced the agent's serial counter, past the serial in A's checkpoint.
    const a = await openRelay({ name: "A" });
    await a.negotiated();
    await guestCopies(stack, a, ["guest primary 0"], PRIMARY);
    const { checkpoint } = await a.handOff();
    assert.equal(decodeCheckpoint(checkpoint).selections[PRIMARY].lastSerial, 0);
    // The guest user copies again before the port closes: the grab (serial 1, 40 bytes) reaches
    // the port while no host reads it, and is lost with it.
    const pending = stack.pendingGuestBytes();
    await stack.guestCopy("guest primary 1", { selection: "primary" });
    await pollUntil(() => stack.pendingGuestBytes() === pending + 40, 10_000, "the guest's grab");
    let mark = stack.logMark();
    assert.deepEqual(await stack.reconnectTransport(), { guestNoticed: true });
    await stack.waitForLog(/sent clipboard release, arg1: 1,/, { since: mark, src: "vdagent" });

    // The host user copies on B: the guest must take it.
    mark = stack.logMark();
    const b = await openRelay({ name: "B", restore: checkpoint, resume: "reconnected" });
    b.copy(PRIMARY, new Map([[TEXT, encode("B's primary")]]));
    const decided = await stack.waitForLog(/grab discard|sent clipboard grab, arg1: 1,/, {
      since: mark,
      src: "vdagentd",
    });
    assert.doesNotMatch(decided.line, /grab discard/, "the agent discarded B's grab");
    await guestTakesHostGrab(stack, mark, PRIMARY);
    const paste = await stack.guestPaste({ selection: "primary" });
    assert.ok(paste.ok, paste.stderr);
    assert.equal(paste.text, "B's primary");
    // B announced itself, as QEMU does when the guest opens its port: serials restart at 0.
    const grab = await b.waitWire("out", (p) => p.kind === "clipboard_grab", 0);
    assert.deepEqual(grab.payload, {
      kind: "clipboard_grab",
      selection: PRIMARY,
      serial: 0,
      types: [TEXT],
    });
    assert.equal(logCount(stack, /New client connected/), 2);
    await guestCopies(stack, b, ["guest primary 2"], PRIMARY);
    assert.deepEqual(b.session.guestOffer(PRIMARY), { serial: 1, types: [TEXT] });
    assert.equal(decode(await b.session.request(PRIMARY, TEXT)), "guest primary 2");
    assert.equal(logCount(stack, /grab discard/), 0);
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
