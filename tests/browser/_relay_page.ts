// Drives vdagent-relay's clipboard page (scripts/relay/page/) in Chromium, for the Node test
// against the npm bin (tests/browser/relay_page_test.ts) and the Deno test against the real
// agent (tests/interop/relay_test.ts). Predicates run in the page as functions: the page's
// Content-Security-Policy forbids evaluating strings.
import type { BrowserContext, Page } from "playwright-core";

/** What the predicates use of the DOM (the tests are type-checked without the DOM's types). */
interface Element {
  textContent: string | null;
  hidden: boolean;
  disabled?: boolean;
  dataset: Record<string, string | undefined>;
  complete?: boolean;
  naturalWidth?: number;
  naturalHeight?: number;
}
interface PageGlobals {
  document: {
    getElementById(id: string): Element | null;
    querySelectorAll(selector: string): Element[];
  };
}

const TIMEOUT = 20_000;

/** Resolves once the element's text is `want` (or starts with it). */
export function waitText(page: Page, id: string, want: string, prefix = false): Promise<unknown> {
  return page.waitForFunction(
    ([id, want, prefix]) => {
      const got = (globalThis as unknown as PageGlobals).document.getElementById(id)?.textContent ??
        "";
      return prefix ? got.startsWith(want) : got === want;
    },
    [id, want, prefix] as const,
    { timeout: TIMEOUT },
  );
}

/** Resolves once the element's text matches `pattern` (a RegExp's source), with that text. */
export async function waitMatch(page: Page, id: string, pattern: RegExp): Promise<string> {
  const handle = await page.waitForFunction(
    ([id, source]) => {
      const got = (globalThis as unknown as PageGlobals).document.getElementById(id)?.textContent ??
        "";
      return new RegExp(source).test(got) ? got : false;
    },
    [id, pattern.source] as const,
    { timeout: TIMEOUT },
  );
  return await handle.jsonValue() as string;
}

/** Resolves once the panel of `selection` shows an image: `bytes` long, width × height. */
export function waitImage(
  page: Page,
  selection: "clipboard" | "primary",
  bytes: number,
  width: number,
  height: number,
): Promise<unknown> {
  return page.waitForFunction(
    ([id, bytes, width, height]) => {
      const img = (globalThis as unknown as PageGlobals).document.getElementById(id);
      return img !== null && !img.hidden && img.dataset.bytes === String(bytes) &&
        img.complete === true && img.naturalWidth === width && img.naturalHeight === height;
    },
    [`${selection}-image`, bytes, width, height] as const,
    { timeout: TIMEOUT },
  );
}

/** Resolves once the page says it lost the relay and marks the panel of `selection` unknown. */
export async function waitDisconnected(
  page: Page,
  selection: "clipboard" | "primary",
): Promise<void> {
  await waitMatch(page, "status", /^Disconnected from the relay/);
  await waitText(
    page,
    `${selection}-owner`,
    "Not known while the page is not connected to the relay.",
  );
}

/** One row of the page's transfer list. */
export interface TransferRow {
  text: string;
  percent: number;
  /** How many progress reports the row showed. */
  steps: number;
}

/** Resolves with the first transfer row whose text starts with `label` and that is done. */
export async function waitTransferDone(page: Page, label: string): Promise<TransferRow> {
  const handle = await page.waitForFunction(
    (label) => {
      const rows = (globalThis as unknown as PageGlobals).document.querySelectorAll(
        "#transfers li",
      );
      for (const row of rows) {
        const text = row.textContent ?? "";
        if (text.startsWith(`${label}: done`)) {
          return {
            text,
            percent: Number(row.dataset.percent),
            steps: Number(row.dataset.steps),
          };
        }
      }
      return false;
    },
    label,
    { timeout: TIMEOUT },
  );
  return await handle.jsonValue() as TransferRow;
}

/** The texts of the page's event list, newest first. */
export function eventTexts(page: Page): Promise<string[]> {
  return page.evaluate(() =>
    [...(globalThis as unknown as PageGlobals).document.querySelectorAll("#log li")].map((li) =>
      li.textContent ?? ""
    )
  );
}

/**
 * Connection noise while a relay is away: the page's probe and WebSocket find nobody, or a relay
 * that refuses the page's token.
 */
const AWAY =
  /ERR_CONNECTION_REFUSED|WebSocket connection to .* failed|net::ERR_FAILED|net::ERR_ABORTED|status of 401/;

/**
 * Collects what went wrong in the page: errors, console errors, failed requests, and any request
 * that leaves the relay (the page loads nothing from anywhere else). With `away()` true, failures
 * to reach the relay are expected (it is being replaced) and not collected.
 */
export function watchPage(page: Page, url: string, away: () => boolean = () => false): string[] {
  const errors: string[] = [];
  const origin = new URL(url).origin;
  const own = [`${origin}/`, `${origin.replace("http", "ws")}/`, `blob:${origin}/`, "data:"];
  const push = (text: string) => void (!(away() && AWAY.test(text)) && errors.push(text));
  page.on("pageerror", (error) => errors.push(error.message));
  page.on("console", (m) => void (m.type() === "error" && push(m.text())));
  page.on("requestfailed", (r) => push(`${r.url()}: ${r.failure()?.errorText}`));
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
  away?: () => boolean,
): Promise<{ page: Page; errors: string[] }> {
  const page = context.pages()[0] ?? await context.newPage();
  const errors = watchPage(page, url, away);
  await page.goto(url);
  await waitText(page, "status", "The guest agent is connected.");
  return { page, errors };
}

/** The page's layout at its window size: what a user sees without scrolling. */
export interface Layout {
  width: number;
  height: number;
  scrollWidth: number;
  /** Bounding boxes of the elements asked for, by id. */
  boxes: Record<string, { x: number; y: number; width: number; height: number }>;
}

/** The window's size, the page's scroll width, and the boxes of the elements `ids`. */
export function layout(page: Page, ids: string[]): Promise<Layout> {
  return page.evaluate((ids) => {
    const g = globalThis as unknown as {
      innerWidth: number;
      innerHeight: number;
      document: {
        documentElement: { scrollWidth: number };
        getElementById(id: string): {
          getBoundingClientRect(): { x: number; y: number; width: number; height: number };
        } | null;
      };
    };
    const boxes: Layout["boxes"] = {};
    for (const id of ids) {
      const r = g.document.getElementById(id)!.getBoundingClientRect();
      boxes[id] = { x: r.x, y: r.y, width: r.width, height: r.height };
    }
    return {
      width: g.innerWidth,
      height: g.innerHeight,
      scrollWidth: g.document.documentElement.scrollWidth,
      boxes,
    };
  }, ids);
}

/** Whether two boxes overlap. */
export function overlap(
  a: { x: number; y: number; width: number; height: number },
  b: { x: number; y: number; width: number; height: number },
): boolean {
  return a.x < b.x + b.width && b.x < a.x + a.width && a.y < b.y + b.height &&
    b.y < a.y + a.height;
}
