// The npm package's `vdagent-relay` bin on Node, over standard input and output, against an
// in-process guest agent on a unix socket. Node only: run by `deno task build:npm`.
import { test } from "node:test";
import assert from "node:assert/strict";
import { mkdir, readdir, readFile, symlink, writeFile } from "node:fs/promises";
import { dirname, join } from "node:path";
import { ClipboardType, Selection } from "../../mod.ts";
import { GuestPort, RELAY_BIN, RelayBin } from "./_relay_bin.ts";

const TEXT = ClipboardType.UTF8_TEXT;
const decode = (b: Uint8Array) => new TextDecoder().decode(b);

test(
  "vdagent-relay (npm bin on Node) relays the clipboard, survives bad commands, hands off on SIGTERM and exits 3 on a closed socket",
  {
    timeout: 60_000,
  },
  async () => {
    const port = await GuestPort.open();
    const relays: RelayBin[] = [];
    const start = (args: string[]) => {
      const relay = new RelayBin(["--connect", `unix:${port.path}`, ...args]);
      relays.push(relay);
      return relay;
    };
    try {
      const state = `${port.dir}/vm.state`;
      const a = start(["--state", state]);
      assert.deepEqual(await a.next("caps"), {
        event: "caps",
        caps: ["0x00038de7"],
        selections: true,
        serials: true,
      });
      // Guest → host.
      port.data.set(`1/${TEXT}`, new TextEncoder().encode("guest primary ✓"));
      port.guest.session.grab(Selection.PRIMARY, [TEXT]);
      await a.next("offer");
      a.send({ cmd: "paste", id: 1, selection: "primary" });
      assert.equal((await a.answer(1)).text, "guest primary ✓");
      // Bad commands answer with errors; the relay goes on.
      a.send("{oops");
      assert.equal((await a.next("error")).code, "BAD_JSON");
      a.send({ cmd: "copy", id: 2, mime: "image/gif", base64: "R0lG" });
      assert.equal((await a.answer(2)).code, "UNSUPPORTED_TYPE");
      // Host → guest.
      a.send({ cmd: "copy", id: 3, text: "host text" });
      await a.answer(3);
      await port.hostGrabbed(1);
      assert.equal(
        decode(await port.guest.session.request(Selection.CLIPBOARD, TEXT)),
        "host text",
      );

      a.signal("SIGTERM");
      assert.equal(await a.exited, 0);
      assert.match(
        a.stderr,
        /handed off: checkpoint of \d+ bytes \(and 1 host copies\) written to /,
      );
      assert.equal(JSON.parse(await readFile(state, "utf8")).format, "vdagent-relay-state/2");
      assert.deepEqual((await readdir(port.dir)).sort(), [
        "vdagent.sock",
        "vm.state",
        "vm.state.generation",
      ]);

      const b = start(["--state", state, "--resume", "continued"]);
      assert.deepEqual(await b.next("started"), {
        event: "started",
        mode: "restored",
        resume: "continued",
        connect: `unix:${port.path}`,
      });
      await b.next("offer", (e) => e.selection === "primary");
      b.send({ cmd: "paste", id: 4, selection: "primary" });
      assert.equal((await b.answer(4)).text, "guest primary ✓");
      assert.equal(
        decode(await port.guest.session.request(Selection.CLIPBOARD, TEXT)),
        "host text",
      );
      // B grabbed A's copy again (the stopped relay's last bytes may have been lost); then its own.
      const grabs = port.hostGrabs.length;
      b.send({ cmd: "copy", id: 5, text: "from B" });
      await port.hostGrabbed(grabs + 1);
      assert.equal(decode(await port.guest.session.request(Selection.CLIPBOARD, TEXT)), "from B");

      port.closeHost();
      assert.equal(await b.exited, 3);
      assert.match(b.stderr, /the guest's side closed the connection on unix:/);
    } finally {
      await Promise.all(relays.map((r) => r.close()));
      await port.close();
    }
  },
);

/** A project that installed the package, as npm does: node_modules/vdagent-streams and its bin. */
async function consumer(dir: string): Promise<string> {
  const project = join(dir, "project");
  const packageDir = dirname(dirname(dirname(RELAY_BIN)));
  await mkdir(join(project, "node_modules", ".bin"), { recursive: true });
  await writeFile(join(project, "package.json"), '{"name":"consumer","private":true}\n');
  await symlink(packageDir, join(project, "node_modules", "vdagent-streams"));
  await symlink(RELAY_BIN, join(project, "node_modules", ".bin", "vdagent-relay"));
  return project;
}

/** The README's command, with the VM's socket made here. */
const README = "npx vdagent-relay --connect unix:/run/vm1/vdagent.sock";

test(
  "vdagent-relay runs as the README writes it, `npx vdagent-relay --connect unix:…`, from a project that installed the package",
  {
    timeout: 60_000,
  },
  async () => {
    const port = await GuestPort.open();
    const project = await consumer(port.dir);
    const [npx, bin, ...args] = README.replace("/run/vm1/vdagent.sock", port.path).split(" ");
    const relay = new RelayBin(args, { command: [npx!, bin!], cwd: project });
    try {
      await relay.next("caps");
      relay.send({ cmd: "copy", id: 1, text: "from npx" });
      await relay.answer(1);
      await port.hostGrabbed(1);
      assert.equal(decode(await port.guest.session.request(Selection.CLIPBOARD, TEXT)), "from npx");
      relay.signal("SIGTERM");
      assert.match(String((await relay.next("exit")).reason), /^SIGTERM/);
    } finally {
      await relay.close();
      await port.close();
    }
  },
);

test(
  "vdagent-relay run as `npx vdagent-relay` from a project that installed the package hands off when npx gets SIGTERM",
  { timeout: 60_000 },
  async () => {
    const port = await GuestPort.open();
    const project = await consumer(port.dir);
    const state = `${port.dir}/vm.state`;
    const relays: RelayBin[] = [];
    try {
      const a = new RelayBin(["--connect", `unix:${port.path}`, "--state", state], {
        command: ["npx", "--no-install", "vdagent-relay"],
        cwd: project,
      });
      relays.push(a);
      await a.next("caps");
      a.send({ cmd: "copy", id: 1, text: "host text" });
      await a.answer(1);
      // To npx alone, as a service manager sends it; npx does not pass it on.
      a.signal("SIGTERM");
      const exit = await a.next("exit");
      assert.deepEqual(exit, { event: "exit", code: 0, reason: "SIGTERM: handed off" });
      assert.match(a.stderr, /the relay's launcher \(pid \d+, .*\) exited/);
      assert.equal(JSON.parse(await readFile(state, "utf8")).handedOff, true);
      await a.exited;
      const b = new RelayBin(["--connect", `unix:${port.path}`, "--state", state]);
      relays.push(b);
      await b.next("started");
      assert.equal(
        decode(await port.guest.session.request(Selection.CLIPBOARD, TEXT)),
        "host text",
      );
    } finally {
      await Promise.all(relays.map((r) => r.close()));
      await port.close();
    }
  },
);
