// One hand-off scenario, run against the real Linux agent both behind the pty stand-in
// (tests/interop/relay_test.ts) and in a real QEMU guest (tests/vm/hand_off_test.ts), which
// must give the same outcome: vdagent-relay restarted with --state, the guest's user copying
// while no relay is connected, then three restarts in a row. Deno only.
import assert from "node:assert/strict";
import type { RelayProcess } from "../cli/_relay_process.ts";

/** What the scenario needs of a guest, whatever holds its port. */
export interface RestartGuest {
  /** The guest user copies text (xclip -i). */
  copy(text: string, selection: "clipboard" | "primary"): Promise<void>;
  /** The guest user pastes (xclip -o). */
  paste(
    selection: "clipboard" | "primary",
    timeoutMs?: number,
  ): Promise<{ ok: boolean; text: string }>;
  /** Resolves once the agent (a host grab) owns `selection` in the guest's X server. */
  agentOwns(selection: "clipboard" | "primary"): Promise<void>;
  /** A position in the agent's log. */
  mark(): number;
  /** Resolves once the agent's log, from `since`, has a line of `src` matching `re`. */
  waitForLog(re: RegExp, since: number, src: "vdagentd" | "vdagent"): Promise<void>;
  /** Lines of the agent's log matching `re`, from `since`. */
  countLog(re: RegExp, since?: number): number;
}

/** The outcome: the same, pty or VM. */
export interface RestartOutcome {
  /** What the guest pasted of the host's copies, in order. */
  guestPasted: string[];
  /** What the relays fetched of the guest's copies, in order. */
  hostFetched: string[];
  /** The serial of the guest's copy made while no relay was connected, less A's last one. */
  gapSerialStep: number;
  /** `New client connected` lines in the agent's log over the whole scenario. */
  newClients: number;
  /** `grab discard` lines. */
  discards: number;
  /** The diagnostics of every relay. */
  diagnostics: string[];
}

/** The outcome every guest must give. */
export const EXPECTED_RESTART: RestartOutcome = {
  guestPasted: ["H1 from A", "H1 from A", "H2 from B", "quick 0", "quick 1", "quick 2"],
  hostFetched: [
    "G1 before the restart",
    "G2 while no relay was connected",
    "G3 after the restart",
    "guest quick 0",
    "guest quick 1",
    "guest quick 2",
  ],
  gapSerialStep: 1,
  newClients: 1,
  discards: 0,
  diagnostics: [],
};

/**
 * Runs the scenario. `start(name)` starts `vdagent-relay --connect <the guest's port> --state
 * <one file>` (the same file every time).
 */
export async function restartScenario(
  guest: RestartGuest,
  start: (name: string) => RelayProcess,
): Promise<RestartOutcome> {
  const boot = guest.mark();
  const relays: RelayProcess[] = [];
  const outcome: RestartOutcome = {
    guestPasted: [],
    hostFetched: [],
    gapSerialStep: NaN,
    newClients: 0,
    discards: 0,
    diagnostics: [],
  };
  const launch = (name: string) => {
    const relay = start(name);
    relays.push(relay);
    return relay;
  };
  const hostCopies = async (r: RelayProcess, selection: "clipboard" | "primary", text: string) => {
    const id = `${r.name}: copy ${text}`;
    const since = guest.mark();
    await r.send({ cmd: "copy", id, selection, text });
    assert.equal((await r.answer(id)).event, "ok");
    // The session agent took the grab (a relay that just started sends it once the guest
    // answered its probe); then the agent owns the selection.
    const arg = selection === "clipboard" ? 0 : 1;
    await guest.waitForLog(new RegExp(`received clipboard grab, arg1: ${arg},`), since, "vdagent");
    await guest.agentOwns(selection);
  };
  const pasted = async (selection: "clipboard" | "primary") => {
    const paste = await guest.paste(selection);
    assert.ok(paste.ok, `the guest's paste of ${selection} failed`);
    outcome.guestPasted.push(paste.text);
  };
  const fetch = async (r: RelayProcess, selection: string, id: string) => {
    await r.send({ cmd: "paste", id, selection });
    const data = await r.answer(id);
    assert.equal(data.event, "data", JSON.stringify(data));
    outcome.hostFetched.push(String(data.text));
  };
  const guestCopies = async (r: RelayProcess, selection: "clipboard" | "primary", text: string) => {
    const since = r.events.length;
    await guest.copy(text, selection);
    const offer = await r.next("offer", (e) => e.selection === selection, since);
    await fetch(r, selection, `${r.name}: paste ${text}`);
    return offer;
  };

  const a = launch("A");
  await a.next("caps", () => true, 0, 20_000);
  await hostCopies(a, "primary", "H1 from A");
  await pasted("primary");
  const first = await guestCopies(a, "clipboard", "G1 before the restart");

  let mark = guest.mark();
  a.signal("SIGTERM");
  assert.equal(await a.exited, 0, "A handed off");
  // The port closes with A's socket: the agent drops the host's copy, releases its user's.
  await guest.waitForLog(/lost spice client connection/, mark, "vdagentd");
  assert.equal((await guest.paste("primary", 3000)).ok, false, "the host's copy went with A");
  // The guest's user copies while no relay is connected: its grab waits for the next client.
  await guest.copy("G2 while no relay was connected", "clipboard");
  await guest.waitForLog(/sent clipboard grab, arg1: 0/, mark, "vdagent");

  const b = launch("B");
  await b.next("started", () => true, 0, 20_000);
  // The release of G1, then the grab of G2 with the serial after G1's: B fetches G2.
  const gap = await b.next(
    "offer",
    (e) => e.selection === "clipboard" && e.serial !== first.serial,
    0,
    15_000,
  );
  outcome.gapSerialStep = (gap.serial as number) - (first.serial as number);
  await fetch(b, "clipboard", "B: paste the gap copy");
  // B grabs A's copy again, with the serial the guest expects: the guest pastes it.
  await guest.waitForLog(/received clipboard grab, arg1: 1,/, mark, "vdagent");
  await guest.agentOwns("primary");
  await pasted("primary");
  await hostCopies(b, "clipboard", "H2 from B");
  await pasted("clipboard");
  await guestCopies(b, "primary", "G3 after the restart");

  // Three restarts in a row, each relay started as soon as the last one exited.
  let current = b;
  for (let i = 0; i < 3; i++) {
    mark = guest.mark();
    current.signal("SIGTERM");
    assert.equal(await current.exited, 0);
    current = launch(`Q${i}`);
    await current.next("started", () => true, 0, 20_000);
    await hostCopies(current, "clipboard", `quick ${i}`);
    await pasted("clipboard");
    await guestCopies(current, "primary", `guest quick ${i}`);
  }
  current.signal("SIGTERM");
  assert.equal(await current.exited, 0);

  outcome.newClients = guest.countLog(/New client connected/, boot);
  outcome.discards = guest.countLog(/grab discard/, boot);
  outcome.diagnostics = relays.flatMap((r) =>
    r.events.filter((e) => e.event === "diagnostic").map((e) => `${r.name}: ${e.code}`)
  );
  return outcome;
}
