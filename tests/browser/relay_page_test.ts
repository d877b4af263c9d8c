// vdagent-relay's clipboard page in headless Chromium, served by the npm bin on Node (its own
// WebSocket server, scripts/relay/node_websocket.ts) in front of an in-process guest agent.
// Node only: run by `deno task build:npm` against npm/. The same page against the real agent
// is tests/interop/relay_test.ts.
import { test } from "node:test";
import assert from "node:assert/strict";
import { Buffer } from "node:buffer";
import { access, mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { ClipboardType, Selection } from "../../mod.ts";
import { GuestPort, RelayBin } from "../node/_relay_bin.ts";
import { CHROMIUM, launchChromium } from "./_chromium.ts";
import { openPage, waitImage, waitText } from "./_relay_page.ts";
import { hostImage } from "./page.ts";

const TEXT = ClipboardType.UTF8_TEXT;
const PNG = ClipboardType.IMAGE_PNG;

/** A 2×1 PNG: a red and a blue pixel. */
const TINY_PNG = Uint8Array.from(
  atob(
    "iVBORw0KGgoAAAANSUhEUgAAAAIAAAABCAIAAAB7QOjdAAAADUlEQVR4nGP4zwAE/wEHAAH/4iOeWQAAAABJRU5ErkJggg==",
  ),
  (c) => c.charCodeAt(0),
);

test(
  "vdagent-relay's page, served by the npm bin on Node, sends text and images into the guest and shows the guest's clipboard",
  {
    timeout: 120_000,
  },
  async () => {
    await access(CHROMIUM).catch(() => {
      throw new Error(`No Chromium at ${CHROMIUM}: apt-get install -y chromium, or set CHROMIUM`);
    });
    const port = await GuestPort.open();
    const relay = new RelayBin(["--connect", `unix:${port.path}`, "--listen", "127.0.0.1:0"]);
    const profile = await mkdtemp(join(tmpdir(), "vdagent-relay-chromium-"));
    try {
      const url = (await relay.next("listening")).url as string;
      await relay.next("caps");
      const context = await launchChromium(profile);
      try {
        const { page, errors } = await openPage(context, url);

        // Typed in the page, pasted in the guest.
        await page.fill("#send-text-input", "typed in the page ✓");
        await page.click("#send-text");
        await port.hostGrabbed(1);
        const text = await port.guest.session.request(Selection.CLIPBOARD, TEXT);
        assert.equal(new TextDecoder().decode(text), "typed in the page ✓");

        // Copied in the guest, shown in the page: text, then an image.
        port.data.set(`0/${TEXT}`, new TextEncoder().encode("copied in the guest\n✓"));
        port.guest.session.grab(Selection.CLIPBOARD, [TEXT]);
        await waitText(page, "guest-text", "copied in the guest\n✓");
        port.data.set(`0/${PNG}`, TINY_PNG);
        port.guest.session.grab(Selection.CLIPBOARD, [PNG]);
        await waitImage(page, TINY_PNG.length, 2, 1);

        // A 1.5 MiB file from the page crosses the WebSocket in one big frame; the guest pastes
        // it, and the progress bar follows the relay's write.
        const big = new Uint8Array(1536 * 1024);
        big.set(TINY_PNG);
        big.set(hostImage(), 4096);
        await page.setInputFiles("#send-image-input", {
          name: "big.png",
          mimeType: "image/png",
          buffer: Buffer.from(big),
        });
        await port.hostGrabbed(2);
        assert.deepEqual(await port.guest.session.request(Selection.CLIPBOARD, PNG), big);
        await waitText(page, "progress-label", `to the guest done (${big.length + 8} bytes)`);
        assert.deepEqual(errors, []);
      } finally {
        await context.close();
      }
      relay.signal("SIGTERM");
      assert.equal(await relay.exited, 0);
    } finally {
      await relay.close();
      await port.close();
      await rm(profile, { recursive: true, force: true });
    }
  },
);
