// The README's Deno relay, run as a subprocess against an in-process guest
// agent listening on a unix socket (Deno only).
import { test } from "node:test";
import assert from "node:assert/strict";
import { ClipboardType, createGuestPipeline } from "../../mod.ts";

/** The README's command: `deno` is this Deno, the socket is made here. */
const README =
  "deno run --allow-net --allow-read --allow-write scripts/examples/relay_deno.ts /run/vm1/vdagent.sock";

test("scripts/examples/relay_deno.ts relays the clipboard both ways over a unix socket", async () => {
  const dir = await Deno.makeTempDir();
  const path = `${dir}/vdagent.sock`;
  const listener = Deno.listen({ transport: "unix", path });
  const [deno, ...args] = README.replace("/run/vm1/vdagent.sock", path).split(" ");
  assert.equal(deno, "deno");
  const relay = new Deno.Command(Deno.execPath(), {
    // The permissions its header and the README give it, as written.
    args,
    cwd: new URL("../../", import.meta.url),
    stdout: "piped",
    stderr: "inherit",
  }).spawn();
  try {
    const conn = await listener.accept();
    const hostGrabbed = Promise.withResolvers<void>();
    const guest = createGuestPipeline(conn, {
      clipboard: {
        provide: () => new TextEncoder().encode("hello from the guest"),
        onHostGrab: () => hostGrabbed.resolve(),
      },
    });
    // PRIMARY, so the relay's own grab of CLIPBOARD does not take it over.
    guest.session.grab(1, [ClipboardType.UTF8_TEXT]);
    const lines = relay.stdout.pipeThrough(new TextDecoderStream()).getReader();
    let printed = "";
    while (!printed.includes("\n")) printed += (await lines.read()).value ?? "";
    assert.equal(printed, "guest copied: hello from the guest\n");
    await hostGrabbed.promise;
    const pasted = await guest.session.request(0, ClipboardType.UTF8_TEXT);
    assert.equal(new TextDecoder().decode(pasted), "Hello from the host");
    lines.releaseLock();
    await guest.close();
  } finally {
    relay.kill();
    await relay.status;
    await relay.stdout.cancel().catch(() => {});
    listener.close();
    await Deno.remove(dir, { recursive: true });
  }
});
