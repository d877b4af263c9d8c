// This module is browser compatible.
// Runs inside the page of tests/browser/browser_test.ts, imported from the npm
// build: a host pipeline and a guest pipeline back to back over in-page pipes,
// then the host side handed to a second relay in the middle of a transfer.
import {
  ClipboardError,
  ClipboardType,
  createGuestPipeline,
  createHostPipeline,
  describeCheckpoint,
  type HostClipboardHandler,
  type HostPipeline,
  Selection,
} from "../../mod.ts";
import { Link } from "../_link.ts";

/** What the page reports. */
export interface PageResult {
  /** The text the guest copied, as the host pasted it. */
  hostPasted: string;
  /** Length and FNV-1a hash of the image the host copied, as the guest pasted it. */
  guestPasted: Digest;
  /** The types the host saw the guest offer. */
  guestOffered: number[];
  /** Relay A checkpointed in the middle of the guest's large paste, relay B restored from the bytes. */
  handOff: {
    /** The checkpoint as `describeCheckpoint` shows it: mode and bytes in flight. */
    checkpoint: { mode: string; inboundBytes: number; outboundBytes: number };
    /** How relay A's request for the large paste ended. */
    requestOnA: string;
    /** What relay B's resumed request for it delivered. */
    resumedOnB: { selection: number; type: number; data: Digest }[];
    /** The text the guest pasted from relay B. */
    guestPastedFromB: string;
    /** How often the guest heard a host announce itself as a new client. */
    newClients: number;
  };
  /** How each pipeline ended. */
  relayADone: string;
  hostDone: string;
  guestDone: string;
}

/** Length and FNV-1a hash of bytes. */
export interface Digest {
  length: number;
  hash: number;
}

/** The text the guest copies. */
export const GUEST_TEXT = "copied in the guest: ✓ ü 日本";
/** The text relay B offers after the hand-off. */
export const RELAY_B_TEXT = "offered by relay B after the hand-off";
/** Where relay A is checkpointed: this many bytes into the guest's large paste on the wire. */
export const HAND_OFF_AT = 20 * (8 + 2048) + 1000;

/** Deterministic bytes: `length` of them from `seed`. */
export function testBytes(length: number, seed: number): Uint8Array {
  const bytes = new Uint8Array(length);
  let x = seed;
  for (let i = 0; i < bytes.length; i++) {
    x = (Math.imul(x, 1103515245) + 12345) >>> 0;
    bytes[i] = x >>> 24;
  }
  return bytes;
}

/** The image the host copies: 200 000 bytes, more than one 64 KiB write. */
export function hostImage(): Uint8Array {
  return testBytes(200_000, 1);
}

/** The guest's large paste: 300 000 bytes, 147 chunks on the wire. */
export function guestLarge(): Uint8Array {
  return testBytes(300_000, 2);
}

/** FNV-1a over bytes. */
export function fnv1a(bytes: Uint8Array): number {
  let hash = 0x811c9dc5;
  for (const byte of bytes) hash = Math.imul(hash ^ byte, 0x01000193) >>> 0;
  return hash;
}

function digest(bytes: Uint8Array): Digest {
  return { length: bytes.length, hash: fnv1a(bytes) };
}

const outcome = (done: Promise<unknown>) =>
  done.then(
    () => "resolved",
    (error) => `rejected: ${error instanceof ClipboardError ? error.code : String(error)}`,
  );

/** Runs the round trip and the hand-off, and reports what each side received. */
export async function run(): Promise<PageResult> {
  const TEXT = ClipboardType.UTF8_TEXT;
  const toGuest = new TransformStream<Uint8Array, Uint8Array>();
  const toHost = new Link();
  const transport = { readable: toHost.readable, writable: toGuest.writable };
  const guestOffered: number[] = [];
  const guestGrabs: (() => void)[] = [];
  const hostGrabs: (() => void)[] = [];
  const next = (waiters: (() => void)[]) => new Promise<void>((r) => waiters.push(r));
  const image = hostImage();
  const large = guestLarge();
  let guestCopy: Uint8Array = new TextEncoder().encode(GUEST_TEXT);
  let newClients = 0;
  const clipboard = (
    provide: NonNullable<HostClipboardHandler["provide"]>,
  ): HostClipboardHandler => ({
    onGuestGrab(_, types) {
      guestOffered.push(...types);
      guestGrabs.shift()?.();
    },
    provide,
  });
  const relayA = createHostPipeline(transport, {
    clipboard: clipboard((_, type) => type === ClipboardType.IMAGE_PNG ? image : undefined),
  });
  const guest = createGuestPipeline({ readable: toGuest.readable, writable: toHost.writable }, {
    onHostCaps: (_, request) => void (request && newClients++),
    clipboard: {
      onHostGrab: () => hostGrabs.shift()?.(),
      provide: (_, type) => type === TEXT ? guestCopy : undefined,
    },
  });

  // A clipboard round trip through relay A.
  let grabbed = next(guestGrabs);
  guest.session.grab(Selection.CLIPBOARD, [TEXT]);
  await grabbed;
  const text = await relayA.session.request(Selection.CLIPBOARD, TEXT);
  let offered = next(hostGrabs);
  relayA.session.grab(Selection.PRIMARY, [ClipboardType.IMAGE_PNG]);
  await offered;
  const pasted = await guest.session.request(Selection.PRIMARY, ClipboardType.IMAGE_PNG);

  // The guest copies 300 000 bytes; relay A asks for them, and is handed off
  // to relay B when it has read HAND_OFF_AT bytes of the answer.
  guestCopy = large;
  grabbed = next(guestGrabs);
  guest.session.grab(Selection.CLIPBOARD, [TEXT]);
  await grabbed;
  let relayB: HostPipeline | undefined;
  let checkpoint!: Uint8Array;
  const handedOff = new Promise<void>((resolve) => {
    toHost.onStop = async () => {
      toHost.stopAt = undefined;
      checkpoint = await relayA.checkpoint();
      relayB = createHostPipeline(transport, {
        restore: checkpoint,
        resume: "continued",
        clipboard: clipboard(() => new TextEncoder().encode(RELAY_B_TEXT)),
      });
      resolve();
    };
  });
  toHost.stopAt = toHost.written + HAND_OFF_AT; // the guest answers next
  const requestOnA = outcome(relayA.session.request(Selection.CLIPBOARD, TEXT, { timeout: 0 }));
  await handedOff;
  const b = relayB!;
  const resumedOnB = [];
  for (const { selection, type, result } of b.session.resumedRequests) {
    resumedOnB.push({ selection, type, data: digest(await result) });
  }
  offered = next(hostGrabs);
  b.session.grab(Selection.CLIPBOARD, [TEXT]);
  await offered;
  const fromB = await guest.session.request(Selection.CLIPBOARD, TEXT);
  await b.close();
  const { mode, wire } = describeCheckpoint(checkpoint);
  return {
    hostPasted: new TextDecoder().decode(text),
    guestPasted: digest(pasted),
    guestOffered,
    handOff: {
      checkpoint: {
        mode,
        inboundBytes: wire?.inboundBytes ?? -1,
        outboundBytes: wire?.outboundBytes ?? -1,
      },
      requestOnA: await requestOnA,
      resumedOnB,
      guestPastedFromB: new TextDecoder().decode(fromB),
      newClients,
    },
    relayADone: await outcome(relayA.done),
    hostDone: await outcome(b.done),
    guestDone: await outcome(guest.done),
  };
}
