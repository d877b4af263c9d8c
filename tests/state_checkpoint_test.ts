import { test } from "node:test";
import assert from "node:assert/strict";
import {
  type CheckpointState,
  ClipboardType,
  createGuestPipeline,
  createHostPipeline,
  decodeCheckpoint,
  encodeCheckpoint,
  encodeMessage,
  GuestSession,
  StateCheckpoint,
} from "../mod.ts";
import { framed, until } from "./_helpers.ts";
import { connectGuest } from "./_link.ts";

const TEXT = ClipboardType.UTF8_TEXT;
const text = (s: string) => new TextEncoder().encode(s);

/** A relay and a guest over in-memory pipes. */
function pair(checkpoints: StateCheckpoint) {
  const toGuest = new TransformStream<Uint8Array, Uint8Array>();
  const toHost = new TransformStream<Uint8Array, Uint8Array>();
  const guest = createGuestPipeline({ readable: toGuest.readable, writable: toHost.writable }, {
    clipboard: { provide: () => text("from the guest") },
  });
  const relay = createHostPipeline({ readable: toHost.readable, writable: toGuest.writable }, {
    checkpoints,
  });
  return { guest, relay, toGuest };
}

/** Reads every checkpoint already emitted. */
async function drain(checkpoints: StateCheckpoint): Promise<CheckpointState[]> {
  const reader = checkpoints.readable.getReader();
  const out: CheckpointState[] = [];
  for (;;) {
    const timeout = new Promise<"none">((resolve) => setTimeout(() => resolve("none"), 20));
    const next = await Promise.race([reader.read(), timeout]);
    if (next === "none" || next.done) break;
    out.push(decodeCheckpoint(next.value));
  }
  reader.releaseLock();
  return out;
}

test("StateCheckpoint emits after each change of the session's state, and only then", async () => {
  const checkpoints = new StateCheckpoint({ continuous: true, mode: "minimal" });
  const { guest, relay } = pair(checkpoints);
  await until(
    () => relay.session.guestCaps !== undefined && guest.session.hostCaps !== undefined,
    "caps",
  );
  assert.deepEqual((await drain(checkpoints)).at(-1)?.guestCaps, [0x00038de7]);
  guest.session.grab(1, [TEXT]); // serial 0: last_serial stays 0, and offers are not minimal state
  guest.session.grab(1, [TEXT]); // serial 1
  await until(() => relay.session.guestOffer(1)?.serial === 1, "the guest's grabs");
  relay.session.mouse({ x: 1, y: 2 }); // not part of the minimal state either
  await new Promise((r) => setTimeout(r, 10));
  const [grabbed, ...rest] = await drain(checkpoints);
  assert.equal(rest.length, 0, "one change, one checkpoint");
  assert.equal(grabbed?.mode, "minimal");
  assert.equal(grabbed?.selections[1].lastSerial, 1);
  relay.session.grab(2, [TEXT]);
  await until(() => guest.session.hostOffer(2) !== undefined, "the host's grab");
  const [owned] = await drain(checkpoints);
  // The host's grab carried the guest's last serial on SECONDARY, 0, and kept it.
  assert.deepEqual(owned?.selections[2], { lastSerial: 0, hostOffer: [TEXT], guestRequests: [] });
  await relay.close();
  await guest.done;
});

test("StateCheckpoint replaces an unread continuous checkpoint and keeps every on-demand one", async () => {
  const checkpoints = new StateCheckpoint({ continuous: true });
  const { guest, relay, toGuest } = pair(checkpoints);
  await until(
    () => relay.session.guestCaps !== undefined && guest.session.hostCaps !== undefined,
    "caps",
  );
  for (let i = 0; i < 5; i++) relay.session.mouse({ x: i, y: i });
  await new Promise((r) => setTimeout(r, 10));
  const bytes = await relay.checkpoint();
  const all: Uint8Array[] = [];
  for await (const c of checkpoints.readable) all.push(c);
  assert.equal(
    all.length,
    2,
    "the latest continuous one, then the on-demand one; then the stream ends",
  );
  assert.deepEqual(all[1], bytes);
  const latest = decodeCheckpoint(all[0]!);
  assert.equal(latest.mouse?.x, 4);
  assert.equal(latest.wire, undefined, "continuous checkpoints carry no bytes in flight");
  assert.ok(decodeCheckpoint(bytes).wire !== undefined, "the one at the boundary does");
  assert.throws(() => new StateCheckpoint({ mode: "full" as "lossless" }), TypeError);
  await toGuest.writable.close(); // the relay let go of the transport; end it
  await guest.done;
});

test("StateCheckpoint lets a standby take over from the latest continuous checkpoint after a crash", async () => {
  // The relay crashes without a checkpoint() call; its socket to QEMU closes,
  // so the guest sees its port close and reopen when the standby connects.
  const events: string[] = [];
  const guest = new GuestSession({
    requestTimeout: 0,
    clipboard: {
      onHostGrab: (s) => void events.push(`host grab ${s}`),
      provide: () => text("guest"),
    },
  });
  const checkpoints = new StateCheckpoint({ continuous: true });
  const crash = new AbortController();
  const hostOptions = { clipboard: { provide: () => text("host") } };
  const first = connectGuest(guest, { ...hostOptions, checkpoints, signal: crash.signal });
  const stored: Uint8Array[] = [];
  const store = checkpoints.readable.pipeTo(
    new WritableStream({ write: (c) => void stored.push(c) }),
  );
  await until(() => guest.hostCaps !== undefined, "caps");
  guest.grab(0, [TEXT]);
  guest.grab(0, [TEXT]);
  first.relay.session.grab(1, [TEXT]);
  await until(
    () => events.includes("host grab 1") && first.relay.session.guestOffer(0)?.serial === 1,
    "grabs",
  );
  await new Promise((r) => setTimeout(r, 10));
  crash.abort();
  await assert.rejects(first.relay.done);
  await store;
  await first.port.handOff(false, () => {});
  const standby = connectGuest(guest, {
    ...hostOptions,
    restore: stored.at(-1)!,
    resume: "reconnected",
  });
  guest.clientDisconnected();
  await until(
    () => events.filter((e) => e === "host grab 1").length === 2,
    "the host's grab, sent again",
  );
  assert.equal(new TextDecoder().decode(await guest.request(1, TEXT)), "host");
  // The standby announced itself (request=1), so both sides started their serials again.
  guest.grab(0, [TEXT]);
  await until(
    () => standby.relay.session.guestOffer(0)?.serial === 0,
    "the guest's next grab, serial 0",
  );
  assert.equal(new TextDecoder().decode(await standby.relay.session.request(0, TEXT)), "guest");
  await standby.relay.close().catch(() => {});
  await standby.port.done.catch(() => {});
});

test("StateCheckpoint keeps emitting when a guest, while probed, asks for type NONE or a type no host can own", async () => {
  const toGuest = new TransformStream<Uint8Array, Uint8Array>();
  const toHost = new TransformStream<Uint8Array, Uint8Array>();
  const checkpoints = new StateCheckpoint({ continuous: true });
  const empty = { lastSerial: 3, guestRequests: [] };
  const relay = createHostPipeline({ readable: toHost.readable, writable: toGuest.writable }, {
    // A drained checkpoint restored on a new connection: the relay probes.
    restore: encodeCheckpoint({
      mode: "lossless",
      hostCaps: [0x00020061],
      guestCaps: [0x00038de7],
      selections: [{ ...empty, hostOffer: [TEXT] }, empty, empty],
      drained: true,
    }),
    checkpoints,
    clipboard: { provide: () => text("host text") },
  });
  const layout = { selection: true, grabSerial: true };
  const send = (payload: Parameters<typeof encodeMessage>[0]) => {
    const m = encodeMessage(payload, layout);
    return writer.write(framed(1, m.type, m.data));
  };
  const writer = toHost.writable.getWriter();
  const drained = toGuest.readable.pipeTo(new WritableStream());
  await send({ kind: "clipboard_request", selection: 0, type: ClipboardType.NONE });
  await send({ kind: "clipboard_request", selection: 0, type: 40 });
  await send({ kind: "clipboard_request", selection: 0, type: TEXT });
  const reader = checkpoints.readable.getReader();
  let latest = decodeCheckpoint((await reader.read()).value!);
  while (latest.selections[0].guestRequests.length === 0) {
    latest = decodeCheckpoint((await reader.read()).value!);
  }
  // The paste of a type the host offers is carried on; the others get releases after the probe.
  assert.deepEqual(latest.selections[0].guestRequests, [TEXT]);
  reader.releaseLock();
  assert.throws(() => relay.session.grab(0, [32]), RangeError);
  await writer.close();
  await relay.done;
  await drained;
});
