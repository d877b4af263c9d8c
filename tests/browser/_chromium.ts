// How the browser tests launch Debian's Chromium through playwright-core, on Node
// (tests/browser/) and on Deno (tests/interop/relay_test.ts). It never downloads a browser.
import process from "node:process";
import { type BrowserContext, chromium } from "playwright-core";

/** The browser: Debian's `chromium`, or `CHROMIUM`. */
export const CHROMIUM = process.env.CHROMIUM ?? "/usr/bin/chromium";

/** Flags for a headless run as root in a container, with nothing phoning home. */
const ARGS = [
  "--headless",
  "--no-sandbox",
  "--disable-gpu",
  "--disable-background-networking",
  "--disable-component-update",
  "--no-first-run",
];

/** Launches headless Chromium at 1280×800 with its profile in `profile` (a fresh temp dir). */
export function launchChromium(profile: string): Promise<BrowserContext> {
  return chromium.launchPersistentContext(profile, {
    executablePath: CHROMIUM,
    headless: true,
    args: ARGS,
    // The window a user on a small laptop has: the page must fit it.
    viewport: { width: 1280, height: 800 },
    timeout: 60_000,
  });
}
