// deno-lint-ignore-file no-console
// Chains of live migrations of a real guest whose user copies and pastes every 250 ms, with no
// relay at all: what QEMU does by itself. It shows the fault that keeps the paused arrangement
// out of CI (README, Limitations): destinations started with -S and resumed with `cont` crash the
// guest's kernel now and then under TCG, running destinations do not. One JSON line per migration.
//   VDAGENT_VM=require deno run -A tests/vm/migration_probe.ts P|R CHAINS MIGRATIONS_PER_CHAIN
//   P: destinations `-incoming … -S`, `cont` at once; R: destinations run at once.
import { requirePrerequisites } from "./_gate.ts";
import { type Guest, Guests } from "./_vm.ts";
import { userTicker } from "./_user_ticker.ts";

const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms));
const [variant = "P", chainsArg = "1", perArg = "20"] = Deno.args;
const CHAINS = Number(chainsArg);
const PER = Number(perArg);
const PERIOD = 250;
const BAD = /BUG|Oops|general protection/;
const out = (o: unknown) => console.log(JSON.stringify(o));

requirePrerequisites();

const TICKER = userTicker(PERIOD);

function badLines(g: Guest): string[] {
  const lines = g.consoleTail(400).split("\n");
  const i = lines.findIndex((l) => BAD.test(l));
  return i < 0 ? [] : lines.slice(i, i + 12);
}

let total = 0;
const crashes: { chain: number; migration: number; where: string; lines: string[] }[] = [];
const t0 = performance.now();
for (let c = 1; c <= CHAINS; c++) {
  const guests = new Guests();
  try {
    let source = await guests.boot(`p${c}-0`);
    await source.run(TICKER);
    await sleep(1500);
    for (let i = 1; i <= PER; i++) {
      const dest = await guests.boot(`p${c}-${i}`, { incoming: true, paused: variant === "P" });
      const m = await source.migrateTo(dest);
      if (variant === "P") {
        await dest.cont();
        for (let t = 0; (await dest.status()) !== "running"; t++) {
          if (t > 200) throw new Error(`not running after cont: ${await dest.status()}`);
          await sleep(25);
        }
      }
      await source.stop();
      source = dest;
      await sleep(2500);
      const alive = await source.exec("true", { timeoutMs: 15_000 }).then(
        (r) => r.code === 0,
        () => false,
      );
      let bad = badLines(source);
      if (bad.length === 0 && alive) {
        // a second look a bit later: the crash came "a few seconds after cont"
        await sleep(1500);
        bad = badLines(source);
      }
      total++;
      out({
        variant,
        chain: c,
        migration: i,
        total,
        downtimeMs: m.downtimeMs,
        alive,
        bug: bad.length > 0,
        status: await source.status().catch((e) => String(e)),
        s: Math.round((performance.now() - t0) / 1000),
      });
      if (!alive || bad.length > 0) {
        await sleep(3000);
        bad = badLines(source);
        const first = source.consoleTail(1_000_000).split("\n");
        const k = first.findIndex((l) => BAD.test(l));
        bad = k < 0 ? bad : first.slice(Math.max(0, k - 3), k + 25);
        crashes.push({
          chain: c,
          migration: i,
          where: source.name,
          lines: bad.length ? bad : source.consoleTail(30).split("\n"),
        });
        console.error(`=== CRASH chain ${c} migration ${i} ===\n${source.consoleTail(80)}`);
        break;
      }
    }
  } catch (error) {
    console.error(`chain ${c}: error: ${error instanceof Error ? error.stack : error}`);
    crashes.push({
      chain: c,
      migration: -1,
      where: "error",
      lines: [String(error).slice(0, 3000)],
    });
  } finally {
    await guests.stop();
  }
}
out({ summary: true, variant, migrations: total, crashes });
