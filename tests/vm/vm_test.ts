// The real Linux guest agent in a real QEMU guest (tests/vm/_vm.ts): the library over QEMU's own
// virtio-serial port, QEMU's qemu-vdagent chardev as the control that cannot migrate, and a live
// migration of the socket-chardev guest. Each scenario boots its own guests and asserts on what
// the guest user sees (xclip in the guest), on the uinput device and on the agent's log; a
// failing scenario prints every guest's log, console and QEMU's stderr.
//
// VDAGENT_VM decides what happens when QEMU, the kernel or the guest's binaries are missing
// (tests/vm/_gate.ts); `deno task test:vm` sets it to require. With VDAGENT_VM_REPORT=1 the
// timings are printed.
import assert from "node:assert/strict";
import {
  ClipboardType,
  createHostPipeline,
  type HostPipeline,
  Selection,
  type SessionDiagnostic,
} from "../../mod.ts";
import { prng } from "../_helpers.ts";
import { makePng } from "../interop/_png.ts";
import { requirePrerequisites, run, SANITIZE } from "./_gate.ts";
import {
  ABS_X,
  ABS_Y,
  BTN_LEFT,
  ensureGuestImage,
  EV_ABS,
  EV_KEY,
  type Guest,
  Guests,
  inputFrames,
  migrate,
  QmpError,
  sha256,
} from "./_vm.ts";
import { withDeadline } from "./_qmp.ts";

const TEXT = ClipboardType.UTF8_TEXT;
const PNG = ClipboardType.IMAGE_PNG;
const CLIPBOARD = Selection.CLIPBOARD;
const encode = (s: string) => new TextEncoder().encode(s);
const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms));

/** What spice-vdagentd 0.22 announces (see tests/interop/interop_test.ts). */
const LINUX_AGENT_CAPS = 0x00038de7;
const NOT_MIGRATABLE = "The vdagent chardev doesn't yet support migration";

/** With VDAGENT_VM_REPORT=1, prints a measured figure. */
function report(line: string): void {
  if (Deno.env.get("VDAGENT_VM_REPORT") !== "1") return;
  // deno-lint-ignore no-console
  console.error(`[vm] ${line}`);
}

const seconds = (ms: number) => `${(ms / 1000).toFixed(1)} s`;

/** Registers a scenario with its own guests; they are all stopped when it ends. */
function scenario(name: string, fn: (guests: Guests) => Promise<void>): void {
  if (!run) return;
  Deno.test({ name, ...SANITIZE }, async () => {
    requirePrerequisites();
    const t0 = performance.now();
    const guests = new Guests();
    try {
      await fn(guests);
    } catch (error) {
      // deno-lint-ignore no-console
      console.error(`\n=== ${name} failed ===\n${guests.dump()}\n`);
      throw error;
    } finally {
      await guests.stop();
      report(`${name}: ${seconds(performance.now() - t0)}`);
    }
  });
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

async function until(check: () => boolean, ms: number, what: string, guest: Guest): Promise<void> {
  const end = performance.now() + ms;
  while (!check()) {
    if (performance.now() > end) {
      throw new Error(`Timed out after ${ms} ms: ${what}\n${guest.logText(guest.mark() - 20)}`);
    }
    await sleep(10);
  }
}

/** `createHostPipeline` on a guest's agent socket, with the clipboard a test can drive. */
interface Host {
  pipeline: HostPipeline;
  /** What the session reported, in order. */
  events: ({ kind: "grab"; selection: number; types: readonly number[] } | {
    kind: "release";
    selection: number;
  })[];
  diagnostics: SessionDiagnostic[];
  /** The host copies: `provide` serves `data` as `type`, and the session grabs. */
  copy(selection: number, type: number, data: Uint8Array): void;
  /** Resolves with the guest's next grab of `selection` after event index `since`. */
  guestGrab(since: number, selection: number): Promise<readonly number[]>;
  close(): Promise<void>;
}

async function connectHost(guest: Guest): Promise<Host> {
  const conn = await Deno.connect({ transport: "unix", path: guest.vdagentSocket });
  const data = new Map<string, Uint8Array>();
  let closed: Promise<void> | undefined;
  const host: Omit<Host, "pipeline"> & { pipeline?: HostPipeline } = {
    events: [],
    diagnostics: [],
    copy(selection, type, bytes) {
      data.set(`${selection}/${type}`, bytes);
      host.pipeline!.session.grab(selection, [type]);
    },
    async guestGrab(since, selection) {
      let found: readonly number[] | undefined;
      await until(
        () => {
          const e = host.events.slice(since).find((e) =>
            e.kind === "grab" && e.selection === selection
          );
          found = e?.kind === "grab" ? e.types : undefined;
          return found !== undefined;
        },
        10_000,
        `the guest's grab of selection ${selection}`,
        guest,
      );
      return found!;
    },
    close() {
      closed ??= (async () => {
        try {
          await withDeadline(host.pipeline!.close(), 10_000, "pipeline.close()");
        } finally {
          try {
            conn.close();
          } catch { /* closed with the pipeline */ }
        }
      })();
      return closed;
    },
  };
  host.pipeline = createHostPipeline(conn, {
    clipboard: {
      onGuestGrab: (selection, types) => void host.events.push({ kind: "grab", selection, types }),
      onGuestRelease: (selection) => void host.events.push({ kind: "release", selection }),
      provide: (selection, type) => data.get(`${selection}/${type}`),
    },
    onDiagnostic: (d) => void host.diagnostics.push(d),
  });
  host.pipeline.done.catch(() => {});
  return host as Host;
}

// ---- the image --------------------------------------------------------------------------------

if (run) {
  Deno.test({ name: "the guest image builds, or comes from the cache", ...SANITIZE }, async () => {
    requirePrerequisites();
    const image = await ensureGuestImage();
    report(
      `image ${image.built ? "built" : "from the cache"} in ${seconds(image.ms)}: ` +
        `${image.kind} ${image.kernelVersion}, ${image.dir}`,
    );
    assert.ok(Deno.statSync(image.kernel).size > 1 << 20);
    assert.ok(Deno.statSync(image.initrd).size > 1 << 20);
  });
}

// ---- a. the library over the real virtio port --------------------------------------------------

scenario("a. createHostPipeline against the real agent over QEMU's virtio port", async (guests) => {
  const guest = await guests.boot("a");
  report(
    `a: ${guest.restored ? "restored" : "booted"} in ${seconds(guest.bootMs)} (${guest.accel})`,
  );
  const t0 = performance.now();
  const mark = guest.mark();
  const host = await connectHost(guest);
  const session = host.pipeline.session;
  try {
    // Caps: the guest's word, and the daemon took us for one new client.
    await until(() => session.guestCaps !== undefined, 15_000, "the guest's caps", guest);
    assert.deepEqual(session.guestCaps, [LINUX_AGENT_CAPS]);
    await guest.waitFor(/New client connected/, { since: mark, src: "vdagentd" });

    // The guest user copies UTF-8 text: the host fetches it byte for byte.
    const short = encode("héllo from the guest ✓ 日本語 𝄞");
    let since = host.events.length;
    await guest.copy(short);
    assert.deepEqual(await host.guestGrab(since, CLIPBOARD), [TEXT]);
    assert.deepEqual(await session.request(CLIPBOARD, TEXT), short);

    // The host copies: the guest user's xclip -o pastes it byte for byte.
    const fromHost = encode("hello from the host ✓ — ünïcödé");
    let m = guest.mark();
    host.copy(CLIPBOARD, TEXT, fromHost);
    await guest.waitFor(/received clipboard grab, arg1: 0/, { since: m, src: "vdagent" });
    await guest.waitForOwner("clipboard", "agent", { target: "UTF8_STRING" });
    let paste = await guest.paste();
    assert.ok(paste.ok, paste.stderr);
    assert.deepEqual(paste.bytes, fromHost);

    // 1 MiB of text, guest → host.
    let t = performance.now();
    const big = utf8Text(1 << 20, 1);
    await guest.put("/tmp/big.txt", big);
    since = host.events.length;
    await guest.copyFile("/tmp/big.txt");
    await host.guestGrab(since, CLIPBOARD);
    const got = await session.request(CLIPBOARD, TEXT);
    assert.equal(got.length, big.length);
    assert.equal(await sha256(got), await sha256(big));
    report(`a: 1 MiB text guest → host in ${Math.round(performance.now() - t)} ms (put included)`);

    // 1 MiB of text, host → guest.
    t = performance.now();
    const big2 = utf8Text(1 << 20, 2);
    m = guest.mark();
    host.copy(CLIPBOARD, TEXT, big2);
    await guest.waitFor(/received clipboard grab, arg1: 0/, { since: m, src: "vdagent" });
    await guest.waitForOwner("clipboard", "agent", { target: "UTF8_STRING" });
    paste = await guest.paste({ timeoutMs: 60_000 });
    assert.ok(paste.ok, paste.stderr);
    assert.equal(paste.size, big2.length);
    assert.equal(paste.sha256, await sha256(big2));
    report(`a: 1 MiB text host → guest in ${Math.round(performance.now() - t)} ms`);

    // A PNG, guest → host, offered as image/png only.
    t = performance.now();
    const png = await makePng(640, 600, 3); // RGB noise: about 1.1 MiB
    await guest.put("/tmp/a.png", png);
    since = host.events.length;
    await guest.copyFile("/tmp/a.png", { target: "image/png" });
    assert.deepEqual(await host.guestGrab(since, CLIPBOARD), [PNG]);
    assert.deepEqual(await session.request(CLIPBOARD, PNG), png);
    report(`a: ${png.length} B PNG guest → host in ${Math.round(performance.now() - t)} ms`);

    // A PNG, host → guest: the guest offers image/png and pastes it byte for byte.
    t = performance.now();
    const png2 = await makePng(600, 640, 4);
    m = guest.mark();
    host.copy(CLIPBOARD, PNG, png2);
    await guest.waitFor(/received clipboard grab, arg1: 0/, { since: m, src: "vdagent" });
    const targets = await guest.waitForOwner("clipboard", "agent", { target: "image/png" });
    paste = await guest.paste({ target: "image/png", timeoutMs: 60_000 });
    assert.ok(paste.ok, paste.stderr);
    assert.equal(paste.size, png2.length);
    assert.deepEqual(paste.bytes, png2);
    report(
      `a: ${png2.length} B PNG host → guest in ${Math.round(performance.now() - t)} ms ` +
        `(guest TARGETS ${targets.join(",")})`,
    );

    // The mouse: a press and a release at (100, 200) on the real uinput device.
    const capture = await guest.captureInput();
    try {
      assert.ok(session.mouse({ x: 100, y: 200, buttons: ["left"] }));
      assert.ok(session.mouse({ x: 100, y: 200, buttons: [] }));
      const events = await capture.waitFor((evs) => inputFrames(evs).length >= 2);
      const frames = inputFrames(events).map((f) => f.map((e) => [e.type, e.code, e.value]));
      assert.deepEqual(frames, [
        [[EV_ABS, ABS_X, 100], [EV_ABS, ABS_Y, 200], [EV_KEY, BTN_LEFT, 1]],
        [[EV_KEY, BTN_LEFT, 0]],
      ], `/dev/input/${capture.device}: ${JSON.stringify(frames)}`);
    } finally {
      await capture.stop();
    }

    // Nothing went wrong on either side.
    assert.equal(guest.find(/New client connected/, { since: mark }).length, 1);
    assert.deepEqual(guest.find(/grab discard/).map((l) => l.line), []);
    assert.deepEqual(host.diagnostics, []);

    // Closing the pipeline closes the socket: QEMU closes the guest's port, the daemon notices.
    m = guest.mark();
    await host.close();
    const lost = await guest.waitFor(/AIIEEE lost spice client connection/, {
      since: m,
      src: "vdagentd",
    });
    report(`a: the guest saw its port close: ${lost.line}`);
  } finally {
    await host.close();
  }
  report(`a: scenario after boot ${seconds(performance.now() - t0)}`);
});

// ---- e. the control: QEMU's own vdagent cannot migrate -----------------------------------------

scenario("e. QEMU's qemu-vdagent chardev refuses to migrate", async (guests) => {
  const [source, destination] = await Promise.all([
    guests.boot("c", { qemuVdagent: true }),
    guests.boot("d", { qemuVdagent: true, incoming: true }),
  ]);
  report(`e: booted in ${seconds(source.bootMs)} (${source.accel})`);
  // The guest's agent talks to QEMU's own agent: QEMU answered its caps (with request=0, so the
  // daemon logs no "New client connected") and passes QEMU's absolute pointer on. With no
  // graphical console QEMU sends display id 255, which the daemon rejects, and says so.
  let mark = source.mark();
  await source.qmp.execute("input-send-event", {
    events: [
      { type: "abs", data: { axis: "x", value: 16384 } },
      { type: "abs", data: { axis: "y", value: 16384 } },
    ],
  });
  await source.waitFor(/mouse event for unknown monitor 255/, { since: mark, src: "vdagentd" });
  assert.deepEqual(source.find(/New client connected/), []);
  const text = encode("the guest user's copy, kept across the refused migration");
  await source.copy(text);
  const pids = await source.agentPids();
  mark = source.mark();

  const error = await migrate(source, destination).then(
    () => assert.fail("the migration started"),
    (e: unknown) => e,
  );
  assert.ok(error instanceof QmpError, String(error));
  assert.equal(error.errorClass, "GenericError");
  assert.equal(error.desc, NOT_MIGRATABLE);
  const info = await source.qmp.execute<{ status?: string; "blocked-reasons"?: string[] }>(
    "query-migrate",
  );
  assert.deepEqual(info["blocked-reasons"], [NOT_MIGRATABLE]);
  assert.equal(info.status, undefined, "no migration was started");
  assert.equal(await source.status(), "running");
  assert.equal(await destination.status(), "inmigrate");

  // The guest did not notice: its user still pastes their copy, the agent runs on, unrestarted.
  const paste = await source.paste();
  assert.ok(paste.ok, paste.stderr);
  assert.deepEqual(paste.bytes, text);
  assert.deepEqual(await source.agentPids(), pids);
  assert.deepEqual(source.find(/AIIEEE|client disconnected|exited/, { since: mark }), []);
});

// ---- the migration plumbing -------------------------------------------------------------------

scenario("a live migration of a socket-chardev guest keeps the same agent", async (guests) => {
  const [source, destination] = await Promise.all([
    guests.boot("m1"),
    guests.boot("m2", { incoming: true }),
  ]);
  report(
    `migration: source ${source.restored ? "restored" : "booted"} in ${seconds(source.bootMs)}`,
  );
  const text = encode("copied on the source");
  await source.copy(text);
  const pids = await source.agentPids();
  const uptime = await source.uptime();
  const mark = source.mark();

  // A script runs in the guest while it migrates, another is asked for meanwhile: both are
  // answered, from the destination.
  const running = source.exec("sleep 1.5; echo slept");
  const migrating = migrate(source, destination);
  const asked = source.exec("echo asked during the migration");
  const migration = await migrating;
  assert.equal((await running).text, "slept\n");
  assert.equal((await asked).text, "asked during the migration\n");
  report(
    `migration: QEMU total ${migration.totalTimeMs} ms, downtime ${migration.downtimeMs} ms; ` +
      `command port on the destination ${
        Math.round(migration.handedOverMs - migration.completedMs)
      } ms after`,
  );
  assert.ok(migration.totalTimeMs > 0 && migration.downtimeMs > 0, JSON.stringify(migration.info));
  assert.equal(await source.status(), "postmigrate");
  assert.equal(await destination.status(), "running");
  assert.equal(source.state, "migrated");
  await assert.rejects(source.exec("true"), /migrated to m2/);

  // The same guest: same agent processes, its clock went on, its user's copy is still there.
  assert.deepEqual(await destination.agentPids(), pids);
  assert.ok(await destination.uptime() > uptime);
  const paste = await destination.paste();
  assert.ok(paste.ok, paste.stderr);
  assert.deepEqual(paste.bytes, text);
  // Its log goes on in the destination's file, after the source's lines.
  await destination.run("vm-log after the migration");
  const line = await destination.waitFor(/^after the migration$/, { since: mark, src: "note" });
  assert.equal(line.vm, "m2");
  assert.ok(destination.logLines().slice(0, mark).every((l) => l.vm === "m1"));
  assert.deepEqual(destination.find(/exited/, { src: "init" }), []);

  // Stopping a guest ends its QEMU and removes its temp dir.
  await source.stop();
  assert.equal(source.alive, false);
  assert.throws(() => Deno.statSync(source.dir), Deno.errors.NotFound);
});
