// scripts/examples/vdagent-relay@.service, its ExecStart run as systemd would run it (the
// instance name for %i, this checkout for /opt/vdagent-streams, temp paths for /run, /var/lib and
// /etc) and stopped as its KillMode=mixed stops it: SIGTERM to the main process, SIGKILL to
// what is left after TimeoutStopSec. systemd itself does not run here. Deno only.
import { test } from "node:test";
import assert from "node:assert/strict";
import { ExitCode } from "../../scripts/relay/run.ts";
import { withRelay } from "./_with_relay.ts";

const root = new URL("../../", import.meta.url).pathname.replace(/\/$/, "");
const unit = Deno.readTextFileSync(`${root}/scripts/examples/vdagent-relay@.service`);
const setting = (name: string) => {
  const line = unit.split("\n").find((l) => l.startsWith(`${name}=`));
  assert.ok(line !== undefined, `the unit sets ${name}`);
  return line.slice(name.length + 1);
};
const TEXT = 1;

test("vdagent-relay@.service starts the relay on the VM's socket, hands off on stop within TimeoutStopSec, and resumes on the next start", async () => {
  assert.equal(setting("KillMode"), "mixed");
  assert.equal(setting("KillSignal"), "SIGTERM");
  const stopWithinMs = Number(setting("TimeoutStopSec")) * 1000;
  // What needs an operator is not restarted; what a restart mends is.
  assert.deepEqual(
    setting("RestartPreventExitStatus").split(" ").map(Number),
    [ExitCode.USAGE, ExitCode.BAD_STATE, ExitCode.LOCKED],
  );
  await withRelay(async (port, start) => {
    const etc = `${port.dir}/etc`;
    await Deno.mkdir(etc);
    await Deno.writeTextFile(`${etc}/key`, "ab".repeat(32) + "\n");
    const [command, ...args] = setting("ExecStart")
      .replaceAll("/opt/vdagent-streams", root)
      .replaceAll("unix:/run/vdagent/%i.sock", `unix:${port.path}`)
      .replaceAll("/var/lib/vdagent-relay", port.dir)
      .replaceAll("/etc/vdagent-relay", etc)
      .replaceAll("%i", "vm1")
      .split(" ");
    assert.equal(command, "/usr/bin/deno");
    // `start` adds --connect: the unit's own is checked, then left to it.
    const connect = args.indexOf("--connect");
    assert.deepEqual(args.splice(connect, 2), ["--connect", `unix:${port.path}`]);
    const launcher = [Deno.execPath(), ...args];
    const a = start([], "relay A", undefined, launcher);
    await a.next("caps", undefined, 0, 30_000);
    await a.send({ cmd: "copy", id: 1, text: "before the stop" });
    await a.answer(1);
    const stopped = performance.now();
    a.signal("SIGTERM");
    assert.equal(await a.exited, ExitCode.STOPPED);
    assert.ok(performance.now() - stopped < stopWithinMs, "stopped within TimeoutStopSec");
    assert.doesNotMatch(a.stderr, /WARNING/, "the key is given");
    const saved = JSON.parse(await Deno.readTextFile(`${port.dir}/vm1.state`));
    assert.equal(saved.handedOff, true);
    assert.equal(typeof saved.mac, "string");
    const b = start([], "relay B", undefined, launcher);
    assert.equal((await b.next("started", undefined, 0, 30_000)).mode, "restored");
    const pasted = await port.guest.session.request(0, TEXT);
    assert.equal(new TextDecoder().decode(pasted), "before the stop");
  });
});
