// deno-lint-ignore-file no-console
/// <reference lib="deno.unstable" />
/**
 * A relay that another process, on this machine or another, can replace
 * without the guest agent noticing: it keeps the session's checkpoints in
 * Deno KV, and writes the last one to a file too.
 *
 *     deno run --unstable-kv --allow-net --allow-read --allow-write scripts/examples/relay_kv.ts \
 *       /run/vm1/vdagent.sock [--vm vm1] [--kv PATH|URL] [--file vm1.checkpoint] [--clipboard-file F]
 *
 * - On start it restores the VM's latest checkpoint from KV, if there is one,
 *   and prints it (`describeCheckpoint`); otherwise it starts a new session.
 * - While it runs, a continuous `StateCheckpoint` emits a checkpoint after
 *   every change of the session's state; each goes to KV, so a standby can
 *   take over after a crash.
 * - On SIGTERM or SIGINT it hands off: `checkpoint()` stops at a message
 *   boundary, and the checkpoint goes to the file and to KV. Then it exits.
 *
 * It prints what the guest copies and offers the host's text (the contents of
 * `--clipboard-file`, or a greeting) for the guest to paste.
 *
 * `--kv` is what `Deno.openKv` opens: nothing for the default local store, a
 * path, or, for the scale-out path, a KV Connect URL of a database on Deno
 * Deploy (`https://api.deno.com/databases/<id>/connect`, with the token in
 * `DENO_KV_ACCESS_TOKEN`), FoundationDB-backed, which relays on every machine
 * share. Relay A writes there; relay B, on another machine, restores from it.
 *
 * A relay on QEMU's socket chardev reaches the guest over a new connection:
 * when A's socket closed, the guest agent saw its port close, and it sees it
 * reopen when B connects. So B restores with `resume: "reconnected"`: the caps
 * carry over, the bytes in flight are dropped, and B announces itself with
 * request=1, as QEMU does when the guest opens its port. The agent sees a new
 * client (it released what its user offered when its port closed, so nothing
 * is lost), both sides start their serials again at 0, and B grabs the host's
 * clipboard again once the guest answers. The reset is needed: a guest copy
 * lost with A's connection moved the agent's serial past the checkpoint's,
 * and the agent would discard B's next grab of that selection. (Keep the bytes
 * in flight and the serials, without an announcement, with `resume:
 * "continued"` when the byte stream itself goes on, e.g. behind a proxy that
 * holds the connection and loses no byte.)
 *
 * KV takes values of at most 64 KiB. A continuous checkpoint is small (no
 * bytes in flight: under 100 bytes), but the last one, lossless, holds what
 * the relay had received or framed but not handled: a large paste stopped
 * midway makes it megabytes. So a checkpoint is stored in parts of at most
 * 64 KiB, the parts before the entry that names them:
 *
 *     ["vdagent", vm, "checkpoint"]          { generation, parts, size }
 *     ["vdagent", vm, "checkpoint", g, i]    part i of generation g
 *
 * A reader that finds the entry finds its parts; the CRC-32 of the
 * checkpoint checks that they are the right ones when it is restored.
 *
 * @module
 */
import {
  ClipboardType,
  createHostPipeline,
  decodeCheckpoint,
  describeCheckpoint,
  StateCheckpoint,
} from "@vdagent/streams";

/** KV's largest value. */
const PART = 64 * 1024;
/** Parts per atomic commit: KV takes at most 800 KiB of mutations in one. */
const PARTS_PER_COMMIT = 10;
const TEXT = ClipboardType.UTF8_TEXT;

/** What the entry of a stored checkpoint holds. */
interface Entry {
  generation: number;
  parts: number;
  size: number;
}

/** Stores `checkpoint` under `key`, in parts; returns how many. */
export async function saveCheckpoint(
  kv: Deno.Kv,
  key: Deno.KvKey,
  checkpoint: Uint8Array,
): Promise<number> {
  const previous = await kv.get<Entry>(key);
  const generation = (previous.value?.generation ?? 0) + 1;
  const parts = Math.ceil(checkpoint.length / PART);
  // All parts but the last commit's first; then the last ones and the entry
  // at once, if nobody moved the entry meanwhile; then the old parts go.
  let commit = kv.atomic();
  for (let i = 0; i < parts; i++) {
    if (i > 0 && i % PARTS_PER_COMMIT === 0) {
      await commit.commit();
      commit = kv.atomic();
    }
    commit.set([...key, generation, i], checkpoint.subarray(i * PART, (i + 1) * PART));
  }
  const result = await commit.check(previous).set(key, {
    generation,
    parts,
    size: checkpoint.length,
  })
    .commit();
  if (!result.ok) {
    throw new Error("Cannot store the checkpoint: another relay stored one meanwhile");
  }
  if (previous.value !== null) {
    const old = kv.atomic();
    for (let i = 0; i < previous.value.parts; i++) {
      old.delete([...key, previous.value.generation, i]);
    }
    await old.commit();
  }
  return parts;
}

/** The checkpoint stored under `key`, or `undefined`. */
export async function loadCheckpoint(
  kv: Deno.Kv,
  key: Deno.KvKey,
): Promise<Uint8Array | undefined> {
  const entry = (await kv.get<Entry>(key)).value;
  if (entry === null) return undefined;
  const checkpoint = new Uint8Array(entry.size);
  for (let i = 0; i < entry.parts; i++) {
    const part = (await kv.get<Uint8Array>([...key, entry.generation, i])).value;
    if (part === null) throw new Error(`Cannot load the checkpoint: part ${i} is missing`);
    checkpoint.set(part, i * PART);
  }
  return checkpoint;
}

/** Command-line options. */
function parseArgs(args: string[]): Record<string, string> {
  const options: Record<string, string> = { socket: "" };
  for (let i = 0; i < args.length; i++) {
    const arg = args[i]!;
    if (arg.startsWith("--")) options[arg.slice(2)] = args[++i] ?? "";
    else options.socket = arg;
  }
  return options;
}

async function main(): Promise<void> {
  const options = parseArgs(Deno.args);
  const socket = options.socket;
  if (!socket) throw new Error("usage: relay_kv.ts SOCKET [--vm ID] [--kv PATH] [--file PATH] ...");
  const vm = options.vm ?? "vm1";
  const file = options.file ?? `${vm}.checkpoint`;
  const kv = await Deno.openKv(options.kv);
  const key = ["vdagent", vm, "checkpoint"];
  const hostText = options["clipboard-file"] === undefined
    ? new TextEncoder().encode(`Hello from relay ${Deno.pid}`)
    : await Deno.readFile(options["clipboard-file"]);

  const saved = await loadCheckpoint(kv, key);
  if (saved === undefined) console.log("new session");
  else {console.log(
      `restored ${saved.length} bytes from kv: ${JSON.stringify(describeCheckpoint(saved))}`,
    );}
  const conn = await Deno.connect({ transport: "unix", path: socket });
  const relay = createHostPipeline(conn, {
    ...(saved === undefined ? {} : { restore: saved, resume: "reconnected" }),
    checkpoints: new StateCheckpoint({ continuous: true }),
    clipboard: {
      onGuestGrab(selection, types) { // the guest copied
        if (!types.includes(TEXT)) return;
        relay.session.request(selection, TEXT).then(
          (data) => console.log(`guest copied: ${new TextDecoder().decode(data)}`),
          (error) => console.error(`paste failed: ${error.code}`),
        );
      },
      provide() { // the guest pastes
        console.log(`guest pastes ${hostText.length} bytes`);
        return hostText;
      },
    },
  });
  if (saved === undefined) relay.session.grab(0, [TEXT]); // a restored session grabs again itself

  // Every checkpoint the stage emits goes to KV, the last one included.
  const stored = (async () => {
    for await (const checkpoint of relay.checkpoints.readable) {
      const parts = await saveCheckpoint(kv, key, checkpoint);
      const { selections } = decodeCheckpoint(checkpoint);
      const serials = selections.map((s) => s.lastSerial);
      const requests = selections.reduce((n, s) => n + (s.hostRequests?.length ?? 0), 0);
      console.log(
        `saved ${checkpoint.length} bytes in ${parts} part(s), serials ${serials}, host requests ${requests}`,
      );
    }
  })();

  const stop = new Promise<void>((resolve) => {
    for (const signal of ["SIGTERM", "SIGINT"] as const) Deno.addSignalListener(signal, resolve);
  });
  const how = await Promise.race([relay.done.then(() => "ended"), stop.then(() => "stop")]);
  if (how === "stop") {
    console.log("checkpointing");
    const checkpoint = await relay.checkpoint();
    await Deno.writeFile(`${file}.tmp`, checkpoint);
    await Deno.rename(`${file}.tmp`, file);
    await stored;
    console.log(`handed off: ${checkpoint.length} bytes in ${file} and in kv`);
  } else {
    await stored;
    console.log("the guest closed the connection");
  }
  conn.close();
  kv.close();
}

if (import.meta.main) {
  try {
    await main();
    Deno.exit(0);
  } catch (error) {
    console.error(`relay_kv: ${error instanceof Error ? error.message : error}`);
    Deno.exit(1);
  }
}
