// Replays every input the fuzzer (`deno task fuzz`) saved in
// tests/fixtures/fuzz/ when it broke an invariant: each must hold now. The
// time invariant is the fuzzer's alone; everything else (errors, pending
// promises, memory, agreement) is checked as the fuzzer checks it.
import { test } from "node:test";
import assert from "node:assert/strict";
import { readdir, readFile } from "node:fs/promises";
import { replay, TARGETS } from "./_fuzz.ts";
import { fromHex } from "./_fuzz_source.ts";

interface Saved {
  target: string;
  invariant: string;
  found: string;
  message: string;
  input: string;
}

const dir = new URL("./fixtures/fuzz/", import.meta.url);

test("fuzz regressions: every saved input now keeps every invariant", async () => {
  const files = (await readdir(dir)).filter((f) => f.endsWith(".json")).sort();
  assert.ok(files.length > 0, "tests/fixtures/fuzz/ holds the fuzzer's findings");
  for (const file of files) {
    const saved = JSON.parse(await readFile(new URL(file, dir), "utf8")) as Saved;
    assert.ok(TARGETS.some((t) => t.name === saved.target), `${file}: target ${saved.target}`);
    const outcome = await replay(saved.target, fromHex(saved.input));
    assert.equal(
      outcome.violation,
      undefined,
      `${file} (found with ${saved.found}: ${saved.message}) breaks ${outcome.violation?.invariant}: ${outcome.violation?.message}\n${
        outcome.trace.join("\n")
      }`,
    );
  }
});
