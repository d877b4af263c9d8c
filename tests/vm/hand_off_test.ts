// vdagent-relay handed off in a real QEMU guest (tests/vm/_vm.ts), over QEMU's socket chardev:
// b. restarts with --state, the guest copying while no relay is connected; c. live migrations in
// a chain, both sides copying every 250 ms, in every arrangement the relay supports; d. the gap
// each way per arrangement, as figures. Each asserts on what the guest user sees (xclip in the
// guest), on the agent's log and on the relays' events.
//
// VDAGENT_VM_MIGRATIONS sets the migrations per arrangement (default 20); with
// VDAGENT_VM_REPORT=1 every migration's figures are printed, and the summary always is.
import assert from "node:assert/strict";
import { RelayProcess } from "../cli/_relay_process.ts";
import { requirePrerequisites, run, SANITIZE } from "./_gate.ts";
import { type Guest, Guests } from "./_vm.ts";
import { userTicker } from "./_user_ticker.ts";
import { EXPECTED_RESTART, restartScenario } from "../interop/_restart_scenario.ts";

const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms));
const PERIOD = 250;
const MIGRATIONS = Number(Deno.env.get("VDAGENT_VM_MIGRATIONS") ?? 20);

function report(line: string, always = false): void {
  if (!always && Deno.env.get("VDAGENT_VM_REPORT") !== "1") return;
  // deno-lint-ignore no-console
  console.error(`[vm] ${line}`);
}

/** A scenario with its own guests, relays and temp dir; on failure every log is printed. */
function scenario(
  name: string,
  fn: (context: { guests: Guests; dir: string; relays: RelayProcess[] }) => Promise<void>,
): void {
  if (!run) return;
  Deno.test({ name, ...SANITIZE }, async () => {
    requirePrerequisites();
    const guests = new Guests();
    const relays: RelayProcess[] = [];
    const dir = await Deno.makeTempDir({ prefix: "vdagent-vm-hand-off-" });
    try {
      await fn({ guests, dir, relays });
    } catch (error) {
      // deno-lint-ignore no-console
      console.error(
        `\n=== ${name} failed ===\n${guests.dump()}\n${relays.map((r) => r.report()).join("\n")}`,
      );
      throw error;
    } finally {
      await Promise.all(relays.map((r) => r.close()));
      await guests.stop();
      await Deno.remove(dir, { recursive: true });
    }
  });
}

/** A relay on `guest`'s agent socket. */
function relay(
  relays: RelayProcess[],
  guest: Guest,
  state: string,
  name: string,
  extra: string[] = [],
): RelayProcess {
  const r = new RelayProcess(
    ["--connect", `unix:${guest.vdagentSocket}`, "--state", state, ...extra],
    { name },
  );
  relays.push(r);
  return r;
}

/** The relay copies text on `selection`; resolves once the guest's agent owns it. */
async function hostCopies(guest: Guest, r: RelayProcess, selection: string, text: string) {
  const id = `${r.name}-${text}`;
  await r.send({ cmd: "copy", id, selection, text });
  assert.equal((await r.answer(id)).event, "ok");
  await guest.waitForOwner(selection as "clipboard", "agent", { target: "UTF8_STRING" });
}

/** The guest copies text; resolves with the relay's offer and what it fetched. */
async function guestCopies(guest: Guest, r: RelayProcess, selection: string, text: string) {
  const since = r.events.length;
  await guest.copy(text, { selection: selection as "clipboard" });
  const offer = await r.next("offer", (e) => e.selection === selection, since, 15_000);
  const id = `${r.name}-paste-${text}`;
  await r.send({ cmd: "paste", id, selection });
  const data = await r.answer(id, 15_000);
  return { offer, data };
}

const diagnostics = (r: RelayProcess) =>
  r.events.filter((e) => e.event === "diagnostic").map((e) => String(e.code));

// ---- b. restarts ------------------------------------------------------------------------------

scenario(
  "b. vdagent-relay restarted with --state over QEMU's socket keeps the session: the guest's copy made while no relay is connected reaches the next relay, and so do immediate restarts (the same outcome as on the pty stand-in)",
  async ({ guests, dir, relays }) => {
    const g = await guests.boot("b");
    const state = `${dir}/vm.state`;
    const outcome = await restartScenario({
      copy: (text, selection) => g.copy(text, { selection }),
      paste: (selection, timeoutMs) => g.paste({ selection, ...(timeoutMs ? { timeoutMs } : {}) }),
      agentOwns: async (selection) => {
        await g.waitForOwner(selection, "agent", { target: "UTF8_STRING" });
      },
      mark: () => g.mark(),
      waitForLog: async (re, since, src) => {
        await g.waitFor(re, { since, src });
      },
      countLog: (re, since) => g.find(re, { since: since ?? 0 }).length,
    }, (name) => relay(relays, g, state, name));
    assert.deepEqual(outcome, EXPECTED_RESTART);
  },
);

// ---- c, d. migrations -------------------------------------------------------------------------

/**
 * How the next relay takes over in a live migration:
 * - `running`: the destination runs at once; the next relay connects once the old one has
 *   handed off (`--state`, reconnected: the guest's port closed when it resumed there).
 * - `paused`: the destination waits (`-S`); the next relay (`--standby`) connected to it before
 *   the migration, takes over when the old one hands off, then the destination is resumed: the
 *   guest's port stays open. Nothing connects to the destination between the migration's end and
 *   `cont`: a chardev opened then was followed, in about one run of 20 migrations in three, by the
 *   guest's kernel failing on a corrupted slab list (QEMU 7.2, TCG) a few seconds later.
 * - `standby`: the destination runs at once; the next relay (`--standby`) connected to it
 *   before the migration, and takes over when the old one hands off: the port stays open.
 */
type Arrangement = "running" | "paused" | "standby";

interface Figures {
  totalMs: number;
  downtimeMs: number;
  /** Host clock: from the completion to the new relay's start. */
  startedMs: number;
  /** Host clock: the last guest copy fetched through the old relay, to the first through the new. */
  guestToHostMs: number;
  /** Guest clock: the guest's last paste of the old relay's copy, to its first of the new one's. */
  hostToGuestMs: number;
}

const median = (values: number[]) => [...values].sort((a, b) => a - b)[values.length >> 1]!;

function migrations(arrangement: Arrangement): void {
  scenario(
    `c. ${MIGRATIONS} live migrations in a row, destination ${
      arrangement === "paused"
        ? "paused until the new relay, standing by on it, has taken over"
        : arrangement === "standby"
        ? "running, the new relay standing by on it"
        : "running at once, the new relay after"
    }: no grab discarded, no copy lost either way, the agent never restarted`,
    async ({ guests, dir, relays }) => {
      const state = `${dir}/vm.state`;
      let source = await guests.boot("m0");
      const pids = await source.agentPids();
      let current = relay(relays, source, state, "R0");
      await current.next("caps", () => true, 0, 20_000);
      // The guest user copies a tick on CLIPBOARD and pastes PRIMARY, every period.
      await source.run(userTicker(PERIOD));

      // The host fetches every tick it is offered, and copies a host tick every period.
      const fetched: { relay: string; serial: number; tick: number; ms: number }[] = [];
      const offers: { relay: string; serial: number }[] = [];
      const hostTicks = new Map<number, string>(); // tick → the relay it was copied through
      let stopped = false;
      const follow = async (r: RelayProcess) => {
        let seen = 0;
        let n = 0;
        const fresh = () => {
          const events = r.events.slice(seen);
          seen += events.length;
          for (const e of events) {
            if (e.event === "offer" && e.selection === "clipboard") {
              offers.push({ relay: r.name, serial: Number(e.serial) });
            }
          }
          return events;
        };
        while (!stopped && r.exitCode === undefined) {
          const offer = fresh().filter((e) => e.event === "offer" && e.selection === "clipboard")
            .at(-1);
          if (offer === undefined) {
            await sleep(10);
            continue;
          }
          const id = `${r.name}-f${n++}`;
          const data = await r.send({ cmd: "paste", id, selection: "clipboard", timeout: 3000 })
            .then(() => r.answer(id, 5000)).catch(() => undefined);
          const tick = Number(/guest tick (\d+)/.exec(String(data?.text))?.[1]);
          if (data?.event === "data" && tick > 0) {
            fetched.push({ relay: r.name, serial: Number(offer.serial), tick, ms: now() });
          }
        }
        // What it told while it drained, up to its exit event (its last line).
        if (r.exitCode !== undefined) await r.next("exit").catch(() => {});
        fresh();
      };
      const t0 = performance.now();
      const now = () => performance.now() - t0;
      let hostTick = 0;
      let target: RelayProcess | undefined = current;
      const hostTicker = setInterval(() => {
        if (target === undefined || target.exitCode !== undefined) return;
        hostTicks.set(++hostTick, target.name);
        void target.send({ cmd: "copy", selection: "primary", text: `host tick ${hostTick}` })
          .catch(() => {});
      }, PERIOD);
      const followers = [follow(current)];
      const figures: Figures[] = [];
      try {
        await sleep(1500);
        for (let i = 1; i <= MIGRATIONS; i++) {
          const destination = await guests.boot(`m${i}`, {
            incoming: true,
            paused: arrangement === "paused",
          });
          let next: RelayProcess | undefined;
          if (arrangement !== "running") {
            next = relay(relays, destination, state, `R${i}`, ["--standby"]);
            await next.logged(/standing by on/, 20_000);
          }
          // The old relay hands off as soon as QEMU says the migration completed.
          const since = source.qmp.events.length;
          const old = current;
          const completed = source.qmp.waitEvent("MIGRATION", {
            since,
            match: (e) => e.data.status === "completed",
            timeoutMs: 120_000,
          }).then((e) => {
            target = undefined;
            old.signal("SIGTERM");
            return e.hostMs;
          });
          const migration = await source.migrateTo(destination);
          const completedMs = await completed;
          assert.equal(await old.exited, 0, `${old.name} handed off`);
          next ??= relay(relays, destination, state, `R${i}`);
          await next.next("started", () => true, 0, 20_000);
          const startedMs = performance.now() - completedMs;
          if (arrangement === "paused") {
            await destination.cont();
            for (let t = 0; (await destination.status()) !== "running"; t++) {
              assert.ok(
                t < 200,
                `${destination.name} runs after cont: ${await destination.status()}`,
              );
              await sleep(25);
            }
          }
          current = next;
          target = next;
          followers.push(follow(next));
          await source.stop();
          source = destination;
          // The guest runs on the destination (its command port answers), or QEMU says why not.
          const alive = await source.exec("true", { timeoutMs: 15_000 }).catch((e) => e as Error);
          if (alive instanceof Error) {
            const registers = await source.qmp.hmp("info registers").catch((e) => String(e));
            throw new Error(
              `migration ${i}: the guest does not answer on ${source.name} (${await source
                .status()}): ${alive.message}\n${registers}`,
            );
          }
          await sleep(2500);
          figures.push({
            totalMs: migration.totalTimeMs,
            downtimeMs: migration.downtimeMs,
            startedMs,
            guestToHostMs: NaN,
            hostToGuestMs: NaN,
          });
        }
        clearInterval(hostTicker);
        await source.run("rm -f /tmp/ticking");
        await sleep(PERIOD * 3 + 500);
      } finally {
        clearInterval(hostTicker);
        stopped = true;
        await Promise.all(followers);
      }

      // The agent ran on in every guest the session moved through, and discarded no grab.
      assert.deepEqual(await source.agentPids(), pids, "the agent was never restarted");
      assert.deepEqual(source.find(/grab discard/).map((l) => l.line), []);
      for (const r of relays) {
        const odd = diagnostics(r).filter((code) => code !== "RESYNC");
        assert.deepEqual(odd, [], `${r.name}'s diagnostics`);
      }

      // Guest → host: every guest grab reached a relay, in order, once (its serials go up by one
      // each time). Running at once, the guest's port closes ~100 ms after it resumes, and what
      // the agent wrote to it meanwhile (a grab) is discarded with it: such a serial never
      // reaches any relay, and is skipped only there, between the old relay's and the new one's.
      const firstBy = new Map<number, string>();
      for (const o of offers) if (!firstBy.has(o.serial)) firstBy.set(o.serial, o.relay);
      const serials = [...firstBy.keys()];
      let skipped = 0;
      for (let k = 1; k < serials.length; k++) {
        const [before, after] = [serials[k - 1]!, serials[k]!];
        const handOff = firstBy.get(before) !== firstBy.get(after);
        if (arrangement === "running" && handOff && after === before + 2) skipped++;
        else assert.equal(after, before + 1, `guest serials ${serials.join(",")}`);
      }
      report(`c ${arrangement}: ${skipped} guest grabs discarded with the port's close`, true);
      const ticks = (await source.run("cat /tmp/ticks.log")).trim().split("\n").map((l) =>
        Number(l.split(" ")[1])
      );
      const lastTick = ticks.at(-1)!;
      // What the host fetched is a copy the guest made, never an older one than fetched before
      // (a fetch may get a copy newer than its offer: the guest copies again meanwhile).
      let newest = 0;
      for (const f of fetched) {
        assert.ok(ticks.includes(f.tick), `the host fetched tick ${f.tick}, never copied`);
        assert.ok(f.tick >= newest, `the host fetched tick ${f.tick} after ${newest}`);
        newest = f.tick;
      }
      assert.equal(newest, lastTick, "the guest's last copy reached the host");

      // Host → guest: the guest's user pastes host ticks that only go forward, and after every
      // hand-off the new relay's ticks.
      const pastes = (await source.run("cat /tmp/pastes.log")).trim().split("\n").map((l) => {
        const [up, rc, ...rest] = l.split(" ");
        const tick = Number(/host tick (\d+)/.exec(rest.join(" "))?.[1]);
        return { up: Number(up), ok: rc === "0", tick };
      });
      let highest = 0;
      for (const p of pastes.filter((p) => p.ok && p.tick > 0)) {
        assert.ok(p.tick >= highest, `the guest pasted host tick ${p.tick} after ${highest}`);
        highest = p.tick;
      }
      for (let i = 1; i <= MIGRATIONS; i++) {
        const by = (name: string) => (p: { tick: number }) => hostTicks.get(p.tick) === name;
        const lastOld = pastes.filter((p) => p.ok && by(`R${i - 1}`)(p)).at(-1);
        const firstNew = pastes.find((p) => p.ok && by(`R${i}`)(p));
        assert.ok(firstNew !== undefined, `the guest pasted R${i}'s copy`);
        const fOld = fetched.filter((f) => f.relay === `R${i - 1}`).at(-1);
        const fNew = fetched.find((f) => f.relay === `R${i}`);
        assert.ok(fNew !== undefined, `R${i} fetched a guest copy`);
        figures[i - 1]!.hostToGuestMs = lastOld ? (firstNew.up - lastOld.up) * 1000 : NaN;
        figures[i - 1]!.guestToHostMs = fOld ? fNew.ms - fOld.ms : NaN;
        report(`c ${arrangement} #${i}: ${JSON.stringify(figures[i - 1])}`);
      }

      // d. The gap each way, as figures.
      const f = (key: keyof Figures) => {
        const values = figures.map((x) => x[key]).filter((v) => Number.isFinite(v));
        return `${Math.round(median(values))} ms (max ${Math.round(Math.max(...values))})`;
      };
      report(
        `d. ${arrangement}: ${MIGRATIONS} migrations; QEMU downtime ${f("downtimeMs")}; ` +
          `new relay started ${f("startedMs")} after completion; gap guest → host ${
            f("guestToHostMs")
          }, host → guest ${f("hostToGuestMs")}`,
        true,
      );
      for (const [i, x] of figures.entries()) {
        assert.ok(
          x.guestToHostMs < 5000,
          `migration ${i + 1}: guest → host gap ${x.guestToHostMs}`,
        );
        assert.ok(
          x.hostToGuestMs < 5000,
          `migration ${i + 1}: host → guest gap ${x.hostToGuestMs}`,
        );
      }

      // After the last one: the guest copies on PRIMARY, then the relay copies on it: the guest
      // pastes the relay's (its grab is accepted, "client grab wins").
      const mark = source.mark();
      await guestCopies(source, current, "primary", "G-primary");
      await hostCopies(source, current, "primary", "H-after");
      assert.equal((await source.paste({ selection: "primary" })).text, "H-after");
      assert.deepEqual(source.find(/grab discard/, { since: mark }).map((l) => l.line), []);
    },
  );
}

migrations("running");
// QEMU 7.2 under TCG crashes the guest's kernel after `cont` on a -S destination in about 1 of 100
// migrations, with no relay at all (tests/vm/migration_probe.ts): 20 in a row fail one run in
// two or three. Not in CI until that is solved; VDAGENT_VM_PAUSED=1 runs it.
if (Deno.env.get("VDAGENT_VM_PAUSED") === "1") migrations("paused");
else if (run) {
  // deno-lint-ignore no-console
  console.error(
    "!!! tests/vm: the paused (-S) migration arrangement did NOT run: QEMU 7.2 under TCG crashes " +
      "the guest's kernel after cont now and then, relay or not (tests/vm/migration_probe.ts); " +
      "VDAGENT_VM_PAUSED=1 runs it. !!!",
  );
}
migrations("standby");
