import { test } from "node:test";
import assert from "node:assert/strict";
import {
  isLauncher,
  parseProcess,
  type ProcessInfo,
  watchLaunchers,
} from "../../scripts/relay/launcher.ts";

test("parseProcess reads the parent after a command name holding spaces and parentheses", () => {
  assert.deepEqual(
    parseProcess("2659 (deno task) x) S 2654 2641 2641 0 -1 4194560", "deno\0task\0relay\0"),
    { ppid: 2654, argv: ["deno", "task", "relay"] },
  );
  assert.deepEqual(parseProcess("12 (a) S 1 12", "npm exec deno@2.9.6 task relay   "), {
    ppid: 1,
    argv: ["npm exec deno@2.9.6 task relay   "],
  });
  assert.equal(parseProcess("garbage", ""), undefined);
});

test("isLauncher knows npx, npm exec, deno task and the shell between them, and nothing else", () => {
  const launchers = [
    ["npm exec deno@2.9.6 task relay --connect unix:/s      "],
    ["npx", "vdagent-relay"],
    ["node", "/usr/lib/node_modules/npm/bin/npx-cli.js", "--yes", "deno@2.9.6"],
    ["node", "/usr/lib/node_modules/npm/bin/npm-cli.js", "exec", "vdagent-relay"],
    ["/usr/bin/deno", "task", "relay"],
    ["sh", "-c", "'deno' task relay --connect unix:/s"],
    ["sh", "-c", "vdagent-relay --connect unix:/s"],
  ];
  for (const argv of launchers) assert.equal(isLauncher(argv), true, argv.join(" "));
  const others = [
    ["bash"],
    ["sh", "-c", "exec ./my-relay"],
    ["/usr/bin/deno", "run", "-A", "scripts/relay.ts"],
    ["systemd", "--user"],
    ["node", "server.js"],
    [],
  ];
  for (const argv of others) assert.equal(isLauncher(argv), false, argv.join(" "));
});

/** A process table that tests change. */
function table(entries: Record<number, ProcessInfo>) {
  const processes = new Map(Object.entries(entries).map(([pid, info]) => [Number(pid), info]));
  return { processes, info: (pid: number) => processes.get(pid) };
}

const tree = () =>
  table({
    10: { ppid: 1, argv: ["npm exec deno@2.9.6 task relay"] },
    11: { ppid: 10, argv: ["sh", "-c", "'deno' task relay"] },
    12: { ppid: 11, argv: ["deno", "task", "relay"] },
    13: { ppid: 12, argv: ["deno", "run", "-A", "scripts/relay.ts"] },
  });

test("watchLaunchers tells once when a launcher above the relay exits", async () => {
  const { processes, info } = tree();
  const gone: string[] = [];
  let tell = () => {};
  const told = new Promise<void>((resolve) => tell = resolve);
  const stop = watchLaunchers(info, 13, (why) => {
    gone.push(why);
    tell();
  }, 1);
  processes.delete(10);
  await told;
  await new Promise((resolve) => setTimeout(resolve, 10));
  stop();
  assert.deepEqual(gone, [
    "the relay's launcher (pid 10, npm exec deno@2.9.6 task relay) exited; it does not pass signals on",
  ]);
});

test("watchLaunchers tells when a launcher's pid is taken by another program, not when it is reparented", async () => {
  const { processes, info } = tree();
  let why = "";
  let tell = () => {};
  const told = new Promise<void>((resolve) => tell = resolve);
  const stop = watchLaunchers(info, 13, (sentence) => {
    why = sentence;
    tell();
  }, 1);
  // The terminal closed under `nohup`: npx now belongs to init, and runs on.
  processes.set(10, { ppid: 1, argv: ["npm exec deno@2.9.6 task relay"] });
  processes.set(12, { ppid: 1, argv: ["deno", "task", "relay"] });
  processes.delete(11);
  processes.set(11, { ppid: 1, argv: ["sleep", "100"] });
  await told;
  stop();
  assert.match(why, /^the relay's launcher \(pid 11, sh -c 'deno' task relay\) exited/);
});

test("watchLaunchers watches nothing when the relay's parent is no launcher, or is unknown", () => {
  const { info } = table({
    20: { ppid: 1, argv: ["systemd"] },
    21: { ppid: 20, argv: ["deno", "run", "-A", "scripts/relay.ts"] },
  });
  let calls = 0;
  const counted = (pid: number) => (calls++, info(pid));
  watchLaunchers(counted, 21, () => assert.fail("no launcher"), 1)();
  assert.equal(calls, 2, "the relay and its parent, looked up once");
  watchLaunchers(() => undefined, 21, () => assert.fail("unknown"), 1)();
});
