// `deno task demo` (scripts/demo.ts) as a subprocess: the README's first command. Deno only.
import { test } from "node:test";
import assert from "node:assert/strict";

async function demo(...args: string[]): Promise<{ code: number; out: string; err: string }> {
  const { code, stdout, stderr } = await new Deno.Command(Deno.execPath(), {
    args: ["run", "--allow-env=NO_COLOR", "scripts/demo.ts", ...args],
    cwd: new URL("../../", import.meta.url),
    env: { NO_COLOR: "1" },
  }).output();
  return { code, out: new TextDecoder().decode(stdout), err: new TextDecoder().decode(stderr) };
}

test("scripts/demo.ts hands relay A off to relay B mid-transfer and loses nothing", async () => {
  const { code, out, err } = await demo();
  assert.equal(err, "");
  assert.equal(code, 0, out);
  assert.ok(!out.includes("\x1b["), "no colour without a terminal");
  // One line per message, with arrows and the relay that handled it.
  assert.match(out, /^ {4}guest ──▶ A ANNOUNCE_CAPABILITIES request=1 caps=0x00038de7$/m);
  assert.match(out, /^ {4}A ──▶ guest CLIPBOARD_GRAB CLIPBOARD serial=0 types=\[UTF8_TEXT\]$/m);
  assert.match(
    out,
    /guest ──▶ B CLIPBOARD CLIPBOARD IMAGE_PNG data=3145728 B .* in 1537 chunks \(A read 1\.24 MiB of it, which the checkpoint carried to B; B read the other 1\.77 MiB\)/,
  );
  assert.match(out, /checkpoint: \d+ bytes, lossless, format 2\.0/);
  assert.match(out, /A's request ended with CLOSED: it is B's now/);
  assert.match(out, /B got the screenshot: 3\.00 MiB, byte for byte the guest's/);
  assert.match(out, /the guest got: "Hello from relay B"/);
  assert.equal(out.match(/request=1/g)?.length, 2, "each side announced once");
  // The summary.
  assert.match(out, /messages lost {12}0 {2}guest → relays: 10 sent, A handled 6, B 4/);
  assert.match(out, /relays → guest: 9 sent, 9 received/);
  assert.match(out, /serial continuity {8}ok {2}CLIPBOARD grabs: guest 0, 1, 2 · relays 0, 1/);
  assert.match(out, /guest's clipboard kept {3}yes/);
  assert.match(out, /the guest saw {12}one client/);
});

test("scripts/demo.ts --without-checkpoint shows the host's grab discarded", async () => {
  const { code, out, err } = await demo("--without-checkpoint");
  assert.equal(err, "");
  assert.equal(code, 0, out);
  assert.doesNotMatch(out, /checkpoint: \d+ bytes/);
  assert.match(out, /B ──▶ guest CLIPBOARD_GRAB CLIPBOARD serial=0 types=\[UTF8_TEXT\]/);
  assert.match(out, /the guest discarded B's grab: .*serial 0, expected 2/);
  assert.match(out, /serial continuity {8}FAILED {2}CLIPBOARD grabs: guest 0, 1, 2 · relays 0, 0/);
  assert.match(out, /host's grab discarded: Discarded the host's grab of selection 0: serial 0/);
  assert.match(out, /guest's clipboard kept {3}no/);
  assert.match(out, /messages lost {12}0 /);
});

test("scripts/demo.ts refuses an unknown argument", async () => {
  const { code, err } = await demo("--sideways");
  assert.equal(code, 2);
  assert.match(err, /unknown argument --sideways/);
});
