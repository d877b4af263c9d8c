// deno-lint-ignore-file no-console
/**
 * `deno task demo`: two relays, one guest, and a hand-off in the middle of a transfer.
 *
 *     deno task demo                        # A hands off to B through a checkpoint
 *     deno task demo --without-checkpoint   # B starts from nothing: the failure it prevents
 *
 * No VM and no network: the guest is an in-process `GuestSession` (through
 * `createGuestPipeline`), which follows the Linux agent's rules, and the relays are
 * `createHostPipeline`, as the README teaches. They talk over an in-memory link that stays up
 * while the relays change, as a socket held by a proxy does. Relay A negotiates, pastes the
 * guest's text, copies its own; the guest copies a 3 MiB screenshot; while A is fetching it,
 * A takes a checkpoint and relay B continues from it. The transcript has one line per message,
 * parsed from the link's bytes by a parser of its own, and the summary is computed from those
 * bytes, the checkpoint and what the sessions did. The colours follow NO_COLOR and the terminal.
 *
 * @module
 */
import {
  Capability,
  type CheckpointState,
  ClipboardType,
  createGuestPipeline,
  createHostPipeline,
  decodeCheckpoint,
  decodeMessage,
  describeCheckpoint,
  hasCapability,
  type HostPipeline,
  type HostPipelineOptions,
  type PayloadOptions,
  Selection,
} from "../mod.ts";
import { describe, summarise } from "./_describe.ts";
import { Link, type LinkEnd, palette, type TappedMessage, WireTap } from "./_demo_wire.ts";

const withCheckpoint = !Deno.args.includes("--without-checkpoint");
const unknown = Deno.args.filter((a) => a !== "--without-checkpoint");
if (unknown.length > 0) {
  console.error(
    `demo: unknown argument ${unknown[0]}\nusage: deno task demo [--without-checkpoint]`,
  );
  Deno.exit(2);
}
const c = palette(!Deno.env.get("NO_COLOR") && Deno.stdout.isTerminal());
const TEXT = ClipboardType.UTF8_TEXT;
const PNG = ClipboardType.IMAGE_PNG;
const CLIPBOARD = Selection.CLIPBOARD;
const encode = (s: string) => new TextEncoder().encode(s);
const decode = (b: Uint8Array) => new TextDecoder().decode(b);
const mib = (n: number) => `${(n / 1024 / 1024).toFixed(2)} MiB`;
const same = (a: Uint8Array, b: Uint8Array) =>
  a.length === b.length && a.every((x, i) => x === b[i]);

/** A screenshot-sized PNG: the signature, then 3 MiB of deterministic noise. */
function screenshot(): Uint8Array {
  const bytes = new Uint8Array(3 * 1024 * 1024);
  bytes.set([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]);
  let x = 2463534242;
  for (let i = 8; i < bytes.length; i++) {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    bytes[i] = x & 255;
  }
  return bytes;
}

// ---- printing ---------------------------------------------------------------------------------

const say = (text: string) => console.log(`\n${c.bold("▸")} ${c.bold(text)}`);
const note = (text: string) => console.log(`  ${c.dim(text)}`);

/** Both sides' caps decide the clipboard layout of the transcript. */
let guestCaps: number[] | undefined;
let hostCaps: number[] | undefined;
function layout(): PayloadOptions {
  const both = (bit: number) =>
    [guestCaps, hostCaps].every((caps) => caps !== undefined && hasCapability(caps, bit));
  return {
    selection: both(Capability.CLIPBOARD_SELECTION),
    grabSerial: both(Capability.CLIPBOARD_GRAB_SERIAL),
  };
}

/** Grab serials as they crossed the link, per direction. */
const serials = { "guest→relay": [] as number[], "relay→guest": [] as number[] };

function line(direction: "guest→relay" | "relay→guest", who: string, m: TappedMessage, extra = "") {
  const payload = decodeMessage(m, layout());
  if (payload.kind === "announce_capabilities") {
    if (direction === "guest→relay") guestCaps = [...payload.caps];
    else hostCaps = [...payload.caps];
  }
  if (payload.kind === "clipboard_grab" && payload.serial !== undefined) {
    serials[direction].push(payload.serial);
  }
  let text: string;
  if (payload.kind === "announce_capabilities") {
    text = `ANNOUNCE_CAPABILITIES request=${payload.request ? 1 : 0} caps=0x${
      payload.caps[0]!.toString(16).padStart(8, "0")
    }`;
  } else if (payload.kind === "clipboard" && payload.data.length > 64) {
    text = `CLIPBOARD ${payload.selection === 0 ? "CLIPBOARD" : payload.selection} ${
      payload.type === PNG ? "IMAGE_PNG" : payload.type
    } data=${summarise(payload.data, 24)} in ${m.chunks} chunks`;
  } else {
    text = describe(payload);
  }
  const arrow = direction === "guest→relay"
    ? c.cyan(`guest ──▶ ${who}`.padEnd(11))
    : c.magenta(`${who} ──▶ guest`.padEnd(11));
  console.log(`    ${arrow} ${text}${extra === "" ? "" : c.dim(` ${extra}`)}`);
}

// ---- the link, the guest and the relays -------------------------------------------------------

const toRelay = new Link(); // guest → relay
const toGuest = new Link(); // relay → guest
const relayTap = new WireTap(); // what the relays read, in order
const guestTap = new WireTap(); // what the guest read, in order
/** Per message the relays read: bytes each relay read of it. */
let readBy = new Map<string, number>();
toRelay.onRead = (bytes, by) => {
  readBy.set(by, (readBy.get(by) ?? 0) + bytes.length);
  for (const m of relayTap.push(bytes)) {
    const [first, second] = [...readBy];
    const split = second === undefined ? "" : `(${first![0]} read ${mib(first![1])} of it, which ` +
      `the checkpoint carried to ${second[0]}; ${second[0]} read the other ${mib(second[1])})`;
    line("guest→relay", by, m, split);
    readBy = new Map();
  }
  if (relayTap.atBoundary) readBy = new Map();
};
let writtenBy = "A";
toGuest.onRead = (bytes) => {
  for (const m of guestTap.push(bytes)) line("relay→guest", writtenBy, m);
};

const guestLog: string[] = [];
const waiters = new Set<() => void>();
const record = (entry: string) => {
  guestLog.push(entry);
  for (const wake of waiters) wake();
};
/** Resolves once `check` holds; checked on every event. */
function until(check: () => boolean): Promise<void> {
  return new Promise((resolve) => {
    const wake = () => {
      if (check()) {
        waiters.delete(wake);
        resolve();
      }
    };
    waiters.add(wake);
    wake();
  });
}

const guestData = new Map<string, Uint8Array>();
const guestEnd = { g2h: toRelay.end("guest"), h2g: toGuest.end("guest") };
let newClients = 0;
const guestDiagnostics: string[] = [];
const guest = createGuestPipeline({
  readable: guestEnd.h2g.readable,
  writable: guestEnd.g2h.writable,
}, {
  maxMessageSize: 16 << 20,
  onHostCaps: (_caps, request) => {
    if (request) newClients++;
    record("host caps");
  },
  onDiagnostic: (d) => {
    guestDiagnostics.push(d.message);
    record(`diagnostic ${d.code}`);
  },
  clipboard: {
    onHostGrab: (selection) => record(`host grab ${selection}`),
    provide: (selection, type) => guestData.get(`${selection}/${type}`),
  },
});

const hostData = new Map<string, Uint8Array>();
const relayDiagnostics: string[] = [];
/** What every relay is given: a clipboard that records the guest's copies and serves ours. */
function relayOptions(name: string): HostPipelineOptions {
  return {
    maxMessageSize: 16 << 20,
    onGuestCaps: () => record(`${name} caps`),
    onDiagnostic: (d) => {
      relayDiagnostics.push(`${name}: ${d.message}`);
      record(`${name} diagnostic ${d.code}`);
    },
    clipboard: {
      onGuestGrab: (selection) => record(`${name} guest grab ${selection}`),
      provide: (selection, type) => hostData.get(`${selection}/${type}`),
    },
  };
}
/** A relay's end of the link: it reads what the guest wrote and writes to the guest. */
function relayEnd(name: string): LinkEnd & { name: string } {
  const read = toRelay.end(name);
  const write = toGuest.end(name);
  return {
    name,
    readable: read.readable,
    writable: write.writable,
    detach: () => {
      read.detach();
      write.detach();
    },
  };
}

const watchdog = setTimeout(() => {
  console.error(c.red("\ndemo: stuck for 30 s; giving up"));
  Deno.exit(1);
}, 30_000);

// ---- the story --------------------------------------------------------------------------------

console.log(
  c.bold(`vdagent-streams demo: two relays, one guest${withCheckpoint ? ", one hand-off" : ""}`),
);
note(
  "guest = GuestSession (Linux agent rules) · relays = createHostPipeline · one line per message",
);

say("Relay A connects to the guest's port; both announce their capabilities.");
const endA = relayEnd("A");
const killA = new AbortController(); // used --without-checkpoint only
const relayA: HostPipeline = createHostPipeline(endA, {
  ...relayOptions("A"),
  signal: killA.signal,
});
// Each side announces with request=1 and answers the other's with request=0.
const twice = (entry: string) => guestLog.filter((e) => e === entry).length === 2;
await until(() => twice("A caps") && twice("host caps"));

say("The guest's user copies a line of text; relay A pastes it.");
guestData.set(`0/${TEXT}`, encode("Hello from the guest ✓"));
guest.session.grab(CLIPBOARD, [TEXT]);
await until(() => guestLog.includes("A guest grab 0"));
note(`A got: "${decode(await relayA.session.request(CLIPBOARD, TEXT))}"`);

say("Relay A copies a line of text; the guest's user pastes it.");
hostData.set(`0/${TEXT}`, encode("Hello from relay A"));
relayA.session.grab(CLIPBOARD, [TEXT]);
await until(() => guestLog.filter((e) => e === "host grab 0").length === 1);
note(`the guest got: "${decode(await guest.session.request(CLIPBOARD, TEXT))}"`);

const png = screenshot();
say(`The guest's user copies a ${mib(png.length)} screenshot; relay A starts fetching it.`);
guestData.set(`0/${PNG}`, png);
guest.session.grab(CLIPBOARD, [PNG]);
await until(() => guestLog.filter((e) => e === "A guest grab 0").length === 2);
const offerBefore = relayA.session.guestOffer(CLIPBOARD);

let relayB!: HostPipeline;
let checkpoint: CheckpointState | undefined;
let pasted: Uint8Array | undefined;
let endB!: ReturnType<typeof relayEnd>;
/** What B knew of the guest's clipboard when it started. */
let offerAfter: ReturnType<HostPipeline["session"]["guestOffer"]>;

if (withCheckpoint) {
  // Hand off at a fixed byte of the guest's answer, mid-chunk, so every run prints the same.
  const handedOff = Promise.withResolvers<void>();
  toRelay.stopAt = toRelay.written + 1_300_000;
  toRelay.onStop = async () => {
    toRelay.stopAt = undefined;
    say(`Mid-transfer, relay A is told to stop: it takes a checkpoint.`);
    const bytes = await relayA.checkpoint();
    endA.detach();
    checkpoint = decodeCheckpoint(bytes);
    const view = describeCheckpoint(bytes);
    const clip = view.selections[0]!;
    note(`checkpoint: ${bytes.length} bytes, ${view.mode}, format ${view.format}`);
    note(
      `  caps host ${view.hostCaps.join(",")} guest ${view.guestCaps?.join(",")}; ` +
        `CLIPBOARD last serial ${clip.lastSerial}, guest offers ${
          clip.guestOffer?.types.join(",")
        }, ` +
        `host waits for ${clip.hostRequests?.join(",")}`,
    );
    note(
      `  in flight: ${view.wire?.inboundBytes} bytes read from the guest but not yet a whole ` +
        `message, ${view.wire?.outboundBytes} bytes for the guest not yet written`,
    );
    say("Relay B starts from the checkpoint: it does not announce itself, and reads on.");
    writtenBy = "B";
    endB = relayEnd("B");
    relayB = createHostPipeline(endB, {
      ...relayOptions("B"),
      restore: bytes,
      resume: "continued",
    });
    offerAfter = relayB.session.guestOffer(CLIPBOARD);
    handedOff.resolve();
  };
  const inA = relayA.session.request(CLIPBOARD, PNG, { timeout: 0 });
  const error = await inA.then(() => undefined, (e) => e);
  await handedOff.promise;
  note(`A's request ended with ${error?.code}: it is B's now (session.resumedRequests)`);
  const [resumed] = relayB.session.resumedRequests;
  pasted = await resumed!.result;
  note(
    `B got the screenshot: ${mib(pasted.length)}, ${
      same(pasted, png) ? "byte for byte the guest's" : "NOT the guest's bytes"
    }`,
  );
} else {
  pasted = await relayA.session.request(CLIPBOARD, PNG);
  note(
    `A got the screenshot: ${mib(pasted.length)}, ${
      same(pasted, png) ? "byte for byte" : "DAMAGED"
    }`,
  );
  say("Relay A stops without a checkpoint (it cannot stop mid-message, so it finished first).");
  killA.abort(new Error("relay A stopped")); // as a process that is killed: its state dies with it
  await relayA.done.catch(() => {});
  endA.detach();
  // A fresh HostSession announces itself with request=1, and the Linux agent then takes it for a
  // new client and drops what its user copied. Not to do that, a relay without a checkpoint has
  // to stay quiet and assume what it cannot know: the guest's caps (the Linux agent's) and
  // serials of 0. This is that relay, spelled out as the state it starts from.
  const nothing = { lastSerial: 0, guestRequests: [] };
  say(
    "Relay B starts without A's state; not to disturb the guest, it stays quiet (no announcement).",
  );
  note("B assumes the Linux agent's caps 0x00038de7 and knows no serial: all 0");
  writtenBy = "B";
  endB = relayEnd("B");
  relayB = createHostPipeline(endB, {
    ...relayOptions("B"),
    resume: "continued",
    restore: {
      mode: "minimal",
      hostCaps: relayA.session.hostCaps, // the same relay, configured the same way
      guestCaps: [0x00038de7],
      selections: [nothing, nothing, nothing],
    },
  });
  offerAfter = relayB.session.guestOffer(CLIPBOARD);
}

say("Relay B copies a line of text; the guest's user pastes.");
hostData.set(`0/${TEXT}`, encode("Hello from relay B"));
relayB.session.grab(CLIPBOARD, [TEXT]);
await until(() =>
  guestLog.filter((e) => e === "host grab 0").length === 2 ||
  guestLog.includes("diagnostic GRAB_DISCARDED")
);
let guestPasted: string;
if (guest.session.hostOffer(CLIPBOARD) !== undefined) {
  guestPasted = decode(await guest.session.request(CLIPBOARD, TEXT));
  note(`the guest got: "${guestPasted}"`);
} else {
  guestPasted = "its own screenshot";
  note(c.red(`the guest discarded B's grab: ${guestDiagnostics.at(-1)}`));
  note(c.red("its user's paste still gives the guest's own screenshot, not B's text"));
}

say("The guest's user copies again; relay B pastes it.");
guestData.set(`0/${TEXT}`, encode("Goodbye from the guest"));
guest.session.grab(CLIPBOARD, [TEXT]);
await until(() => guestLog.includes("B guest grab 0"));
note(`B got: "${decode(await relayB.session.request(CLIPBOARD, TEXT))}"`);

await guest.close();
await relayB.done;
clearTimeout(watchdog);

// ---- the summary, from what happened ----------------------------------------------------------

/** The messages in `bytes`, and whether `bytes` end on a message boundary. */
function parse(bytes: Uint8Array): { messages: TappedMessage[]; whole: boolean } {
  const tap = new WireTap();
  try {
    return { messages: tap.push(bytes), whole: tap.atBoundary };
  } catch {
    return { messages: [], whole: false }; // not vdagent framing: nothing counts as received
  }
}
const concat = (...parts: Uint8Array[]) => {
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  parts.reduce((at, p) => (out.set(p, at), at + p.length), 0);
  return out;
};
/** How many of `sent` did not arrive as they were sent, in order. */
function lostOf(sent: TappedMessage[], received: TappedMessage[]): number {
  let matched = 0;
  while (
    matched < sent.length && matched < received.length &&
    sent[matched]!.type === received[matched]!.type &&
    same(sent[matched]!.data, received[matched]!.data)
  ) matched++;
  return sent.length - matched + (received.length - matched); // missing, plus doubled or damaged
}
const inbound = checkpoint?.wire?.inbound ?? new Uint8Array(0);
const outbound = checkpoint?.wire?.outbound ?? new Uint8Array(0);
// Guest → relays: A handled the whole messages it read; the checkpoint carried the partial one,
// re-framed, and B handled that and what it read. Together they must be what the guest sent.
const sentByGuest = parse(toRelay.bytesOf(toRelay.writes, "guest")).messages;
const handledA = parse(toRelay.bytesOf(toRelay.reads, "A"));
const handledB = parse(concat(inbound, toRelay.bytesOf(toRelay.reads, "B")));
const lostG2H = lostOf(sentByGuest, [...handledA.messages, ...handledB.messages]);
// Relays → guest: A produced what it wrote and the bytes the checkpoint carried; B wrote those
// first, then its own. The guest must have received exactly that.
const writtenB = toGuest.bytesOf(toGuest.writes, "B");
const outboundFirst = same(writtenB.subarray(0, outbound.length), outbound);
const producedA = parse(concat(toGuest.bytesOf(toGuest.writes, "A"), outbound));
const producedB = parse(writtenB.subarray(outbound.length));
const receivedByGuest = parse(toGuest.bytesOf(toGuest.reads, "guest")).messages;
const lostH2G = lostOf([...producedA.messages, ...producedB.messages], receivedByGuest);
const lost = lostG2H + lostH2G;
const framingOk = outboundFirst && handledB.whole && producedA.whole && producedB.whole;

const discards = [...guestDiagnostics, ...relayDiagnostics].filter((d) => /Discarded/.test(d));
const serialsOk = discards.length === 0;
const kept = offerBefore !== undefined && offerAfter !== undefined &&
  offerAfter.serial === offerBefore.serial && pasted !== undefined && same(pasted, png) &&
  withCheckpoint;

const mark = (ok: boolean) => ok ? c.green("ok") : c.red("FAILED");
console.log(
  `\n${c.bold("Summary")} ${
    c.dim(withCheckpoint ? "(with a checkpoint)" : "(--without-checkpoint)")
  }`,
);
console.log(
  `  messages lost            ${lost === 0 && framingOk ? c.green("0") : c.red(String(lost))}  ${
    c.dim(
      `guest → relays: ${sentByGuest.length} sent, A handled ${handledA.messages.length}, B ${handledB.messages.length}` +
        `${
          inbound.length > 0
            ? ` (one begun by A: the checkpoint carried ${mib(inbound.length)} of it)`
            : ""
        }; ` +
        `relays → guest: ${
          producedA.messages.length + producedB.messages.length
        } sent, ${receivedByGuest.length} received`,
    )
  }`,
);
if (!framingOk) {
  console.log(c.red("                           the bytes in flight did not line up"));
}
console.log(
  `  serial continuity        ${mark(serialsOk)}  ${
    c.dim(
      `CLIPBOARD grabs: guest ${serials["guest→relay"].join(", ")} · relays ${
        serials["relay→guest"].join(", ")
      }`,
    )
  }`,
);
for (const d of discards) {
  console.log(`                           ${c.red(`host's grab discarded: ${d}`)}`);
}
console.log(
  `  guest's clipboard kept   ${kept ? c.green("yes") : c.red("no")}  ${
    c.dim(
      kept
        ? `B knew the guest's offer (serial ${offerAfter?.serial}) and fetched the ${
          mib(png.length)
        } screenshot A had begun`
        : `B ${
          offerAfter === undefined
            ? "did not know what the guest's user had copied"
            : "lost the transfer"
        }; the guest ended with ${guestPasted === "Hello from relay B" ? "B's text" : guestPasted}`,
    )
  }`,
);
console.log(
  `  the guest saw            ${
    newClients === 1 ? c.green("one client") : c.red(`${newClients} clients`)
  }  ${c.dim(`${guest.session.serials.join("/")} are its next serials per selection`)}`,
);

const healthy = lost === 0 && framingOk && serialsOk && kept && newClients === 1;
Deno.exit(withCheckpoint && !healthy ? 1 : 0);
