// The benchmark script, run as a subprocess in its quick mode (Deno only).
// It checks that the script runs and that what it writes is well formed:
// never a timing.
import { test } from "node:test";
import assert from "node:assert/strict";

const root = new URL("../../", import.meta.url);

/** The README's command; a quick run's files (`*-quick.*`) are not kept in git. */
const README = "deno task bench --quick";

test("bench --quick runs every case, verifies it and writes Markdown, JSON and SVG", async () => {
  const out = new URL("bench/results/", root).pathname.replace(/\/$/, "");
  const quick = async () => {
    const files: string[] = [];
    for await (const entry of Deno.readDir(out)) {
      if (/^deno-\d{4}-\d\d-\d\d-quick\.(json|svg)$/.test(entry.name)) files.push(entry.name);
    }
    return files;
  };
  for (const file of await quick()) await Deno.remove(`${out}/${file}`);
  try {
    const [deno, ...args] = README.split(" ");
    assert.equal(deno, "deno");
    const { code, stdout, stderr } = await new Deno.Command(Deno.execPath(), {
      args,
      cwd: root,
      stdout: "piped",
      stderr: "piped",
    }).output();
    const text = new TextDecoder().decode(stdout);
    assert.equal(code, 0, new TextDecoder().decode(stderr));
    assert.match(text, /\| case \| MB\/s \|/);
    assert.match(text, /\| minimal \| \d+ \| [\d.]+ \|/, "K measured a minimal round trip");

    const files = await quick();
    const json = files.find((f) => /^deno-\d{4}-\d\d-\d\d-quick\.json$/.test(f));
    const svg = files.find((f) => /^deno-\d{4}-\d\d-\d\d-quick\.svg$/.test(f));
    assert.ok(json && svg, `files: ${files.join(", ")}`);

    const results = JSON.parse(await Deno.readTextFile(`${out}/${json}`));
    assert.equal(results.runtime, "deno");
    assert.equal(results.quick, true);
    const groups = results.groups.map((g: { input: string; read: number }) =>
      `${g.input}@${g.read}`
    );
    for (const input of ["small", "small-rt", "multi", "single"]) {
      for (const read of [65536, 4093, 7]) assert.ok(groups.includes(`${input}@${read}`));
    }
    for (const g of results.groups) {
      for (const id of ["R0", "R1", "R2", "D", "S", "C"]) {
        const r = g.results[id];
        assert.ok(r, `${id} missing for ${g.input}@${g.read}`);
        assert.ok(r.mbps > 0 && Number.isFinite(r.mbps));
        assert.ok(r.perSecond > 0 && Number.isFinite(r.pctR0) && Number.isFinite(r.pctR2));
      }
      assert.ok(g.results.F || g.skipped.F, "F ran or says why not");
      assert.ok(g.results.N || g.skipped.N, "N ran or says why not");
    }
    assert.ok(results.frame.results.W.mbps > 0);
    const names = results.checks.map((c: { name: string }) => c.name).join("\n");
    assert.match(names, /D\/R0 multi-chunk/);
    assert.match(names, /F\/N small-rt/);
    const k = results.checks.find((c: { name: string }) => c.name.startsWith("K"));
    assert.ok(k && k.status !== "NOT EVALUATED" && k.value > 0, "K was evaluated");

    const chart = await Deno.readTextFile(`${out}/${svg}`);
    assert.match(chart, /^<svg xmlns="http:\/\/www\.w3\.org\/2000\/svg"/);
    assert.match(chart, /<\/svg>\n$/);
    assert.ok((chart.match(/<rect /g) ?? []).length > 50);
  } finally {
    for (const file of await quick()) await Deno.remove(`${out}/${file}`);
  }
});
