// Every command the README gives a reader, and where the suite runs it as written. The quick ones
// run here; for the others, the test or script named holds the command verbatim and runs it, or
// .ci/run does. Placeholders (the VM's socket, FILE, SOCKET, a port) become real ones. A command
// added to the README without an entry below fails the first test. Deno only.
import { test } from "node:test";
import assert from "node:assert/strict";
import { GuestPort } from "./_guest_port.ts";
import { RelayProcess } from "./_relay_process.ts";

const root = new URL("../../", import.meta.url);
const rootPath = root.pathname.replace(/\/$/, "");
const readme = Deno.readTextFileSync(new URL("README.md", root));
const ci = Deno.readTextFileSync(new URL(".ci/run", root));

/** A span of inline code that is a command to run (one with "…" only points at one). */
const INLINE =
  /^(deno (task [\w:]+|run \S|publish|add)|npx \S+ \S|npm (install|publish) |node scripts\/|systemctl start |apt-get install -y |\.ci\/run$)/;

/** The commands of the README: its `sh` blocks, the usage lines of its examples, inline code. */
function readmeCommands(text: string): string[] {
  const commands = new Set<string>();
  let fence: string | undefined;
  for (const line of text.split("\n")) {
    const open = line.match(/^```(\S*)/);
    if (open !== null) {
      fence = fence === undefined ? open[1]! : undefined;
      continue;
    }
    if (fence === "sh") {
      const command = line.replace(/\s+#.*$/, "").trim();
      if (command !== "") commands.add(command);
    } else if (fence !== undefined) {
      const usage = line.match(/^\/\/ {3}((?:deno|node) .+)$/);
      if (usage !== null) commands.add(usage[1]!);
    } else {
      for (const [, span] of line.matchAll(/`([^`]+)`/g)) {
        if (INLINE.test(span!) && !span!.includes("…")) commands.add(span!);
      }
    }
  }
  return [...commands];
}

/** How the suite runs a command. */
type Coverage =
  /** A test below, named after the command. */
  | { here: true }
  /** That file holds the command verbatim, and runs it. */
  | { file: string }
  /** .ci/run runs it: that line, where `deno_` is the pinned Deno through npx. */
  | { ci: string }
  /** It installs Debian packages: .ci/run installs every one of them. */
  | { packages: true }
  /** The same files under the same gate as a command .ci/run runs: `why` says how. */
  | { same: string; why: string }
  /** Not runnable by the suite, and why. */
  | { not: string };

const COVERAGE: Record<string, Coverage> = {
  "npx --yes deno@2.9.6 task demo": { here: true },
  "npx --yes deno@2.9.6 task test": { ci: "deno_ task test" },
  "deno task relay -- --connect unix:/run/vm1/vdagent.sock --state /var/lib/vm1/relay.state --listen 127.0.0.1:8080":
    { here: true },
  "npx vdagent-relay --connect unix:/run/vm1/vdagent.sock": {
    file: "tests/node/relay_bin_test.ts",
  },
  "deno task bench": { here: true },
  "deno task bench --check": { here: true },
  "deno task bench --quick": { file: "tests/cli/bench_test.ts" },
  "deno task bench --only small --cases D,F": { here: true },
  "deno task bench:memory": { here: true },
  "deno task bench:node --lib DIR": { ci: "deno_ task bench:node --lib npm" },
  "deno task bench:node --lib npm": { ci: "deno_ task bench:node --lib npm" },
  "deno task bench:memory --gc-every-mib 8": { here: true },
  "apt-get install -y spice-vdagent socat xvfb xclip": { packages: true },
  "apt-get install -y qemu-system-x86 spice-vdagent xvfb xclip x11-xkb-utils busybox-static": {
    packages: true,
  },
  "apt-get install -y chromium": { packages: true },
  "deno task test:interop": {
    same: "deno task test",
    why: "test:interop is `VDAGENT_INTEROP=require deno test -A tests/interop/`; .ci/run runs " +
      "`deno task test` with VDAGENT_INTEROP=require, whose `deno test -A` takes tests/",
  },
  "deno task test:vm": {
    same: "deno task test",
    why: "test:vm is `VDAGENT_VM=require deno test -A tests/vm/`; .ci/run runs `deno task test` " +
      "with VDAGENT_VM=require, whose `deno test -A` takes tests/",
  },
  "deno run --allow-net --allow-read --allow-write scripts/examples/relay_deno.ts /run/vm1/vdagent.sock":
    { file: "tests/cli/relay_example_test.ts" },
  "node scripts/examples/relay_node.mjs /run/vm1/vdagent.sock": {
    file: "tests/node/relay_node_example_test.ts",
  },
  "deno task test": { ci: "deno_ task test" },
  "deno task build:npm": { ci: "deno_ task build:npm" },
  "deno task fuzz": { ci: "deno_ task fuzz" },
  "deno task soak": { ci: "deno_ task soak" },
  "deno task relay": { here: true },
  "deno task demo": { here: true },
  "deno task demo --without-checkpoint": { here: true },
  "deno task inspect FILE": { here: true },
  "deno task inspect --direction g2h tests/fixtures/linux-agent-0.22.1/guest-to-host.bin": {
    here: true,
  },
  "npx -p vdagent-streams vdagent-relay --connect unix:SOCKET": { file: "scripts/build_npm.ts" },
  "npx --yes deno@2.9.6 task relay -- --connect unix:SOCKET": { here: true },
  "npx vdagent-relay --help": { file: "scripts/build_npm.ts" },
  "npm install ./npm": { file: "scripts/build_npm.ts" },
  "npm publish --dry-run": { file: "scripts/build_npm.ts" },
  "deno publish --dry-run": { file: "tests/cli/jsr_test.ts" },
  "deno add jsr:@vdagent/streams": {
    not: "the package is not published on JSR yet, and these machines cannot reach JSR",
  },
  "npm install vdagent-streams": {
    not: "the package is not on the npm registry yet; the suite installs its packed tarball",
  },
  "systemctl start vdagent-relay@vm1": {
    not: "systemd does not run here; tests/cli/relay_systemd_test.ts runs the unit's ExecStart " +
      "and stops it as its KillMode does",
  },
  ".ci/run": { not: "it is the CI itself" },
};

test("README names no command the suite does not account for, and this list names only the README's", () => {
  const commands = readmeCommands(readme);
  assert.deepEqual(commands.filter((c) => !(c in COVERAGE)), [], "commands without an entry");
  assert.deepEqual(Object.keys(COVERAGE).filter((c) => !commands.includes(c)), [], "stale entries");
});

test("README commands run elsewhere are held verbatim by the file that runs them, or by .ci/run", () => {
  // deno_ is the pinned Deno, through npx.
  assert.match(ci, /^DENO_VERSION=2\.9\.6$/m);
  assert.match(ci, /^deno_\(\) \{ npx --yes "deno@\$\{DENO_VERSION\}" "\$@"; \}$/m);
  const ciLines = ci.split("\n").map((l) => l.replace(/^.*\s(?=deno_ )/, "").trim());
  const packages = new Set([...ci.matchAll(/^ {2}\[([\w.-]+)\]=/gm)].map((m) => m[1]!));
  for (const [command, how] of Object.entries(COVERAGE)) {
    if ("file" in how) {
      const text = Deno.readTextFileSync(new URL(how.file, root));
      assert.ok(text.includes(JSON.stringify(command)), `${how.file} runs ${command}`);
    } else if ("ci" in how) {
      assert.ok(ciLines.includes(how.ci), `.ci/run runs ${how.ci}`);
    } else if ("packages" in how) {
      const named = command.replace(/^apt-get install -y /, "").split(" ");
      assert.deepEqual(named.filter((p) => !packages.has(p)), [], `.ci/run installs ${command}`);
    } else if ("same" in how) {
      const tasks = JSON.parse(Deno.readTextFileSync(new URL("deno.json", root))).tasks;
      const task = command.replace(/^deno task /, "");
      const gate = task === "test:vm" ? "VDAGENT_VM" : "VDAGENT_INTEROP";
      const dir = task === "test:vm" ? "tests/vm/" : "tests/interop/";
      assert.equal(tasks[task].command, `${gate}=require deno test -A ${dir}`, how.why);
      assert.match(tasks.test.command, /deno test -A --doc$/, how.why);
      assert.match(
        ci,
        new RegExp(`^VDAGENT_INTEROP=require VDAGENT_VM=require deno_ task test$`, "m"),
      );
    }
  }
});

/** `command` as argv: `deno` is this Deno, placeholders are replaced by `values`. */
function argv(command: string, values: Record<string, string> = {}): string[] {
  let text = command;
  for (const [placeholder, value] of Object.entries(values)) {
    text = text.replaceAll(placeholder, value);
  }
  const [program, ...args] = text.split(" ");
  return [program === "deno" ? Deno.execPath() : program!, ...args];
}

/** Runs `command` to its end in `cwd` (the checkout by default). */
async function run(
  command: string,
  values: Record<string, string> = {},
  cwd: string | URL = root,
): Promise<{ code: number; out: string; err: string }> {
  const [program, ...args] = argv(command, values);
  const { code, stdout, stderr } = await new Deno.Command(program!, {
    args,
    cwd,
    env: { NO_COLOR: "1" },
    stdin: "null",
  }).output();
  return { code, out: new TextDecoder().decode(stdout), err: new TextDecoder().decode(stderr) };
}

function freePort(): number {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const port = (listener.addr as Deno.NetAddr).port;
  listener.close();
  return port;
}

for (const command of ["npx --yes deno@2.9.6 task demo", "deno task demo"]) {
  test(`README: \`${command}\` runs as written: relay A hands off to B and nothing is lost`, async () => {
    const { code, out } = await run(command);
    assert.equal(code, 0, out);
    assert.match(out, /B got the screenshot: 3\.00 MiB, byte for byte the guest's/);
    assert.match(out, /messages lost {12}0 /);
  });
}

test("README: `deno task demo --without-checkpoint` runs as written and shows the grab discarded", async () => {
  const { code, out } = await run("deno task demo --without-checkpoint");
  assert.equal(code, 0, out);
  assert.match(out, /guest's clipboard kept {3}no/);
});

for (
  const command of [
    "deno task inspect FILE",
    "deno task inspect --direction g2h tests/fixtures/linux-agent-0.22.1/guest-to-host.bin",
  ]
) {
  test(`README: \`${command}\` runs as written on the real agent's capture`, async () => {
    const { code, out, err } = await run(command, {
      FILE: "tests/fixtures/linux-agent-0.22.1/guest-to-host.bin",
    });
    assert.equal(code, 0, err);
    assert.match(out, /ANNOUNCE_CAPABILITIES request=1/);
  });
}

test("README: `deno task relay` alone runs as written: a usage error on stderr, exit 2, and the exit event", async () => {
  const { code, out, err } = await run("deno task relay");
  assert.equal(code, 2);
  assert.match(err, /usage: .* --connect/);
  assert.deepEqual(JSON.parse(out.trim().split("\n").at(-1)!).event, "exit");
});

for (
  const command of [
    "deno task relay -- --connect unix:/run/vm1/vdagent.sock --state /var/lib/vm1/relay.state --listen 127.0.0.1:8080",
    "npx --yes deno@2.9.6 task relay -- --connect unix:SOCKET",
  ]
) {
  test(`README: \`${command}\` runs as written: it relays, and hands off on SIGTERM`, async () => {
    const port = await GuestPort.open();
    const listen = `127.0.0.1:${freePort()}`;
    const relay = new RelayProcess([], {
      name: command,
      launcher: argv(command, {
        "/run/vm1/vdagent.sock": port.path,
        "unix:SOCKET": `unix:${port.path}`,
        "/var/lib/vm1/relay.state": `${port.dir}/relay.state`,
        "127.0.0.1:8080": listen,
      }),
    });
    try {
      await relay.next("caps", undefined, 0, 60_000);
      if (command.includes("--listen")) {
        assert.ok(
          String(relay.events.find((e) => e.event === "listening")?.url).startsWith(
            `http://${listen}/?token=`,
          ),
        );
      }
      await relay.send({ cmd: "copy", id: 1, text: "from the README's relay" });
      await relay.answer(1);
      await port.until(() => port.guest.session.hostOffer(0) !== undefined, "the host's grab");
      const pasted = await port.guest.session.request(0, 1);
      assert.equal(new TextDecoder().decode(pasted), "from the README's relay");
      relay.signal("SIGTERM");
      const exit = await relay.next("exit", undefined, 0, 30_000);
      assert.equal(exit.code, 0, JSON.stringify(exit));
      if (command.includes("--state")) {
        assert.equal(
          JSON.parse(await Deno.readTextFile(`${port.dir}/relay.state`)).handedOff,
          true,
        );
      }
    } catch (error) {
      // deno-lint-ignore no-console
      console.error(relay.report());
      throw error;
    } finally {
      await relay.close();
      await port.close();
    }
  });
}

/**
 * A copy of the checkout's tracked files in a temp dir: the benchmark writes its results beside
 * it (bench/results/), and must not change the checkout's.
 */
async function checkoutCopy(): Promise<string> {
  const dir = await Deno.makeTempDir({ prefix: "vdagent-readme-" });
  const { stdout } = await new Deno.Command("git", { args: ["ls-files", "-z"], cwd: root })
    .output();
  for (const file of new TextDecoder().decode(stdout).split("\0").filter((f) => f !== "")) {
    const to = `${dir}/${file}`;
    await Deno.mkdir(to.slice(0, to.lastIndexOf("/")), { recursive: true });
    await Deno.copyFile(`${rootPath}/${file}`, to);
  }
  return dir;
}

test(
  "README: the benchmark's commands run as written (in a copy of the checkout, whose bench/results/ they write)",
  {
    timeout: 40 * 60_000,
  },
  async () => {
    const copy = await checkoutCopy();
    try {
      /** The JSON and SVG results written since `since` (ms), by file name. */
      const written = async (since: number) => {
        const names: string[] = [];
        for await (const entry of Deno.readDir(`${copy}/bench/results`)) {
          if (!/^deno-\d{4}-\d\d-\d\d\.(json|svg)$/.test(entry.name)) continue;
          const { mtime } = await Deno.stat(`${copy}/bench/results/${entry.name}`);
          if (mtime !== null && mtime.getTime() >= since) names.push(entry.name.slice(-4));
        }
        return names.sort();
      };
      for (const command of ["deno task bench", "deno task bench --only small --cases D,F"]) {
        const since = Date.now();
        const { code, out, err } = await run(command, {}, copy);
        assert.equal(code, 0, `${command}: ${err}`);
        assert.match(out, /\| case \| MB\/s \|/, command);
        assert.deepEqual(await written(since), [".svg", "json"], `${command} wrote JSON and SVG`);
      }
      // --check evaluates the targets: exit 0, or 1 naming each one that failed.
      const checked = await run("deno task bench --check", {}, copy);
      assert.ok(checked.code === 0 || checked.code === 1, checked.err);
      assert.match(checked.out, /\| case \| MB\/s \|/);
      if (checked.code === 1) assert.match(checked.out + checked.err, /FAIL/);
      for (const command of ["deno task bench:memory", "deno task bench:memory --gc-every-mib 8"]) {
        const { code, out, err } = await run(command, {}, copy);
        assert.equal(code, 0, `${command}: ${err}`);
        const figures = JSON.parse(out.trim().split("\n").at(-1)!);
        assert.ok(figures.bytesIn > 1 << 30, `${command}: ${out}`);
        assert.equal(figures.answeredBytes > 0, true);
      }
    } finally {
      await Deno.remove(copy, { recursive: true });
    }
  },
);
