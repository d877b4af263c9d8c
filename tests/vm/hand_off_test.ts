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
  "b. vdagent-relay restarted with --state over QEMU's socket keeps the session: the guest's copy made while no relay is connected reaches the next relay, and so do immediate restarts",
  async ({ guests, dir, relays }) => {
    const g = await guests.boot("b");
    const state = `${dir}/vm.state`;
    const boot = g.mark();
    const a = relay(relays, g, state, "A");
    await a.next("caps", () => true, 0, 20_000);
    await hostCopies(g, a, "primary", "H1 from A");
    assert.equal((await g.paste({ selection: "primary" })).text, "H1 from A");
    const first = await guestCopies(g, a, "clipboard", "G1 before the restart");
    assert.equal(first.data.text, "G1 before the restart");

    let mark = g.mark();
    a.signal("SIGTERM");
    assert.equal(await a.exited, 0);
    // QEMU closes the guest's port with the socket: the agent drops the host's copy and releases
    // its user's, keeping its serials.
    await g.waitFor(/AIIEEE lost spice client connection/, { since: mark, src: "vdagentd" });
    assert.equal((await g.paste({ selection: "primary", timeoutMs: 3000 })).ok, false);
    // The guest's user copies while no relay is connected: the grab waits in the guest (the
    // daemon takes it from the session agent once a client is there).
    await g.copy("G2 while no relay was connected");
    await g.waitFor(/sent clipboard grab, arg1: 0/, { since: mark, src: "vdagent" });

    mark = g.mark();
    const b = relay(relays, g, state, "B");
    await b.next("started", () => true, 0, 20_000);
    // The release of G1, then G2's grab, with the next serial: B fetches G2.
    const gap = await b.next(
      "offer",
      (e) => e.selection === "clipboard" && e.serial === (first.offer.serial as number) + 1,
      0,
      15_000,
    );
    await b.send({ cmd: "paste", id: "b0", selection: "clipboard" });
    assert.equal((await b.answer("b0")).text, "G2 while no relay was connected");
    // B sends A's copy again, with the serial the guest expects: the guest pastes it.
    await g.waitForOwner("primary", "agent", { target: "UTF8_STRING" });
    assert.equal((await g.paste({ selection: "primary" })).text, "H1 from A");
    // Both ways, no reset: the guest's next copy carries the next serial.
    await hostCopies(g, b, "clipboard", "H2 from B");
    assert.equal((await g.paste()).text, "H2 from B");
    const next = await guestCopies(g, b, "primary", "G3 after the restart");
    assert.equal(next.data.text, "G3 after the restart");
    report(`b: A's last guest serial ${first.offer.serial}, the gap copy's ${gap.serial}`);

    // Three restarts in a row, each relay started as soon as the last one exited.
    let current = b;
    for (let i = 0; i < 3; i++) {
      mark = g.mark();
      current.signal("SIGTERM");
      assert.equal(await current.exited, 0);
      current = relay(relays, g, state, `Q${i}`);
      await current.next("started", () => true, 0, 20_000);
      await hostCopies(g, current, "clipboard", `quick ${i}`);
      assert.equal((await g.paste()).text, `quick ${i}`);
      const copied = await guestCopies(g, current, "primary", `guest quick ${i}`);
      assert.equal(copied.data.text, `guest quick ${i}`);
    }

    // One client for the agent in all, no grab discarded, nothing odd on any relay.
    assert.equal(g.find(/New client connected/, { since: boot }).length, 1);
    assert.deepEqual(g.find(/grab discard/).map((l) => l.line), []);
    for (const r of relays) assert.deepEqual(diagnostics(r), [], r.name);
  },
);

// ---- c, d. migrations -------------------------------------------------------------------------

/**
 * How the next relay takes over in a live migration:
 * - `running`: the destination runs at once; the next relay connects once the old one has
 *   handed off (`--state`, reconnected: the guest's port closed when it resumed there).
 * - `paused`: the destination waits (`-S`); the next relay connects (`--resume continued`),
 *   then the destination is resumed: the guest's port stays open.
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
        ? "paused until the new relay is connected"
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
      await source.run(`touch /tmp/ticking; rm -f /tmp/ticks.log /tmp/pastes.log
cat > /tmp/ticker.sh <<'EOF'
i=0
while [ -e /tmp/ticking ]; do
  i=$((i+1)); printf 'guest tick %d' $i > /tmp/tick.txt
  xclip -selection clipboard -i /tmp/tick.txt </dev/null >/dev/null 2>&1
  read up _ </proc/uptime; echo "$up $i" >> /tmp/ticks.log
  sleep ${PERIOD / 1000}
done
EOF
cat > /tmp/paster.sh <<'EOF'
while [ -e /tmp/ticking ]; do
  r=$(timeout 2 xclip -selection primary -o 2>/dev/null); rc=$?; read up _ </proc/uptime
  echo "$up $rc $r" >> /tmp/pastes.log; sleep ${PERIOD / 1000}
done
EOF
setsid sh /tmp/ticker.sh </dev/null >/dev/null 2>&1 &
setsid sh /tmp/paster.sh </dev/null >/dev/null 2>&1 &`);

      // The host fetches every tick it is offered, and copies a host tick every period.
      const fetched: { relay: string; serial: number; tick: number; ms: number }[] = [];
      const offers: { relay: string; serial: number }[] = [];
      const hostTicks = new Map<number, string>(); // tick → the relay it was copied through
      let stopped = false;
      const follow = async (r: RelayProcess) => {
        let seen = 0;
        let n = 0;
        while (!stopped && r.exitCode === undefined) {
          const fresh = r.events.slice(seen);
          seen += fresh.length;
          const offer = fresh.filter((e) => e.event === "offer" && e.selection === "clipboard")
            .at(-1);
          for (const e of fresh) {
            if (e.event === "offer" && e.selection === "clipboard") {
              offers.push({ relay: r.name, serial: Number(e.serial) });
            }
          }
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
          if (arrangement === "standby") {
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
          if (next === undefined) {
            next = relay(relays, destination, state, `R${i}`, [
              ...(arrangement === "paused" ? ["--resume", "continued"] : []),
            ]);
          }
          await next.next("started", () => true, 0, 20_000);
          const startedMs = performance.now() - completedMs;
          if (arrangement === "paused") await destination.cont();
          current = next;
          target = next;
          followers.push(follow(next));
          await source.stop();
          source = destination;
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
      // each time), and every copy fetched was the one offered.
      const serials = [...new Set(offers.map((o) => o.serial))];
      for (let k = 1; k < serials.length; k++) {
        assert.equal(serials[k], serials[k - 1]! + 1, `guest serials ${serials.join(",")}`);
      }
      const ticks = (await source.run("cat /tmp/ticks.log")).trim().split("\n").map((l) =>
        Number(l.split(" ")[1])
      );
      const lastTick = ticks.at(-1)!;
      const shift = fetched[0]!.tick - fetched[0]!.serial;
      for (const f of fetched) assert.equal(f.tick - f.serial, shift, `tick ${f.tick}`);
      assert.equal(fetched.at(-1)?.tick, lastTick, "the guest's last copy reached the host");
      assert.equal(serials.at(-1)! + shift, lastTick, "and its grab was the last one");

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
migrations("paused");
migrations("standby");
