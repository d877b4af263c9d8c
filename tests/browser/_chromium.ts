// How the browser tests launch Debian's Chromium through playwright-core, on Node
// (tests/browser/) and on Deno (tests/interop/relay_test.ts). It never downloads a browser.
import process from "node:process";

/** The browser: Debian's `chromium`, or `CHROMIUM`. */
export const CHROMIUM = process.env.CHROMIUM ?? "/usr/bin/chromium";

/** Flags for a headless run as root in a container, with nothing phoning home. */
export const CHROMIUM_ARGS = [
  "--headless",
  "--no-sandbox",
  "--disable-gpu",
  "--disable-background-networking",
  "--disable-component-update",
  "--no-first-run",
];
