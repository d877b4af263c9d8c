// vdagent-relay (scripts/relay.ts) as a subprocess against the real Linux guest agent
// (tests/interop/_guest_stack.ts): over standard input and output, across SIGTERM and a restart
// with --state, and through its clipboard page in headless Chromium. Gated like the interop
// suite (tests/interop/_gate.ts); the page also needs Debian's chromium (or CHROMIUM).
import assert from "node:assert/strict";
import { Buffer } from "node:buffer";
import { CHROMIUM, launchChromium } from "../browser/_chromium.ts";
import { openPage, waitImage, waitText } from "../browser/_relay_page.ts";
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

if (run && (chromiumFound || required)) {
  scenario(
    "vdagent-relay's page in headless Chromium: typed text is pasted by xclip in the guest, and the guest's copies show in the page",
    {},
    async ({ stack, start }) => {
      if (!chromiumFound) {
        throw new Error(`No Chromium at ${CHROMIUM}: apt-get install -y chromium`);
      }
      const relay = start(["--listen", "127.0.0.1:0"], "relay");
      const url = (await relay.next("listening")).url as string;
      await relay.next("caps");
      const profile = await Deno.makeTempDir({ prefix: "vdagent-relay-chromium-" });
      const context = await launchChromium(profile);
      try {
        const { page, errors } = await openPage(context, url);

        // Typed in the page, pasted by xclip in the guest.
        let mark = stack.logMark();
        const typed = "typed in the page ✓ 日本";
        await page.fill("#send-text-input", typed);
        await page.click("#send-text");
        await waitText(page, "status", "Sent", true);
        await stack.waitForLog(/received clipboard grab, arg1: 0,/, {
          since: mark,
          src: "vdagent",
        });
        await stack.waitForGuestOwner("clipboard", "agent");
        const pasted = await stack.guestPaste();
        assert.ok(pasted.ok, pasted.stderr);
        assert.equal(pasted.text, typed);

        // Copied in the guest, shown in the page.
        const copied = "copied in the guest\nfor the page ✓";
        await stack.guestCopy(copied);
        await waitText(page, "guest-text", copied);
        assert.equal(await page.isHidden("#guest-image"), true);

        // An image copied in the guest shows as an image.
        const png = await makePng(64, 48, 11);
        await stack.guestCopy(png, { target: "image/png" });
        // Decoded by the browser: its size is the PNG's.
        await waitImage(page, png.length, 64, 48);

        // A large image sent from the page: the progress bar follows the guest's paste.
        const big = await makePng(1024, 640, 12);
        assert.ok(big.length > 1024 * 1024, `${big.length} bytes`);
        mark = stack.logMark();
        await page.setInputFiles("#send-image-input", {
          name: "big.png",
          mimeType: "image/png",
          buffer: Buffer.from(big),
        });
        await stack.waitForLog(/received clipboard grab, arg1: 0,/, {
          since: mark,
          src: "vdagent",
        });
        await stack.waitForGuestOwner("clipboard", "agent");
        const image = await stack.guestPaste({ target: "image/png" });
        assert.ok(image.ok, image.stderr);
        assert.deepEqual(image.data, big);
        // Progress counts the message's payload: the data and 8 bytes of selection and type.
        await waitText(page, "progress-label", `to the guest done (${big.length + 8} bytes)`);
        assert.deepEqual(errors, []);
      } finally {
        await context.close();
        await Deno.remove(profile, { recursive: true });
      }
      relay.signal("SIGTERM");
      assert.equal(await relay.exited, 0);
    },
  );
}
