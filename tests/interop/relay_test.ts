// vdagent-relay (scripts/relay.ts) as a subprocess against the real Linux guest agent
// (tests/interop/_guest_stack.ts): over standard input and output, across SIGTERM and a restart
// with --state, and through its clipboard page in headless Chromium. Gated like the interop
// suite (tests/interop/_gate.ts); the page also needs Debian's chromium (or CHROMIUM).
import assert from "node:assert/strict";
import { Buffer } from "node:buffer";
import { CHROMIUM, launchChromium } from "../browser/_chromium.ts";
import {
  eventTexts,
  layout,
  openPage,
  overlap,
  waitDisconnected,
  waitImage,
  waitMatch,
  waitText,
  waitTransferDone,
} from "../browser/_relay_page.ts";
import { RelayProcess } from "../cli/_relay_process.ts";
import { announceNotRun, requireBinaries, required, run, SANITIZE } from "./_gate.ts";
import { type GuestStack, type GuestStackOptions, startGuestStack } from "./_guest_stack.ts";
import { makePng } from "./_png.ts";
import { EXPECTED_RESTART, restartScenario } from "./_restart_scenario.ts";
import { prng } from "../_helpers.ts";

const chromiumFound = (() => {
  try {
    return Deno.statSync(CHROMIUM).isFile;
  } catch {
    return false;
  }
})();
if (run && !chromiumFound && !required) {
  announceNotRun(
    "THE RELAY PAGE'S REAL-AGENT TEST",
    `no Chromium at ${CHROMIUM} (apt-get install -y chromium)`,
  );
}

interface Context {
  stack: GuestStack;
  dir: string;
  start(args: string[], name: string): RelayProcess;
}

/** Registers a test with its own guest stack and temp dir; on failure prints logs and events. */
function scenario(
  name: string,
  stackOptions: GuestStackOptions,
  fn: (context: Context) => Promise<void>,
): void {
  if (!run) return;
  Deno.test({ name, ...SANITIZE }, async () => {
    requireBinaries();
    const stack = await startGuestStack(stackOptions);
    const dir = await Deno.makeTempDir({ prefix: "vdagent-relay-interop-" });
    const relays: RelayProcess[] = [];
    try {
      await fn({
        stack,
        dir,
        start: (args, name) => {
          const relay = new RelayProcess(["--connect", `unix:${stack.socketPath}`, ...args], {
            name,
          });
          relays.push(relay);
          return relay;
        },
      });
    } catch (error) {
      // deno-lint-ignore no-console
      console.error(
        `\n=== ${name} failed ===\n--- agent log ---\n${stack.log()}\n${
          relays.map((r) => r.report()).join("\n")
        }`,
      );
      throw error;
    } finally {
      await Promise.all(relays.map((r) => r.close()));
      await stack.stop();
      await Deno.remove(dir, { recursive: true });
    }
  });
}

const logCount = (stack: GuestStack, re: RegExp, since = 0) => stack.findLogs(re, { since }).length;

/** The relay copies `text` into the guest's CLIPBOARD; resolves once xclip pastes it. */
async function hostToGuest(stack: GuestStack, relay: RelayProcess, text: string, id: string) {
  const mark = stack.logMark();
  await relay.send({ cmd: "copy", id, text });
  assert.deepEqual(await relay.answer(id), { event: "ok", id, cmd: "copy" });
  await stack.waitForLog(/received clipboard grab, arg1: 0,/, { since: mark, src: "vdagent" });
  await stack.waitForGuestOwner("clipboard", "agent");
  const paste = await stack.guestPaste();
  assert.ok(paste.ok, paste.stderr);
  assert.equal(paste.text, text);
  await relay.next("served", (e) => e.selection === "clipboard", 0);
}

/** The guest's user copies `text`; the relay reports the offer and pastes it. */
async function guestToHost(
  stack: GuestStack,
  relay: RelayProcess,
  text: string,
  id: string,
  selection: "clipboard" | "primary" = "clipboard",
) {
  const since = relay.events.length;
  await stack.guestCopy(text, { selection });
  const offer = await relay.next("offer", (e) => e.selection === selection, since);
  await relay.send({ cmd: "paste", id, selection });
  const data = await relay.answer(id);
  assert.equal(data.event, "data", JSON.stringify(data));
  assert.equal(data.text, text);
  return offer;
}

scenario(
  "vdagent-relay restarted with --state over a port that closes with each client keeps the session: the guest's copy made while no relay is connected reaches the next relay, and so do immediate restarts (the same outcome as in a QEMU guest)",
  { onHostDisconnect: "reopen-port" },
  async ({ stack, dir, start }) => {
    const state = `${dir}/vm1.state`;
    const outcome = await restartScenario({
      copy: (text, selection) => stack.guestCopy(text, { selection }),
      paste: (selection, timeoutMs) =>
        stack.guestPaste({ selection, ...(timeoutMs ? { timeoutMs } : {}) }),
      agentOwns: (selection) => stack.waitForGuestOwner(selection, "agent"),
      mark: () => stack.logMark(),
      waitForLog: async (re, since, src) => {
        await stack.waitForLog(re, { since, src });
      },
      countLog: (re, since) => stack.findLogs(re, { since: since ?? 0 }).length,
    }, (name) => start(["--state", state], `relay ${name}`));
    assert.deepEqual(outcome, EXPECTED_RESTART);
    await Deno.stat(state); // the last relay handed off in turn
  },
);

/** Kills of the SIGKILL scenario; `VDAGENT_KILLS` changes it, `VDAGENT_KILL_SEED` the moments. */
const KILLS = Number(Deno.env.get("VDAGENT_KILLS") ?? 50);
const KILL_SEED = Number(Deno.env.get("VDAGENT_KILL_SEED") ?? 1);

scenario(
  `vdagent-relay killed with SIGKILL at ${KILLS} random moments while both sides copy, over a port that closes with each client: the next relay, started on the state on disk, serves every guest copy kept before the kill, and the guest pastes every host copy acknowledged before it`,
  { onHostDisconnect: "reopen-port" },
  async ({ stack, dir, start }) => {
    const state = `${dir}/vm1.state`;
    const random = prng(KILL_SEED);
    let relay = start(["--state", state], "R0");
    await relay.next("caps", () => true, 0, 20_000);
    const boot = stack.logMark();
    /** Guest texts in the order copied, and the last one the relay reported kept. */
    const guestTexts: string[] = [];
    let kept: string | undefined;
    const hostTexts: string[] = [];
    let acknowledged: string | undefined;
    const counts = { guestCopies: 0, keptCopies: 0, hostCopies: 0, servedKept: 0 };
    for (let k = 1; k <= KILLS; k++) {
      const victim = relay;
      let killed = false;
      const killAt = 150 + Math.floor(random() * 1350);
      const timer = setTimeout(() => {
        killed = true;
        victim.signal("SIGKILL");
      }, killAt);
      const guestSide = (async () => {
        for (let i = 0; !killed; i++) {
          const text = `guest ${k}.${i}`;
          const since = victim.events.length;
          await stack.guestCopy(text);
          guestTexts.push(text);
          counts.guestCopies++;
          // Printed once the state holding it is on disk: from then on it is the host's.
          const event = await victim.next("kept", (e) => e.selection === "clipboard", since, 5000)
            .catch(() => undefined);
          if (event === undefined) break;
          kept = text;
          counts.keptCopies++;
        }
      })();
      const hostSide = (async () => {
        for (let i = 0; !killed; i++) {
          const text = `host ${k}.${i}`;
          const id = `copy ${text}`;
          hostTexts.push(text);
          await victim.send({ cmd: "copy", id, selection: "primary", text }).catch(() => {});
          // Acknowledged once the state holding it is on disk.
          const answer = await victim.answer(id, 5000).catch(() => undefined);
          if (answer?.event !== "ok") break;
          acknowledged = text;
          counts.hostCopies++;
          await new Promise((resolve) => setTimeout(resolve, 50));
        }
      })();
      await victim.exited;
      clearTimeout(timer);
      await Promise.all([guestSide, hostSide]);

      const mark = stack.logMark();
      relay = start(["--state", state], `R${k}`);
      await relay.next("started", () => true, 0, 20_000);
      if (kept !== undefined) {
        // The guest's copy: kept from the state, or, for a copy made after it, offered anew.
        await relay.send({ cmd: "paste", id: "paste", selection: "clipboard" });
        const data = await relay.answer("paste", 15_000);
        assert.equal(data.event, "data", `kill ${k}: ${JSON.stringify(data)}`);
        const at = guestTexts.indexOf(String(data.text));
        assert.ok(
          at >= guestTexts.indexOf(kept),
          `kill ${k}: the host pasted ${JSON.stringify(data.text)}, older than ${kept}`,
        );
        if (data.kept === true) counts.servedKept++;
      }
      if (acknowledged !== undefined) {
        // The host's copy, grabbed again by the new relay once the guest answered it.
        await stack.waitForLog(/received clipboard grab, arg1: 1,/, {
          since: mark,
          src: "vdagent",
        });
        await stack.waitForGuestOwner("primary", "agent");
        const paste = await stack.guestPaste({ selection: "primary" });
        assert.ok(paste.ok, `kill ${k}: the guest's paste failed: ${paste.stderr}`);
        assert.ok(
          hostTexts.indexOf(paste.text) >= hostTexts.indexOf(acknowledged),
          `kill ${k}: the guest pasted ${JSON.stringify(paste.text)}, older than ${acknowledged}`,
        );
      }
    }
    relay.signal("SIGTERM");
    assert.equal(await relay.exited, 0);
    // deno-lint-ignore no-console
    console.log(`[kill] ${KILLS} kills: ${JSON.stringify(counts)}`);
    assert.ok(counts.keptCopies >= KILLS && counts.hostCopies >= KILLS, JSON.stringify(counts));
    assert.equal(logCount(stack, /grab discard/, boot), 0);
  },
);

scenario(
  "vdagent-relay hands off on SIGTERM through a port that stays open (continued): the guest's copy stays fetchable",
  { onHostDisconnect: "keep-port" },
  async ({ stack, dir, start }) => {
    const state = `${dir}/vm1.state`;
    const a = start(["--state", state], "relay A");
    await a.next("caps");
    await guestToHost(stack, a, "copied before the hand-off", "a1");
    a.signal("SIGTERM");
    assert.equal(await a.exited, 0);
    const b = start(["--state", state, "--resume", "continued"], "relay B");
    // B knows the guest's offer from the checkpoint, and fetches it without a new copy.
    const offer = await b.next("offer");
    assert.equal(offer.serial, 0);
    await b.send({ cmd: "paste", id: "b1" });
    assert.equal((await b.answer("b1")).text, "copied before the hand-off");
    await hostToGuest(stack, b, "from relay B", "b2");
    assert.equal(logCount(stack, /New client connected/), 1);
    assert.equal(logCount(stack, /grab discard/), 0);
  },
);

scenario(
  "vdagent-relay exits with code 3 and a clear message when the real agent's socket closes",
  {},
  async ({ stack, start }) => {
    const relay = start([], "relay");
    await relay.next("caps");
    stack.disconnectHost();
    assert.equal(await relay.exited, 3);
    assert.match(relay.stderr, /the guest's side closed the connection on unix:/);
  },
);

/** A TCP port nobody listens on now, for relays that must share one address. */
function freePort(): number {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const port = (listener.addr as Deno.NetAddr).port;
  listener.close();
  return port;
}

/** `bytes` as the page writes a size: "1,234 bytes". */
const size = (bytes: number) => `${bytes.toLocaleString("en")} bytes`;

if (run && (chromiumFound || required)) {
  scenario(
    "vdagent-relay's page in headless Chromium against the real agent, at 1280×800: text and images both ways on CLIPBOARD and PRIMARY, per-transfer progress, the user's own clipboard, a large image that leaves the controls in view, and a relay hand-off (SIGTERM, a new relay on the same address) that the page reconnects through, after which copies work both ways",
    { onHostDisconnect: "reopen-port" },
    async ({ stack, dir, start }) => {
      if (!chromiumFound) {
        throw new Error(`No Chromium at ${CHROMIUM}: apt-get install -y chromium`);
      }
      const tokenFile = `${dir}/token`;
      await Deno.writeTextFile(tokenFile, "the-page-test-token-0123456789");
      const args = [
        "--state",
        `${dir}/vm1.state`,
        "--listen",
        `127.0.0.1:${freePort()}`,
        "--token-file",
        tokenFile,
      ];
      let relay = start(args, "relay A");
      const url = (await relay.next("listening")).url as string;
      await relay.next("caps");
      const profile = await Deno.makeTempDir({ prefix: "vdagent-relay-chromium-" });
      const context = await launchChromium(profile);
      let away = false;
      // The screenshots: kept in VDAGENT_SCREENSHOTS when set, to look at.
      const shots = Deno.env.get("VDAGENT_SCREENSHOTS") ?? dir;
      try {
        await context.grantPermissions(["clipboard-read", "clipboard-write"], {
          origin: new URL(url).origin,
        });
        const { page, errors } = await openPage(context, url, () => away);
        const hostToGuest = async (
          text: string,
          selection: "clipboard" | "primary",
        ): Promise<void> => {
          const mark = stack.logMark();
          await page.selectOption("#send-selection", selection);
          await page.fill("#send-text-input", text);
          await page.click("#send-text");
          await waitText(page, "status", `Sent: the guest’s ${selection} holds it now.`);
          await waitText(
            page,
            `${selection}-owner`,
            `The host’s copy: text/plain;charset=utf-8, ${
              size(new TextEncoder().encode(text).length)
            }, sent from this page.`,
          );
          await stack.waitForLog(
            new RegExp(`received clipboard grab, arg1: ${selection === "clipboard" ? 0 : 1},`),
            { since: mark, src: "vdagent" },
          );
          await stack.waitForGuestOwner(selection, "agent");
          const pasted = await stack.guestPaste({ selection });
          assert.ok(pasted.ok, pasted.stderr);
          assert.equal(pasted.text, text);
        };
        /** The host's grab reaches the agent after `mark`; xclip pastes `png` from it. */
        const guestPastesHostImage = async (mark: number, png: Uint8Array): Promise<void> => {
          await stack.waitForLog(/received clipboard grab, arg1: 0,/, {
            since: mark,
            src: "vdagent",
          });
          await stack.waitForGuestOwner("clipboard", "agent");
          const image = await stack.guestPaste({ target: "image/png" });
          assert.ok(image.ok, image.stderr);
          assert.deepEqual(image.data, png);
        };
        const guestToPage = async (
          text: string,
          selection: "clipboard" | "primary",
        ): Promise<void> => {
          await stack.guestCopy(text, { selection });
          await waitText(page, `${selection}-text`, text);
          await waitText(
            page,
            `${selection}-owner`,
            `The guest’s copy: text/plain;charset=utf-8, ${
              size(new TextEncoder().encode(text).length)
            }.`,
          );
          assert.equal(await page.isHidden(`#${selection}-image`), true);
        };

        // Text both ways, on both selections.
        await hostToGuest("typed in the page ✓ 日本", "clipboard");
        await hostToGuest("typed for the primary selection", "primary");
        await guestToPage("copied in the guest\nfor the page ✓", "clipboard");
        await guestToPage("selected in the guest", "primary");

        // The guest's text onto the user's own clipboard, through the Clipboard API.
        await page.click("#clipboard-copy");
        await waitText(page, "status", "On your clipboard: text/plain;charset=utf-8", true);
        assert.equal(
          await page.evaluate(() =>
            (globalThis as unknown as {
              navigator: { clipboard: { readText(): Promise<string> } };
            }).navigator.clipboard.readText()
          ),
          "copied in the guest\nfor the page ✓",
        );

        // A large image copied in the guest: shown decoded, with one byte count, its transfer
        // followed step by step, and the controls still in view at 1280×800.
        const large = await makePng(1600, 1000, 11);
        await stack.guestCopy(large, { target: "image/png" });
        await waitImage(page, "clipboard", large.length, 1600, 1000);
        const owner = await waitMatch(page, "clipboard-owner", /^The guest’s copy: image\/png/);
        assert.equal(owner, `The guest’s copy: image/png, ${size(large.length)}.`);
        const fetched = await waitTransferDone(page, "From the guest, the clipboard");
        assert.ok(fetched.steps >= 2, `the fetch showed ${fetched.steps} steps`);
        assert.doesNotMatch(fetched.text, /bytes/, "the bar says no second byte count");
        await page.screenshot({ path: `${shots}/page-large-image.png` });
        const box = await layout(page, [
          "clipboard-image",
          "clipboard-copy",
          "primary",
          "send-text-input",
          "send-text",
          "send-image-input",
          "status",
        ]);
        assert.equal(box.width, 1280);
        assert.equal(box.height, 800);
        assert.ok(box.scrollWidth <= box.width, `the page is ${box.scrollWidth} px wide`);
        for (const id of ["clipboard-copy", "primary", "send-text-input", "send-text", "status"]) {
          assert.ok(
            !overlap(box.boxes["clipboard-image"]!, box.boxes[id]!),
            `the image covers ${id}`,
          );
        }
        for (const id of ["clipboard-copy", "send-text", "send-image-input", "status"]) {
          const b = box.boxes[id]!;
          assert.ok(b.y >= 0 && b.y + b.height <= box.height, `${id} is out of view: ${b.y}`);
        }

        // The image onto the user's clipboard: as a PNG of the same picture.
        await page.click("#clipboard-copy");
        await waitText(page, "status", `On your clipboard: image/png, ${size(large.length)}.`);
        const onClipboard = await page.evaluate(async () => {
          const g = globalThis as unknown as {
            navigator: {
              clipboard: {
                read(): Promise<{ types: string[]; getType(t: string): Promise<Blob> }[]>;
              };
            };
            createImageBitmap(blob: Blob): Promise<{ width: number; height: number }>;
          };
          const [item] = await g.navigator.clipboard.read();
          const bitmap = await g.createImageBitmap(await item!.getType("image/png"));
          return { types: item!.types, width: bitmap.width, height: bitmap.height };
        });
        assert.deepEqual(onClipboard, { types: ["image/png"], width: 1600, height: 1000 });

        // A large image sent from the page: up to the relay, then into the guest as it pastes.
        const big = await makePng(1024, 640, 12);
        assert.ok(big.length > 1024 * 1024, `${big.length} bytes`);
        let mark = stack.logMark();
        await page.selectOption("#send-selection", "clipboard");
        await page.setInputFiles("#send-image-input", {
          name: "big.png",
          mimeType: "image/png",
          buffer: Buffer.from(big),
        });
        await waitText(
          page,
          "clipboard-owner",
          `The host’s copy: image/png, ${size(big.length)}, sent from this page.`,
        );
        await guestPastesHostImage(mark, big);
        await waitTransferDone(page, "To the relay, for the clipboard");
        await waitTransferDone(page, "Into the guest, the clipboard");

        // The hand-off: relay A goes on SIGTERM; the page says so, knows nothing for now, and
        // reconnects to relay B on the same address, which tells it the session's state.
        away = true;
        relay.signal("SIGTERM");
        assert.equal(await relay.exited, 0);
        await waitDisconnected(page, "clipboard");
        mark = stack.logMark();
        relay = start(args, "relay B");
        await waitText(page, "status", "The guest agent is connected.");
        away = false;
        await waitText(
          page,
          "clipboard-owner",
          `The host’s copy: image/png, ${size(big.length)}, sent from this page.`,
        );
        // The guest holds relay B's copy again, and pastes it.
        await guestPastesHostImage(mark, big);

        // And the next copies work both ways.
        await hostToGuest("after the hand-off, from the page", "clipboard");
        await guestToPage("after the hand-off, from the guest", "clipboard");
        await guestToPage("after the hand-off, selected", "primary");

        // The event list reads as sentences, one per event, with the reconnection in it.
        const events = await eventTexts(page);
        assert.ok(
          events.every((e) => /^\d\d:\d\d:\d\d [A-Z(]/.test(e) && !e.includes("{")),
          events.join("\n"),
        );
        assert.equal(
          events.filter((e) => /Connected to the relay, which relays unix:/.test(e)).length,
          2,
        );
        assert.ok(events.some((e) => e.includes("Disconnected from the relay")));
        assert.ok(events.some((e) => e.includes("The guest copied on the primary selection: ")));
        assert.ok(
          events.some((e) =>
            e.includes("The guest pasted the host’s copy of the clipboard: image/png")
          ),
        );
        assert.deepEqual(errors, []);
        await page.screenshot({ path: `${shots}/page-after-hand-off.png` });
        for (const shot of ["page-large-image.png", "page-after-hand-off.png"]) {
          assert.ok((await Deno.stat(`${shots}/${shot}`)).size > 0, shot);
        }
      } finally {
        await context.close();
        await Deno.remove(profile, { recursive: true });
      }
      relay.signal("SIGTERM");
      assert.equal(await relay.exited, 0);
    },
  );
}
