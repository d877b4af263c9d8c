// vdagent-relay's --state on real files: written as the session moves on, kept when the relay
// cannot start, held by one relay at a time, refused when forged, stale or not a file. Deno only.
import { test } from "node:test";
import assert from "node:assert/strict";
import {
  ClipboardType,
  decodeCheckpoint,
  encodeCheckpoint,
  encodeMessage,
  MessageType,
} from "../../mod.ts";
import { concat, framed, u32s } from "../_helpers.ts";
import { withRelay } from "./_with_relay.ts";

const TEXT = ClipboardType.UTF8_TEXT;
const encode = (s: string) => new TextEncoder().encode(s);
const decode = (b: Uint8Array) => new TextDecoder().decode(b);
const KEY = "5a".repeat(32);
const readState = async (path: string) => JSON.parse(await Deno.readTextFile(path));

/** What `check` gives once it gives something, looked at every 20 ms for up to 10 s. */
async function poll<T>(check: () => Promise<T | undefined>, what: string): Promise<T> {
  for (let i = 0; i < 500; i++) {
    const value = await check();
    if (value !== undefined) return value;
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
  throw new Error(`no ${what} within 10 s`);
}

test("vdagent-relay writes --state as the session moves on, so a relay killed with SIGKILL is followed by one that carries on", async () => {
  await withRelay(async (port, start) => {
    const state = `${port.dir}/vm.state`;
    const env = { VDAGENT_RELAY_KEY: KEY };
    const a = start(["--state", state], "relay A", env);
    await a.next("caps");
    assert.doesNotMatch(a.stderr, /WARNING/);
    port.data.set(`1/${TEXT}`, encode("guest primary"));
    port.guest.session.grab(1, [TEXT]);
    await a.next("offer");
    await a.send({ cmd: "copy", id: 1, text: "host text" });
    await a.answer(1);
    // Without a hand-off, the file already holds both copies.
    // Without a hand-off, the file already holds both copies: the guest's fetched as it was made.
    const written = await poll(async () => {
      const saved = await readState(state);
      return saved.hostCopies.length === 1 && saved.guestCopies.length === 1 ? saved : undefined;
    }, "the state with both copies");
    assert.deepEqual(written.guestCopies, [{
      selection: "primary",
      mime: "text/plain;charset=utf-8",
      base64: btoa("guest primary"),
    }]);
    assert.equal(written.handedOff, false);
    assert.equal(typeof written.mac, "string");
    const lock = JSON.parse(await Deno.readTextFile(`${state}.lock`));
    assert.equal(lock.pid, a.pid);

    a.signal("SIGKILL");
    await a.exited;
    // As if A died in the middle of a write: its temporary file stays, with clipboard data.
    const leftover = `${port.dir}/.vm.state.${"0f".repeat(16)}.tmp`;
    await Deno.writeTextFile(leftover, "host text");
    const b = start(["--state", state], "relay B", env);
    await b.next("started");
    await b.logged(/the relay with pid \d+ held .*vm\.state and died without handing off/);
    await b.logged(/resume reconnected\) .*it announces itself \(request=1\)/);
    // The guest pastes A's copy from B, and B fetches the guest's copy A had seen.
    await port.until(
      () => port.events.filter((e) => e.kind === "host-grab").length === 2,
      "B's grab of A's copy",
    );
    assert.equal(decode(await port.guest.session.request(0, TEXT)), "host text");
    // The guest's copy, which a new connection no longer offers, is still the host's to paste.
    await b.send({ cmd: "paste", id: 2, selection: "primary" });
    const pasted = await b.answer(2);
    assert.equal(pasted.text, "guest primary");
    assert.equal(pasted.kept, true);
    // And the guest's next copy is B's.
    port.data.set(`0/${TEXT}`, encode("after the kill"));
    port.guest.session.grab(0, [TEXT]);
    await b.next("offer", (e) => e.selection === "clipboard");
    await b.send({ cmd: "paste", id: 3 });
    assert.equal((await b.answer(3)).text, "after the kill");
    assert.equal(JSON.parse(await Deno.readTextFile(`${state}.lock`)).pid, b.pid);
    await assert.rejects(Deno.stat(leftover), Deno.errors.NotFound, "A's half-written file");
  });
});

test("vdagent-relay refuses a --state another relay holds, and leaves that relay alone", async () => {
  await withRelay(async (port, start) => {
    const state = `${port.dir}/vm.state`;
    const a = start(["--state", state], "relay A");
    await a.next("caps");
    const before = await Deno.readFile(state);
    const b = start(["--state", state], "relay B");
    assert.equal(await b.exited, 7);
    assert.match(b.stderr, /cannot take .*vm\.state: LOCKED .*held by the relay with pid \d+/);
    assert.equal(port.connections, 1, "B never connected");
    assert.equal(a.exitCode, undefined);
    assert.ok((await readState(state)).generation >= JSON.parse(decode(before)).generation);
    // Once A has handed off, the next relay takes the lock and the session.
    a.signal("SIGTERM");
    assert.equal(await a.exited, 0);
    await assert.rejects(Deno.stat(`${state}.lock`), Deno.errors.NotFound);
    const c = start(["--state", state], "relay C");
    assert.equal((await c.next("started")).mode, "restored");
    assert.equal(JSON.parse(await Deno.readTextFile(`${state}.lock`)).pid, c.pid);
    c.signal("SIGTERM");
    assert.equal(await c.exited, 0);

    // Two relays started at once on the same state: exactly one runs.
    const both = [start(["--state", state], "relay D"), start(["--state", state], "relay E")];
    const loser = await Promise.race(both.map((r) => r.exited.then(() => r)));
    assert.equal(loser.exitCode, 7, loser.stderr);
    const winner = both.find((r) => r !== loser)!;
    assert.equal((await winner.next("started")).mode, "restored");
    assert.equal(winner.exitCode, undefined);
    assert.equal(JSON.parse(await Deno.readTextFile(`${state}.lock`)).pid, winner.pid);
  });
});

test("vdagent-relay that cannot listen or cannot write its state exits before it touches the state", async () => {
  await withRelay(async (port, start) => {
    const state = `${port.dir}/vm.state`;
    const a = start(["--state", state], "relay A");
    await a.next("caps");
    a.signal("SIGTERM");
    assert.equal(await a.exited, 0);
    const handedOff = await Deno.readFile(state);

    using busy = Deno.listen({ hostname: "127.0.0.1", port: 0 });
    const b = start(["--state", state, "--listen", `127.0.0.1:${busy.addr.port}`], "relay B");
    assert.equal(await b.exited, 1);
    assert.match(b.stderr, /cannot listen on 127\.0\.0\.1:\d+/);
    assert.deepEqual(await Deno.readFile(state), handedOff, "the state is as A left it");
    await assert.rejects(Deno.stat(`${state}.lock`), Deno.errors.NotFound);

    const nowhere = start(["--state", `${port.dir}/missing/vm.state`], "relay C");
    assert.equal(await nowhere.exited, 6);
    assert.match(nowhere.stderr, /cannot take .*missing\/vm\.state: UNWRITABLE/);
    assert.equal(port.connections, 1, "only A connected");

    // And the state still restores.
    const d = start(["--state", state], "relay D");
    assert.equal((await d.next("started")).mode, "restored");
  });
});

test("vdagent-relay refuses a forged, stale or linked --state with code 5, and connects to nothing", async () => {
  await withRelay(async (port, start) => {
    const state = `${port.dir}/vm.state`;
    const env = { VDAGENT_RELAY_KEY: KEY };
    const a = start(["--state", state], "relay A", env);
    await a.next("caps");
    a.signal("SIGTERM");
    assert.equal(await a.exited, 0);
    const good = await Deno.readTextFile(state);
    const refused = async (code: string, args: string[], relayEnv = env) => {
      const relay = start(args, code, relayEnv);
      assert.equal(await relay.exited, 5, relay.stderr);
      assert.match(relay.stderr, new RegExp(`cannot restore .*: ${code}: `));
      return relay;
    };

    // One field changed: the MAC no longer matches. Stripped: refused too.
    const json = JSON.parse(good);
    await Deno.writeTextFile(state, JSON.stringify({ ...json, handedOff: false }));
    await refused("BAD_MAC", ["--state", state]);
    await Deno.writeTextFile(state, JSON.stringify({ ...json, mac: undefined }));
    await refused("UNAUTHENTICATED", ["--state", state]);
    await Deno.writeTextFile(`${port.dir}/key`, "6b".repeat(32) + "\n");
    await Deno.writeTextFile(state, good);
    await refused("BAD_MAC", ["--state", state, "--key-file", `${port.dir}/key`]);

    // The good one restores, and moves the generation on: the copy taken before is stale.
    const b = start(["--state", state], "relay B", env);
    await b.next("started");
    b.signal("SIGTERM");
    assert.equal(await b.exited, 0);
    await Deno.writeTextFile(state, good);
    const stale = await refused("STALE", ["--state", state]);
    assert.match(stale.stderr, /holds generation \d+, but generation \d+ was written since/);

    // A link is not followed, whatever it points to.
    await Deno.rename(state, `${port.dir}/elsewhere`);
    await Deno.symlink(`${port.dir}/elsewhere`, state);
    await refused("NOT_A_FILE", ["--state", state]);
    assert.equal(port.connections, 2, "only A and B connected");

    // Without a key, the relay says so loudly.
    await Deno.remove(state);
    const c = start(["--state", state], "relay C", {});
    await c.next("started");
    assert.match(c.stderr, /WARNING: --state .* without a key/);
  });
});

test("vdagent-relay refuses a state file whose checkpoint carries a forged file transfer and clicks, and nothing reaches the guest", async () => {
  await withRelay(async (port, start) => {
    const state = `${port.dir}/vm.state`;
    const a = start(["--state", state], "relay A");
    await a.next("caps");
    a.signal("SIGTERM");
    assert.equal(await a.exited, 0);
    // The reproduction: the real state re-encoded with bytes in flight that the host role never
    // sends; encodeCheckpoint computes a good CRC, and there is no key.
    const json = await readState(state);
    const layout = { selection: true, grabSerial: true };
    const mouse = (buttons: number) => {
      const m = encodeMessage({ kind: "mouse_state", x: 123, y: 456, buttons, display: 0 }, layout);
      return framed(1, m.type, m.data);
    };
    const forged = encodeCheckpoint({
      ...decodeCheckpoint(Uint8Array.from(atob(json.checkpoint), (c) => c.charCodeAt(0))),
      wire: {
        inbound: new Uint8Array(0),
        outbound: concat(
          framed(1, MessageType.FILE_XFER_START, concat(u32s(1), encode("pwned.sh\0"))),
          framed(1, MessageType.FILE_XFER_DATA, concat(u32s(1, 4, 0), encode("echo"))),
          mouse(2),
          mouse(0),
        ),
        written: 0,
      },
    });
    json.checkpoint = btoa(String.fromCharCode(...forged));
    await Deno.writeTextFile(state, JSON.stringify(json));
    const b = start(["--state", state, "--resume", "continued"], "relay B");
    assert.equal(await b.exited, 5);
    assert.match(b.stderr, /cannot restore .*: FORBIDDEN_MESSAGE: /);
    assert.equal(port.connections, 1, "B never connected");
    assert.deepEqual(port.events.filter((e) => e.kind === "mouse"), [], "no click");
  });
});
