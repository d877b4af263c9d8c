// The inspect command, run as a subprocess (Deno only).
import { test } from "node:test";
import assert from "node:assert/strict";

const root = new URL("../../", import.meta.url);

async function inspect(
  ...args: string[]
): Promise<{ code: number; stdout: string; stderr: string }> {
  const { code, stdout, stderr } = await new Deno.Command(Deno.execPath(), {
    args: ["run", "--allow-read", "scripts/inspect.ts", ...args],
    cwd: root,
    stdout: "piped",
    stderr: "piped",
  }).output();
  const text = new TextDecoder();
  return { code, stdout: text.decode(stdout), stderr: text.decode(stderr) };
}

test("inspect prints the 11 guest-to-host messages with their decoded fields", async () => {
  const { code, stdout } = await inspect(
    "--direction",
    "g2h",
    "tests/fixtures/linux-agent-0.22.1/guest-to-host.bin",
  );
  assert.equal(code, 0);
  const lines = stdout.trimEnd().split("\n");
  assert.equal(lines.length, 11);
  const expected = [
    /guest→host port=1 ANNOUNCE_CAPABILITIES request=1 caps=\[0x00038de7\]/,
    /ANNOUNCE_CAPABILITIES request=0 caps=\[0x00038de7\]/,
    /CLIPBOARD_GRAB CLIPBOARD serial=0 types=\[UTF8_TEXT\]$/,
    /CLIPBOARD CLIPBOARD UTF8_TEXT data=17 B "héllo wörld ✓"$/,
    /CLIPBOARD_GRAB CLIPBOARD serial=1 types=\[UTF8_TEXT\]$/,
    /CLIPBOARD CLIPBOARD UTF8_TEXT data=300000 B "0123456789abcdef/,
    /CLIPBOARD_GRAB PRIMARY serial=0 types=\[UTF8_TEXT\]$/,
    /CLIPBOARD PRIMARY UTF8_TEXT data=12 B "primary text"$/,
    /CLIPBOARD_GRAB CLIPBOARD serial=2 types=\[IMAGE_PNG\]$/,
    /CLIPBOARD CLIPBOARD IMAGE_PNG data=75 B 89 50 4e 47/,
    /CLIPBOARD_REQUEST CLIPBOARD UTF8_TEXT$/,
  ];
  lines.forEach((line, i) => assert.match(line, expected[i]!));
});

test("inspect decodes the host capture's grab and its three-chunk reply", async () => {
  const { code, stdout } = await inspect("tests/fixtures/linux-agent-0.22.1/host-to-guest.bin");
  assert.equal(code, 0);
  const lines = stdout.trimEnd().split("\n");
  assert.equal(lines.length, 7);
  assert.match(lines[5]!, /CLIPBOARD_GRAB CLIPBOARD serial=2 types=\[UTF8_TEXT\]$/);
  assert.match(lines[6]!, /CLIPBOARD CLIPBOARD UTF8_TEXT data=5000 B "x{40}"…$/);
});

test("inspect names the byte offset of malformed input and exits non-zero", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const wire = await Deno.readFile(
      new URL("tests/fixtures/linux-agent-0.22.1/guest-to-host.bin", root),
    );
    await Deno.writeFile(`${dir}/cut.bin`, wire.subarray(0, 100));
    const cut = await inspect(`${dir}/cut.bin`);
    assert.equal(cut.code, 1);
    assert.match(cut.stderr, /malformed input at byte offset 100: TRUNCATED/);
    const bad = wire.slice(0, 44);
    bad[36] = 3; // the second chunk's port
    await Deno.writeFile(`${dir}/bad.bin`, bad);
    const port = await inspect(`${dir}/bad.bin`);
    assert.equal(port.code, 1);
    assert.match(port.stderr, /byte offset 36: UNKNOWN_PORT/);
    assert.equal(port.stdout.trimEnd().split("\n").length, 1);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
