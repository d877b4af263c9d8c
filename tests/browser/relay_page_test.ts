// vdagent-relay's clipboard page in headless Chromium, served by the npm bin on Node (its own
// WebSocket server, scripts/relay/node_websocket.ts) in front of an in-process guest agent.
// Node only: run by `deno task build:npm` against npm/. The same page against the real agent
// is tests/interop/relay_test.ts.
import { test } from "node:test";
import assert from "node:assert/strict";
import { Buffer } from "node:buffer";
import { access, mkdtemp, rm, writeFile } from "node:fs/promises";
import { type AddressInfo, createServer } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { ClipboardType, Selection } from "../../mod.ts";
import { GuestPort, RelayBin } from "../node/_relay_bin.ts";
import { CHROMIUM, launchChromium } from "./_chromium.ts";
import {
  openPage,
  waitDisconnected,
  waitImage,
  waitMatch,
  waitText,
  waitTransferDone,
} from "./_relay_page.ts";
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
  "vdagent-relay's page, served by the npm bin on Node, sends text and images into the guest, shows the guest's clipboard and primary selection, and reconnects to the next relay on its address",
  {
    timeout: 120_000,
  },
  async () => {
    await access(CHROMIUM).catch(() => {
      throw new Error(`No Chromium at ${CHROMIUM}: apt-get install -y chromium, or set CHROMIUM`);
    });
    const port = await GuestPort.open();
    const dir = await mkdtemp(join(tmpdir(), "vdagent-relay-page-"));
    const tokenFile = join(dir, "token");
    await writeFile(tokenFile, "the-node-page-token-0123456789");
    const listen = `127.0.0.1:${await freePort()}`;
    const args = ["--connect", `unix:${port.path}`, "--listen", listen, "--token-file", tokenFile];
    let relay = new RelayBin(args);
    const profile = join(dir, "profile");
    let away = false;
    try {
      const url = (await relay.next("listening")).url as string;
      await relay.next("caps");
      const context = await launchChromium(profile);
      try {
        const { page, errors } = await openPage(context, url, () => away);

        // Typed in the page, pasted in the guest.
        await page.fill("#send-text-input", "typed in the page ✓");
        await page.click("#send-text");
        await port.hostGrabbed(1);
        const text = await port.guest.session.request(Selection.CLIPBOARD, TEXT);
        assert.equal(new TextDecoder().decode(text), "typed in the page ✓");
        await waitText(
          page,
          "clipboard-owner",
          "The host’s copy: text/plain;charset=utf-8, 21 bytes, sent from this page.",
        );

        // Copied in the guest, shown in the page: text, then an image, and the primary selection.
        port.data.set(`0/${TEXT}`, new TextEncoder().encode("copied in the guest\n✓"));
        port.guest.session.grab(Selection.CLIPBOARD, [TEXT]);
        await waitText(page, "clipboard-text", "copied in the guest\n✓");
        port.data.set(`0/${PNG}`, TINY_PNG);
        port.guest.session.grab(Selection.CLIPBOARD, [PNG]);
        await waitImage(page, "clipboard", TINY_PNG.length, 2, 1);
        await waitText(
          page,
          "clipboard-owner",
          `The guest’s copy: image/png, ${TINY_PNG.length} bytes.`,
        );
        port.data.set(`1/${TEXT}`, new TextEncoder().encode("the guest's primary"));
        port.guest.session.grab(Selection.PRIMARY, [TEXT]);
        await waitText(page, "primary-text", "the guest's primary");

        // A 1.5 MiB file from the page crosses the WebSocket in one big frame; the guest pastes
        // it, and the transfer list follows the upload and the relay's write.
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
        await waitTransferDone(page, "To the relay, for the clipboard");
        await waitTransferDone(page, "Into the guest, the clipboard");

        // The relay stops; the page says so, and reconnects to the next one on its address.
        away = true;
        relay.signal("SIGTERM");
        assert.equal(await relay.exited, 0);
        await waitDisconnected(page, "primary");
        relay = new RelayBin(args);
        await waitText(page, "status", "The guest agent is connected.");
        away = false;
        port.data.set(`1/${TEXT}`, new TextEncoder().encode("after the restart"));
        port.guest.session.grab(Selection.PRIMARY, [TEXT]);
        await waitText(page, "primary-text", "after the restart");
        assert.deepEqual(errors, []);

        // A relay on the address with another token: the page says its token is refused.
        away = true;
        relay.signal("SIGTERM");
        assert.equal(await relay.exited, 0);
        await writeFile(tokenFile, "another-token-0123456789abcdef");
        relay = new RelayBin(args);
        await relay.next("listening");
        await waitMatch(page, "status", /refused this page’s token/);
        assert.deepEqual(errors, [], "nothing but the refusals went wrong");
      } finally {
        await context.close();
      }
      relay.signal("SIGTERM");
      assert.equal(await relay.exited, 0);
    } finally {
      await relay.close();
      await port.close();
      await rm(dir, { recursive: true, force: true });
    }
  },
);

/** A TCP port nobody listens on now. */
function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.once("error", reject);
    server.listen(0, "127.0.0.1", () => {
      const { port } = server.address() as AddressInfo;
      server.close(() => resolve(port));
    });
  });
}
