// vdagent-relay (scripts/relay.ts) as a subprocess, over its standard input and output, against
// an in-process guest agent on a unix socket (tests/cli/_guest_port.ts). Deno only.
import { test } from "node:test";
import assert from "node:assert/strict";
import { Buffer } from "node:buffer";
import { Capability, ClipboardType, hasCapability } from "../../mod.ts";
import { prng, randBytes } from "../_helpers.ts";
import { RelayProcess } from "./_relay_process.ts";
import { withRelay } from "./_with_relay.ts";

const TEXT = ClipboardType.UTF8_TEXT;
const PNG = ClipboardType.IMAGE_PNG;
const encode = (s: string) => new TextEncoder().encode(s);
const decode = (b: Uint8Array) => new TextDecoder().decode(b);
const base64 = (bytes: Uint8Array) => btoa(String.fromCharCode(...bytes));

test("vdagent-relay negotiates and relays the clipboard both ways, and the mouse", async () => {
  await withRelay(async (port, start) => {
    const relay = start();
    const caps = await relay.next("caps");
    assert.deepEqual(caps, {
      event: "caps",
      caps: ["0x00038de7"],
      selections: true,
      serials: true,
    });
    assert.deepEqual(relay.events[0], {
      event: "started",
      mode: "fresh",
      connect: `unix:${port.path}`,
    });
    assert.match(relay.stderr, /starting fresh on unix:.* \(no --state\): announcing to the guest/);

    // Guest → host: the guest copies, the relay reports the offer, a paste fetches it.
    port.data.set(`0/${TEXT}`, encode("copied in the guest ✓"));
    port.guest.session.grab(0, [TEXT, PNG]);
    const offer = await relay.next("offer");
    assert.deepEqual(offer, {
      event: "offer",
      selection: "clipboard",
      mimes: ["text/plain;charset=utf-8", "image/png"],
      serial: 0,
    });
    // The guest told its caps twice (its own announcement, then its answer to the relay's): the
    // same caps are told once.
    assert.deepEqual(relay.events.map((e) => e.event), ["started", "caps", "offer"]);
    await relay.send({ cmd: "paste", id: 1 });
    assert.deepEqual(await relay.answer(1), {
      event: "data",
      id: 1,
      selection: "clipboard",
      mime: "text/plain;charset=utf-8",
      bytes: 23,
      text: "copied in the guest ✓",
    });
    // The guest has no PNG for it: type NONE comes back as NO_DATA.
    await relay.send({ cmd: "paste", id: "png", mime: "image/png" });
    const none = await relay.answer("png");
    assert.equal(none.event, "error");
    assert.equal(none.code, "NO_DATA");

    // Host → guest: text into PRIMARY, an image into CLIPBOARD.
    await relay.send({ cmd: "copy", id: 2, selection: "primary", text: "from the relay" });
    assert.deepEqual(await relay.answer(2), { event: "ok", id: 2, cmd: "copy" });
    await port.until(() => port.guest.session.hostOffer(1) !== undefined, "host grab of PRIMARY");
    assert.equal(decode(await port.guest.session.request(1, TEXT)), "from the relay");
    await relay.next("served", (e) => e.selection === "primary");
    const image = randBytes(prng(7), 5000);
    await relay.send({ cmd: "copy", id: 3, mime: "image/png", base64: base64(image) });
    await relay.answer(3);
    await port.until(() => port.guest.session.hostOffer(0)?.types[0] === PNG, "host grab of PNG");
    assert.deepEqual(await port.guest.session.request(0, PNG), image);

    // Release: the guest hears it.
    await relay.send({ cmd: "release", id: 4, selection: "primary" });
    await relay.answer(4);
    await port.until(
      () => port.events.some((e) => e.kind === "host-release" && e.selection === 1),
      "the host's release",
    );

    // Mouse, buttons by name.
    await relay.send({ cmd: "mouse", id: 5, x: 100, y: 200, buttons: ["left", "right"] });
    await relay.answer(5);
    await port.until(() => port.events.some((e) => e.kind === "mouse"), "mouse");
    assert.deepEqual(port.events.find((e) => e.kind === "mouse"), {
      kind: "mouse",
      x: 100,
      y: 200,
      buttons: 2 | 8,
      display: 0,
    });

    // The guest releases its copy.
    port.guest.session.release(0);
    assert.deepEqual(await relay.next("release"), {
      event: "release",
      selection: "clipboard",
      by: "guest",
    });
    assert.deepEqual(relay.junk, []);
  });
});

test("vdagent-relay maps text/uri-list to FILE_LIST and back", async () => {
  await withRelay(async (port, start) => {
    const relay = start();
    await relay.next("caps");
    await relay.send({
      cmd: "copy",
      id: 1,
      mime: "text/uri-list",
      action: "cut",
      text: "# two files\r\nfile:///docs/a%20b.txt\r\nfile:///docs/%C3%A9t%C3%A9.pdf\r\n",
    });
    await relay.answer(1);
    await port.until(() => port.guest.session.hostOffer(0) !== undefined, "host grab");
    assert.equal(
      decode(await port.guest.session.request(0, ClipboardType.FILE_LIST)),
      "cut\0/docs/a b.txt\0/docs/été.pdf",
    );
    port.data.set(`0/${ClipboardType.FILE_LIST}`, encode("copy\0/share/x y.png\0"));
    port.guest.session.grab(0, [ClipboardType.FILE_LIST]);
    await relay.next("offer", (e) => (e.mimes as string[])[0] === "text/uri-list");
    await relay.send({ cmd: "paste", id: 2 });
    assert.deepEqual(await relay.answer(2), {
      event: "data",
      id: 2,
      selection: "clipboard",
      mime: "text/uri-list",
      bytes: 20,
      text: "file:///share/x%20y.png\r\n",
      action: "copy",
    });
  });
});

test("vdagent-relay answers malformed commands with an error event and keeps running", async () => {
  await withRelay(async (port, start) => {
    const relay = start();
    await relay.next("caps");
    const bad: [string, string][] = [
      ["{not json", "BAD_JSON"],
      ["[1, 2]", "BAD_JSON"],
      ['"copy"', "BAD_JSON"],
      ["null", "BAD_JSON"],
      ['{"cmd":"explode"}', "BAD_COMMAND"],
      ['{"id":{},"cmd":"status"}', "BAD_COMMAND"],
      ['{"cmd":"copy","selection":"nope","text":"x"}', "BAD_COMMAND"],
      ['{"cmd":"copy","text":"x","colour":"red"}', "BAD_COMMAND"],
      ['{"cmd":"copy"}', "BAD_COMMAND"],
      ['{"cmd":"copy","text":"a","base64":"YQ=="}', "BAD_COMMAND"],
      ['{"cmd":"copy","mime":"image/gif","base64":"R0lG"}', "UNSUPPORTED_TYPE"],
      ['{"cmd":"copy","mime":"text/plain;charset=latin1","text":"x"}', "UNSUPPORTED_TYPE"],
      ['{"cmd":"copy","mime":"image/png","base64":"not base64!"}', "BAD_DATA"],
      ['{"cmd":"copy","mime":"text/plain","base64":"/w=="}', "BAD_DATA"],
      ['{"cmd":"copy","mime":"text/uri-list","text":"http://example.com/"}', "BAD_DATA"],
      ['{"cmd":"copy","text":""}', "BAD_DATA"],
      ['{"cmd":"mouse","x":-1,"y":0}', "BAD_COMMAND"],
      ['{"cmd":"mouse","x":1,"y":2,"buttons":["thumb"]}', "BAD_COMMAND"],
      ['{"cmd":"paste","selection":"secondary"}', "NOT_OFFERED"],
      ['{"cmd":"paste","timeout":"soon"}', "BAD_COMMAND"],
    ];
    for (const [line, code] of bad) {
      const since = relay.events.length;
      await relay.send(line);
      const error = await relay.next("error", () => true, since);
      assert.equal(error.code, code, line);
      assert.equal(typeof error.message, "string");
    }
    // An id survives a bad command, so the caller knows which one failed.
    await relay.send({ cmd: "copy", id: "c1", selection: 7, text: "x" });
    const answered = await relay.answer("c1");
    assert.equal(answered.event, "error");
    assert.equal(answered.code, "BAD_COMMAND");
    assert.match(String(answered.message), /selection must be/);
    // Still relaying.
    await relay.send({ cmd: "copy", id: "ok", text: "still here" });
    await relay.answer("ok");
    await port.until(() => port.guest.session.hostOffer(0) !== undefined, "host grab");
    assert.equal(decode(await port.guest.session.request(0, TEXT)), "still here");
    await relay.send({ cmd: "status", id: "s" });
    const status = await relay.answer("s");
    assert.deepEqual(status.copies, [{
      selection: "clipboard",
      mimes: ["text/plain;charset=utf-8"],
      bytes: [10],
    }]);
    assert.deepEqual(relay.events.filter((e) => e.event === "copied").at(-1), {
      event: "copied",
      selection: "clipboard",
      mime: "text/plain;charset=utf-8",
      bytes: 10,
    });
    // A release of the host's copy is told to every client; one of nothing is not.
    await relay.send({ cmd: "release", id: "r" });
    await relay.answer("r");
    assert.deepEqual(await relay.next("release"), {
      event: "release",
      selection: "clipboard",
      by: "host",
    });
    await relay.send({ cmd: "release", id: "r2", selection: "primary" });
    await relay.answer("r2");
    assert.equal(relay.events.filter((e) => e.event === "release").length, 1);
    assert.deepEqual(relay.junk, []);
  });
});

test("vdagent-relay honours --no-mouse, --no-clipboard and --max-clipboard", async () => {
  await withRelay(async (port, start) => {
    const limited = start(["--no-mouse", "--max-clipboard", "16"], "limited");
    await limited.next("caps");
    await limited.send({ cmd: "mouse", id: "m", x: 1, y: 1 });
    assert.equal((await limited.answer("m")).code, "DISABLED");
    const hostCaps = port.guest.session.hostCaps!;
    assert.equal(hasCapability(hostCaps, Capability.MOUSE_STATE), false);
    assert.equal(hasCapability(hostCaps, Capability.MAX_CLIPBOARD), true);
    port.data.set(`0/${TEXT}`, encode("twenty bytes of text"));
    port.guest.session.grab(0, [TEXT]);
    await limited.next("offer");
    await limited.send({ cmd: "paste", id: "p" });
    // The guest agent keeps to the MAX_CLIPBOARD it was sent, as the Linux agent does: it
    // answers with the type and no data.
    assert.deepEqual(await limited.answer("p"), {
      event: "data",
      id: "p",
      selection: "clipboard",
      mime: "text/plain;charset=utf-8",
      bytes: 0,
      text: "",
    });
    // A line over 4/3 of the limit plus 64 KiB is skipped whole, and the next one runs.
    await limited.send(`{"cmd":"copy","text":"${"x".repeat(70_000)}"}`);
    const tooLong = await limited.next("error", (e) => e.code === "LINE_TOO_LONG");
    assert.match(String(tooLong.message), /70024 characters, over the limit of 65558/);
    await limited.send({ cmd: "status", id: "s" });
    assert.equal((await limited.answer("s")).event, "status");
    limited.signal("SIGTERM");
    assert.equal(await limited.exited, 0);

    const quiet = start(["--no-clipboard"], "no clipboard");
    await quiet.next("caps");
    await quiet.send({ cmd: "copy", id: "c", text: "x" });
    assert.equal((await quiet.answer("c")).code, "DISABLED");
    await quiet.send({ cmd: "mouse", id: "m", x: 3, y: 4 });
    await quiet.answer("m");
    await port.until(() => port.events.some((e) => e.kind === "mouse" && e.x === 3), "mouse");
  });
});

test("vdagent-relay reports the progress of a multi-megabyte paste both ways", async () => {
  await withRelay(async (port, start) => {
    const relay = start();
    await relay.next("caps");
    const big = randBytes(prng(3), 3 * 1024 * 1024);
    port.data.set(`0/${PNG}`, big);
    port.guest.session.grab(0, [PNG]);
    await relay.next("offer");
    await relay.send({ cmd: "paste", id: "big", mime: "image/png" });
    const data = await relay.answer("big", 30_000);
    assert.equal(data.bytes, big.length);
    assert.deepEqual(Uint8Array.from(atob(data.base64 as string), (c) => c.charCodeAt(0)), big);
    const incoming = relay.events.filter((e) => e.event === "progress" && e.direction === "in");
    assert.ok(incoming.length >= 2, `${incoming.length} progress events`);
    // Progress counts the message's payload: the data and 8 bytes of selection and type.
    assert.deepEqual(incoming.at(-1), {
      event: "progress",
      transfer: 1,
      direction: "in",
      selection: "clipboard",
      done: big.length + 8,
      total: big.length + 8,
    });
    const dones = incoming.map((e) => e.done as number);
    assert.deepEqual(dones, [...dones].sort((a, b) => a - b), "progress only grows");
    assert.deepEqual(new Set(incoming.map((e) => e.transfer)), new Set([1]));
    // The next transfer the same way has the next number.
    await relay.send({ cmd: "paste", id: "again", mime: "image/png" });
    assert.equal((await relay.answer("again", 30_000)).bytes, big.length);
    const again = relay.events.filter((e) => e.event === "progress" && e.direction === "in")
      .slice(incoming.length);
    assert.ok(again.length >= 2);
    assert.deepEqual(new Set(again.map((e) => e.transfer)), new Set([2]));

    await relay.send({ cmd: "copy", id: "up", mime: "image/png", base64: data.base64 as string });
    await relay.answer("up");
    await port.until(() => port.guest.session.hostOffer(0) !== undefined, "host grab");
    assert.deepEqual(await port.guest.session.request(0, PNG), big);
    const out = await relay.next("progress", (e) => e.direction === "out" && e.done === e.total);
    assert.equal(out.transfer, 1, "the first transfer out");
    assert.equal(out.selection, "clipboard");
  });
});

test("vdagent-relay shares a paste with its request in flight for the same selection and type: the guest is asked once", async () => {
  await withRelay(async (port, start) => {
    // With --state, the relay fetches each guest copy as it is made; a paste meanwhile waits for
    // that fetch instead of asking again (the Linux agent would not answer a second one).
    const relay = start(["--state", `${port.dir}/vm.state`]);
    await relay.next("caps");
    const big = randBytes(prng(4), 2 * 1024 * 1024);
    port.data.set(`0/${PNG}`, big);
    // The guest holds its answer until the paste has met the fetch.
    let answer!: () => void;
    port.holds.set(`0/${PNG}`, new Promise((resolve) => answer = resolve));
    port.guest.session.grab(0, [PNG]);
    await relay.next("offer");
    await relay.send({ cmd: "paste", id: "p", mime: "image/png" });
    // Commands run in order: once `status` is answered, the paste has asked (or shared).
    await relay.send({ cmd: "status", id: "s" });
    await relay.answer("s");
    answer();
    const data = await relay.answer("p", 30_000);
    assert.equal(data.bytes, big.length);
    await relay.next("kept");
    const asked = port.events.filter((e) => e.kind === "provided");
    assert.deepEqual(asked, [{ kind: "provided", selection: 0, type: PNG }]);
  });
});

test("vdagent-relay hands off on SIGTERM through --state, and a restart continues the session", async () => {
  await withRelay(async (port, start) => {
    const state = `${port.dir}/vm.state`;
    const a = start(["--state", state], "relay A");
    await a.next("caps");
    port.data.set(`1/${TEXT}`, encode("guest primary"));
    port.guest.session.grab(1, [TEXT]);
    await a.next("offer");
    await a.send({ cmd: "copy", id: 1, text: "host text" });
    await port.until(() => port.guest.session.hostOffer(0) !== undefined, "A's grab");

    a.signal("SIGTERM");
    assert.equal(await a.exited, 0);
    assert.match(a.stderr, /SIGTERM: taking a checkpoint/);
    assert.match(a.stderr, /handed off: checkpoint of \d+ bytes \(and 1 host copies\) written to /);
    const checkpoint = a.events.find((e) => e.event === "checkpoint")!;
    assert.equal(checkpoint.file, state);
    assert.deepEqual(a.events.at(-1), { event: "exit", code: 0, reason: "SIGTERM: handed off" });
    const saved = JSON.parse(await Deno.readTextFile(state));
    assert.equal(saved.format, "vdagent-relay-state/2");
    assert.equal(saved.handedOff, true);
    const handedOffAt = saved.generation;
    assert.equal(await Deno.readTextFile(`${state}.generation`), `${handedOffAt}\n`);
    assert.deepEqual(saved.describe.selections[0].hostOffer, ["UTF8_TEXT"]);
    assert.deepEqual(saved.describe.selections[1].guestOffer, { serial: 0, types: ["UTF8_TEXT"] });
    assert.deepEqual(
      [...Deno.readDirSync(port.dir)].map((e) => e.name).sort(),
      ["vdagent.sock", "vm.state", "vm.state.generation"],
      "no temporary file and no lock is left",
    );

    const b = start(["--state", state, "--resume", "continued"], "relay B");
    await b.next("started");
    assert.deepEqual(b.events[0], {
      event: "started",
      mode: "restored",
      resume: "continued",
      connect: `unix:${port.path}`,
    });
    // What B knows, it tells at once: the guest's caps and its offer.
    await b.next("offer", (e) => e.selection === "primary");
    assert.match(
      b.stderr,
      /restored .* \(generation \d+, checkpoint of \d+ bytes, resume continued\)/,
    );
    // B holds the state now and writes it as the session moves on; A's copy of it is stale.
    assert.ok(JSON.parse(await Deno.readTextFile(state)).generation > handedOffAt);
    await Deno.stat(`${state}.lock`);
    // The guest pastes A's text from B; B fetches the guest's PRIMARY.
    assert.equal(decode(await port.guest.session.request(0, TEXT)), "host text");
    await b.send({ cmd: "paste", id: 2, selection: "primary" });
    assert.equal((await b.answer(2)).text, "guest primary");
    // Serials go on: B's grab is accepted, the guest's next copy has serial 1.
    await b.send({ cmd: "copy", id: 3, text: "from B" });
    await port.until(
      () => port.events.filter((e) => e.kind === "host-grab").length === 2,
      "B's grab",
    );
    assert.equal(decode(await port.guest.session.request(0, TEXT)), "from B");
    port.guest.session.grab(1, [TEXT]);
    assert.equal((await b.next("offer", (e) => e.serial === 1)).selection, "primary");
    assert.equal(
      port.events.filter((e) => e.kind === "host-caps" && e.request).length,
      1,
      "the guest saw one client",
    );
    assert.deepEqual(port.events.filter((e) => e.kind === "diagnostic"), []);
    assert.equal(port.connections, 2);
  });
});

for (
  const [how, launcher] of [
    ["deno task relay", [Deno.execPath(), "task", "--quiet", "relay"]],
    ["npx --yes deno@… task relay", ["npx", "--yes", `deno@${Deno.version.deno}`, "task", "relay"]],
  ] as const
) {
  test(`vdagent-relay run as \`${how}\` hands off when that launcher gets SIGTERM`, async () => {
    await withRelay(async (port, start) => {
      const state = `${port.dir}/vm.state`;
      const a = start(["--state", state], "relay A", undefined, [...launcher]);
      await a.next("caps", undefined, 0, 60_000);
      await a.send({ cmd: "copy", id: 1, text: "host text" });
      await a.answer(1);
      // The signal goes to the launcher alone, as `docker stop` or a service manager sends it:
      // `deno task` passes it on, npx does not (the relay sees its launcher exit).
      Deno.kill(a.pid, "SIGTERM");
      await a.next("exit", undefined, 0, 10_000);
      assert.deepEqual(a.events.at(-1), { event: "exit", code: 0, reason: "SIGTERM: handed off" });
      assert.equal(JSON.parse(await Deno.readTextFile(state)).handedOff, true);
      const b = start(["--state", state], "relay B");
      await b.next("started");
      assert.equal(decode(await port.guest.session.request(0, TEXT)), "host text");
    });
  });
}

test("vdagent-relay restarted in the middle of a 32 MiB guest copy, over a port that stays open, skips the rest of it and fetches the copy again", async () => {
  await withRelay(async (port, start) => {
    const state = `${port.dir}/vm.state`;
    const big = randBytes(prng(7), 32 << 20);
    const a = start(["--state", state], "relay A");
    await a.next("caps");
    // A fetches the text to keep it (--state) and the paste asks for the image: two answers of
    // 32 MiB, one chunk each, follow each other.
    port.data.set(`0/${TEXT}`, big);
    port.data.set(`0/${PNG}`, big);
    port.guest.session.grab(0, [TEXT, PNG]);
    await a.next("offer");
    await a.send({ cmd: "paste", id: "big", mime: "image/png" });
    // A hands off while the guest's answers are on their way.
    await a.next("progress", (e) => e.direction === "in" && (e.done as number) > 4 << 20);
    a.signal("SIGTERM");
    assert.equal(await a.exited, 0);
    // B, with the default resume, reads a stream that starts inside that chunk: it skips to the
    // first message start instead of taking the rest for a chunk header, and asks again.
    const b = start(["--state", state], "relay B");
    const data = await b.next("data", (e) => e.resumed === true, 0, 60_000);
    assert.equal(data.bytes, big.length);
    assert.ok(Buffer.from(String(data.base64), "base64").equals(big), "the copy, byte for byte");
    const resync = await b.next("diagnostic", (e) => e.code === "RESYNC");
    assert.match(String(resync.message), /^Skipped \d+ bytes/);
    // And carries on both ways.
    port.data.set(`1/${TEXT}`, encode("after"));
    port.guest.session.grab(1, [TEXT]);
    await b.next("offer", (e) => e.selection === "primary");
    await b.send({ cmd: "paste", id: "after", selection: "primary" });
    assert.equal((await b.answer("after")).text, "after");
    assert.equal(b.exitCode, undefined, "B runs on");
  });
});

test("vdagent-relay without --state closes on SIGINT; a checkpoint command hands the state over in the event", async () => {
  await withRelay(async (_port, start) => {
    const a = start([], "relay A");
    await a.next("caps");
    a.signal("SIGINT");
    assert.equal(await a.exited, 0);
    assert.match(a.stderr, /SIGINT: no --state, so no checkpoint: closing the session/);
    assert.deepEqual(a.events.at(-1), {
      event: "exit",
      code: 0,
      reason: "SIGINT: stopped without a checkpoint",
    });

    const b = start([], "relay B");
    await b.next("caps");
    await b.send({ cmd: "checkpoint", id: "cp" });
    const event = await b.answer("cp");
    assert.equal(event.event, "checkpoint");
    const state = event.state as { format: string; checkpoint: string };
    assert.equal(state.format, "vdagent-relay-state/2");
    assert.equal(await b.exited, 0);
  });
});

test("vdagent-relay exits with a clear message and code 3 when the guest's side closes the socket", async () => {
  await withRelay(async (port, start) => {
    const relay = start();
    await relay.next("caps");
    port.closeHost();
    assert.equal(await relay.exited, 3);
    // End of stream, or a broken pipe when the relay was writing at that moment.
    assert.match(
      relay.stderr,
      /the guest's side closed the connection on unix:\S+ \((end of stream|Broken pipe.*|Connection reset.*)\); exiting/,
    );
    assert.deepEqual(relay.events.at(-1), {
      event: "exit",
      code: 3,
      reason: "the guest's side closed the connection",
    });
  });
});

test("vdagent-relay refuses bad arguments, an unreachable port and a bad state file with distinct codes", async () => {
  await withRelay(async (port, start) => {
    const usage = start(["--resume", "sideways"]);
    assert.equal(await usage.exited, 2);
    assert.match(usage.stderr, /--resume must be continued or reconnected/);
    // Whatever ends the relay, its last event says how.
    assert.deepEqual(usage.events.at(-1), {
      event: "exit",
      code: 2,
      reason: 'bad command line: --resume must be continued or reconnected, got "sideways"',
    });
    const help = new RelayProcess(["--help"]);
    try {
      assert.equal(await help.exited, 0);
      await help.close();
      assert.match(help.junk[0]!, /^usage: vdagent-relay --connect/, "the help on standard output");
      assert.deepEqual(help.events, []);
      assert.equal(help.stderr, "");
    } finally {
      await help.close();
    }
    const unknown = new RelayProcess(["--connect", "unix:/x", "--bogus"]);
    try {
      assert.equal(await unknown.exited, 2);
      assert.match(unknown.stderr, /Unknown option '--bogus'/);
    } finally {
      await unknown.close();
    }
    const missing = new RelayProcess(["--connect", `unix:${port.dir}/nothing.sock`]);
    try {
      assert.equal(await missing.exited, 4);
      assert.match(missing.stderr, /cannot connect to unix:.*nothing\.sock/);
      await missing.close();
      assert.equal(missing.events.at(-1)?.event, "exit");
      assert.equal(missing.events.at(-1)?.code, 4);
    } finally {
      await missing.close();
    }
    const state = `${port.dir}/bad.state`;
    await Deno.writeTextFile(
      state,
      '{"format":"vdagent-relay-state/2","generation":0,"handedOff":true,"checkpoint":"VkRDSwIA","hostCopies":[],"guestCopies":[]}',
    );
    const bad = start(["--state", state]);
    assert.equal(await bad.exited, 5);
    assert.match(bad.stderr, /cannot restore .*bad\.state: TRUNCATED: .*; it is left as it is/);
    await Deno.stat(state); // left in place
    assert.equal(port.connections, 0, "nothing connected with a bad state file");
  });
});

test("vdagent-relay --listen serves the page and the JSON protocol over WebSocket with its token, to its own origin and host names only", async () => {
  await withRelay(async (port, start) => {
    const relay = start(["--listen", "127.0.0.1:0"]);
    const url = (await relay.next("listening")).url as string;
    const match = /^(http:\/\/127\.0\.0\.1:\d+\/)\?token=([A-Za-z0-9_-]{43})$/.exec(url);
    assert.ok(match, url);
    const [, base, token] = match as unknown as [string, string, string];
    assert.equal(relay.stderr.split(token).length, 2, "the token is logged once");
    assert.equal(relay.events.filter((e) => JSON.stringify(e).includes(token)).length, 1);
    await relay.next("caps");
    const page = await fetch(url);
    assert.equal(page.status, 200);
    assert.equal(page.headers.get("content-type"), "text/html; charset=utf-8");
    assert.match(
      page.headers.get("content-security-policy")!,
      /default-src 'none'; script-src 'self'/,
    );
    assert.match(await page.text(), /<script type="module" src="\/app\.js"><\/script>/);
    // HEAD answers as GET does, without the body; anything else is 405.
    const head = await fetch(url, { method: "HEAD" });
    assert.equal(head.status, 200);
    assert.equal(head.headers.get("content-type"), "text/html; charset=utf-8");
    assert.equal(await head.text(), "");
    const post = await fetch(url, { method: "POST", body: "x" });
    assert.deepEqual([post.status, post.headers.get("allow")], [405, "GET, HEAD"]);
    await post.body?.cancel();
    const paths: [string, number][] = [
      ["", 401],
      ["?token=wrong", 401],
      ["app.js", 200],
      ["style.css", 200],
      [`nope?token=${token}`, 404],
      [`ws?token=${token}`, 426],
    ];
    for (const [path, status] of paths) {
      const response = await fetch(base + path);
      assert.equal(response.status, status, path);
      await response.body?.cancel();
    }

    // A client that is not a browser sends no Origin: with the token, it gets the state, then
    // its answers.
    const socket = new WebSocket(`${base.replace("http", "ws")}ws?token=${token}`);
    const messages: { event: string; [key: string]: unknown }[] = [];
    let wake = () => {};
    socket.onmessage = (m) => {
      messages.push(JSON.parse(m.data));
      wake();
    };
    const until = (n: number) =>
      new Promise<void>((resolve) => (wake = () => messages.length >= n && resolve(), wake()));
    await until(2);
    assert.deepEqual(messages.map((m) => m.event), ["hello", "caps"]);
    socket.send(JSON.stringify({ cmd: "copy", id: "w", text: "over WebSocket" }));
    socket.send("not json");
    await until(5);
    assert.deepEqual(messages[2], { event: "ok", id: "w", cmd: "copy" });
    // Every client hears that the host owns the clipboard now.
    assert.deepEqual(messages[3], {
      event: "copied",
      selection: "clipboard",
      mime: "text/plain;charset=utf-8",
      bytes: 14,
    });
    assert.equal(messages[4]!.code, "BAD_JSON");
    await port.until(() => port.guest.session.hostOffer(0) !== undefined, "host grab");
    assert.equal(decode(await port.guest.session.request(0, TEXT)), "over WebSocket");
    // What the guest does reaches the socket and standard output alike.
    port.data.set(`2/${TEXT}`, encode("secondary"));
    port.guest.session.grab(2, [TEXT]);
    await until(7); // served, offer
    assert.ok(messages.some((m) => m.event === "offer" && m.selection === "secondary"));
    await relay.next("offer", (e) => e.selection === "secondary");
    assert.ok(!relay.events.some((e) => e.id === "w"), "answers go to who asked");
    const closed = new Promise((resolve) => socket.onclose = resolve);
    socket.close();
    await closed;

    // Refused before any WebSocket: no token, a wrong one, another site's page, a DNS
    // rebinding name (with the token, even), a host name not allowed.
    const address = new URL(base).host;
    const handshake = (path: string, headers: Record<string, string>) =>
      rawRequest(base, `GET ${path} HTTP/1.1`, {
        Host: address,
        Upgrade: "websocket",
        Connection: "Upgrade",
        "Sec-WebSocket-Key": "dGhlIHNhbXBsZSBub25jZQ==",
        "Sec-WebSocket-Version": "13",
        ...headers,
      });
    assert.match(await handshake("/ws", {}), /^HTTP\/1\.1 401 /);
    assert.match(await handshake("/ws?token=x", {}), /^HTTP\/1\.1 401 /);
    assert.match(
      await handshake("/ws", { Authorization: `Bearer ${token}` }),
      /^HTTP\/1\.1 101 /,
    );
    assert.match(
      await handshake(`/ws?token=${token}`, { Origin: "https://evil.example" }),
      /^HTTP\/1\.1 403 [^]*Forbidden origin/,
    );
    for (const host of ["evil.test:18434", "ip6-localhost", "vm-host.lan"]) {
      const evil = await handshake(`/ws?token=${token}`, {
        Host: host,
        Origin: `http://${host}`,
      });
      assert.match(evil, /^HTTP\/1\.1 403 [^]*Forbidden host/, host);
      assert.match(
        await rawRequest(base, `GET /?token=${token} HTTP/1.1`, { Host: host }),
        /^HTTP\/1\.1 403 /,
        `the page by ${host}`,
      );
    }
    assert.match(
      await rawRequest(base, `GET /?token=${token} HTTP/1.1`, { Host: "localhost" }),
      /^HTTP\/1\.1 200 /,
    );
  });
});

test("vdagent-relay --listen takes --token-file, --no-auth on loopback only, and --allow-host", async () => {
  await withRelay(async (port, start) => {
    const file = `${port.dir}/token`;
    await Deno.writeTextFile(file, "a-token-from-a-file-0123456789\n");
    const relay = start([
      "--listen",
      "127.0.0.1:0",
      "--token-file",
      file,
      "--allow-host",
      "VM-Host.lan",
    ]);
    const url = (await relay.next("listening")).url as string;
    assert.match(url, /^http:\/\/127\.0\.0\.1:\d+\/\?token=a-token-from-a-file-0123456789$/);
    const base = url.slice(0, url.indexOf("?"));
    assert.match(
      await rawRequest(base, "GET /?token=a-token-from-a-file-0123456789 HTTP/1.1", {
        Host: "vm-host.lan:80",
      }),
      /^HTTP\/1\.1 200 /,
    );
    const open = start(["--listen", "[::1]:0", "--no-auth"], "no-auth");
    const openUrl = (await open.next("listening")).url as string;
    assert.match(openUrl, /^http:\/\/\[::1\]:\d+\/$/);
    assert.match(open.stderr, /no token: --no-auth/);
    assert.equal((await fetch(openUrl)).status, 200);

    const wide = start(["--listen", "0.0.0.0:0", "--no-auth"], "wide");
    assert.equal(await wide.exited, 2);
    assert.match(wide.stderr, /--no-auth needs --listen on a loopback address .* not 0\.0\.0\.0/);
    await Deno.writeTextFile(file, "short\n");
    const short = start(["--listen", "127.0.0.1:0", "--token-file", file], "short");
    assert.equal(await short.exited, 2);
    assert.match(
      short.stderr,
      /--token-file .*token is unusable: it must hold a token of 16 to 1024/,
    );
    assert.equal(port.connections, 2, "a bad token file is refused before connecting");
  });
});

/** Sends one request on a new TCP connection; resolves with the whole response. */
async function rawRequest(
  base: string,
  line: string,
  headers: Record<string, string>,
): Promise<string> {
  const { hostname, port } = new URL(base);
  const conn = await Deno.connect({
    hostname: hostname.replace(/^\[|\]$/g, ""),
    port: Number(port),
  });
  try {
    const head = Object.entries(headers).map(([k, v]) => `${k}: ${v}\r\n`).join("");
    await conn.write(encode(`${line}\r\n${head}\r\n`));
    let text = "";
    const buffer = new Uint8Array(65536);
    for (;;) {
      const n = await conn.read(buffer).catch(() => null);
      if (n === null) break;
      text += decode(buffer.subarray(0, n));
      // A 101 stays open: its head is the answer.
      if (text.startsWith("HTTP/1.1 101 ") && text.includes("\r\n\r\n")) break;
    }
    return text;
  } finally {
    conn.close();
  }
}
