// Drives vdagent-relay's clipboard page (scripts/relay/page/) in Chromium, for the Node test
// against the npm bin (tests/browser/relay_page_test.ts) and the Deno test against the real
// agent (tests/interop/relay_test.ts). Predicates run in the page as functions: the page's
// Content-Security-Policy forbids evaluating strings.
import type { BrowserContext, Page } from "playwright-core";

/** What the predicates use of the DOM (the tests are type-checked without the DOM's types). */
interface PageGlobals {
  document: {
    getElementById(id: string): {
      textContent: string | null;
      hidden: boolean;
      dataset: Record<string, string | undefined>;
      complete?: boolean;
      naturalWidth?: number;
      naturalHeight?: number;
    } | null;
  };
}

/** Resolves once the element's text is `want` (or starts with it). */
export function waitText(page: Page, id: string, want: string, prefix = false): Promise<unknown> {
  return page.waitForFunction(
    ([id, want, prefix]) => {
      const got = (globalThis as unknown as PageGlobals).document.getElementById(id)?.textContent ??
        "";
      return prefix ? got.startsWith(want) : got === want;
    },
    [id, want, prefix] as const,
    { timeout: 15_000 },
  );
}

/** Resolves once the page shows the guest's image: `bytes` long, decoded to width × height. */
export function waitImage(
  page: Page,
  bytes: number,
  width: number,
  height: number,
): Promise<unknown> {
  return page.waitForFunction(
    ([bytes, width, height]) => {
      const img = (globalThis as unknown as PageGlobals).document.getElementById("guest-image");
      return img !== null && !img.hidden && img.dataset.bytes === String(bytes) &&
        img.complete === true && img.naturalWidth === width && img.naturalHeight === height;
    },
    [bytes, width, height] as const,
    { timeout: 15_000 },
  );
}

/**
 * Collects what went wrong in the page: errors, console errors, failed requests, and any request
 * that leaves the relay (the page loads nothing from anywhere else).
 */
export function watchPage(page: Page, url: string): string[] {
  const errors: string[] = [];
  const origin = new URL(url).origin;
  const own = [`${origin}/`, `${origin.replace("http", "ws")}/`, `blob:${origin}/`, "data:"];
  page.on("pageerror", (error) => errors.push(error.message));
  page.on("console", (m) => void (m.type() === "error" && errors.push(m.text())));
  page.on("requestfailed", (r) => errors.push(`${r.url()}: ${r.failure()?.errorText}`));
  page.on("request", (r) => {
    if (!own.some((prefix) => r.url().startsWith(prefix))) {
      errors.push(`request outside the relay: ${r.url()}`);
    }
  });
  return errors;
}

/**
 * Opens the relay's page at `url` and waits until it says the guest agent is connected. `errors`
 * collects what goes wrong in it (see {@linkcode watchPage}).
 */
export async function openPage(
  context: BrowserContext,
  url: string,
): Promise<{ page: Page; errors: string[] }> {
  const page = context.pages()[0] ?? await context.newPage();
  const errors = watchPage(page, url);
  await page.goto(url);
  await waitText(page, "status", "The guest agent is connected.");
  return { page, errors };
}
