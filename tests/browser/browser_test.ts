// The npm build's ESM in headless Chromium (Debian's `chromium`, driven by
// playwright-core). Node only: run by `deno task build:npm` against npm/.
import { test } from "node:test";
import assert from "node:assert/strict";
import { access, mkdtemp, readFile, rm } from "node:fs/promises";
import { createServer } from "node:http";
import type { AddressInfo } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { ClipboardType } from "../../mod.ts";
import { CHROMIUM, launchChromium } from "./_chromium.ts";
import {
  fnv1a,
  GUEST_TEXT,
  guestLarge,
  HAND_OFF_AT,
  hostImage,
  type PageResult,
  RELAY_B_TEXT,
} from "./page.ts";

/** The package root: npm/ in the build. */
const root = new URL("../../", import.meta.url);
const TYPES: Record<string, string> = { ".js": "text/javascript", ".html": "text/html" };

/** Serves the package's files on loopback; `/` is an empty page. */
async function serve(): Promise<{ origin: string; close(): Promise<void> }> {
  const server = createServer(async (request, response) => {
    const path = new URL(request.url ?? "/", "http://localhost").pathname;
    if (path === "/") {
      response.writeHead(200, { "content-type": "text/html" }).end(
        '<!doctype html><link rel="icon" href="data:,"><title>vdagent</title>',
      );
      return;
    }
    const type = TYPES[path.slice(path.lastIndexOf("."))];
    const file = new URL(`.${path}`, root);
    if (type === undefined || path.includes("..") || !file.href.startsWith(root.href)) {
      response.writeHead(404).end();
      return;
    }
    try {
      const body = await readFile(file);
      response.writeHead(200, { "content-type": type }).end(body);
    } catch {
      response.writeHead(404).end();
    }
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const { port } = server.address() as AddressInfo;
  return {
    origin: `http://127.0.0.1:${port}`,
    close: () => new Promise((resolve) => server.close(() => resolve())),
  };
}

test(
  "the npm build runs a host and a guest pipeline back to back in headless Chromium, and hands the host side off mid-transfer",
  {
    timeout: 120_000,
  },
  async () => {
    await access(CHROMIUM).catch(() => {
      throw new Error(`No Chromium at ${CHROMIUM}: apt-get install -y chromium, or set CHROMIUM`);
    });
    const server = await serve();
    const profile = await mkdtemp(join(tmpdir(), "vdagent-chromium-"));
    try {
      const context = await launchChromium(profile);
      try {
        const page = context.pages()[0] ?? await context.newPage();
        const errors: string[] = [];
        page.on("pageerror", (error) => errors.push(error.message));
        page.on("response", (response) => {
          if (!response.ok()) errors.push(`${response.status()} ${response.url()}`);
        });
        page.on("console", (message) => {
          if (message.type() === "error") errors.push(message.text());
        });
        await page.goto(`${server.origin}/`);
        const result = await page.evaluate(
          "import('/tests/browser/page.js').then((page) => page.run())",
        ) as PageResult;
        const image = hostImage();
        const large = guestLarge();
        // HAND_OFF_AT bytes into the large paste's wire bytes, relay A had read
        // whole chunks of 8 + 2048 bytes and part of the next. The checkpoint's
        // INBOUND section (docs/checkpoint-format.md) holds the message so far
        // as one chunk, then the chunk in progress behind its own header.
        const chunks = Math.floor(HAND_OFF_AT / (8 + 2048));
        const inChunk = HAND_OFF_AT - chunks * (8 + 2048) - 8;
        assert.ok(chunks > 0 && inChunk > 0, "the hand-off falls inside a chunk's payload");
        assert.match(String(await page.evaluate("navigator.userAgent")), /HeadlessChrome\//);
        assert.deepEqual(result, {
          hostPasted: GUEST_TEXT,
          guestPasted: { length: image.length, hash: fnv1a(image) },
          guestOffered: [ClipboardType.UTF8_TEXT, ClipboardType.UTF8_TEXT],
          handOff: {
            checkpoint: {
              mode: "lossless",
              inboundBytes: 8 + chunks * 2048 + 8 + inChunk,
              outboundBytes: 0,
            },
            requestOnA: "rejected: CLOSED",
            resumedOnB: [{
              selection: 0,
              type: ClipboardType.UTF8_TEXT,
              data: { length: large.length, hash: fnv1a(large) },
            }],
            guestPastedFromB: RELAY_B_TEXT,
            newClients: 1,
          },
          relayADone: "resolved",
          hostDone: "resolved",
          guestDone: "resolved",
        });
        assert.deepEqual(errors, []);
      } finally {
        await context.close();
      }
    } finally {
      await server.close();
      await rm(profile, { recursive: true, force: true });
    }
  },
);
