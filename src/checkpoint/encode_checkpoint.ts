// This module is browser compatible.

import type { SelectionState } from "../session/host_session_state.ts";
import {
  ByteWriter,
  CRC_SIZE,
  FLAG_DRAINED,
  FLAG_LOSSLESS,
  FLAG_WIRE,
  MAGIC,
  MAJOR,
  MAX_MASK_TYPE,
  MINOR,
  Section,
} from "./_format.ts";

/** What OWED's second byte says the session waits for. */
const AWAITING = [undefined, "caps", "probe"] as const;
import { crc32 } from "./_crc32.ts";
import { putU32 } from "../wire/_bytes.ts";
import type { CheckpointState } from "./checkpoint_state.ts";

/**
 * Encodes a checkpoint: binary, little-endian, with a magic number, a format
 * version, typed sections in type-length-value form and a CRC-32 over the
 * whole (the format is described in `docs/checkpoint-format.md`).
 *
 * A `"minimal"` state is encoded with its seed fields only; a `"lossless"` one
 * adds the guest's offers, the host's requests, the mouse, the guest's
 * MAX_CLIPBOARD and the bytes in flight, if present.
 *
 * @param state What to encode.
 * @returns The checkpoint.
 *
 * @example A minimal checkpoint fits in 64 bytes
 * ```ts
 * import { decodeCheckpoint, encodeCheckpoint } from "@vdagent/streams";
 * import assert from "node:assert/strict";
 *
 * const bytes = encodeCheckpoint({
 *   mode: "minimal",
 *   hostCaps: [0x00020061],
 *   guestCaps: [0x00038de7],
 *   selections: [
 *     { lastSerial: 7, hostOffer: [1], guestRequests: [1] },
 *     { lastSerial: 2, guestRequests: [] },
 *     { lastSerial: 0, guestRequests: [] },
 *   ],
 * });
 * assert.ok(bytes.length <= 64);
 * assert.equal(decodeCheckpoint(bytes).selections[0].lastSerial, 7);
 * ```
 */
export function encodeCheckpoint(state: CheckpointState): Uint8Array {
  const lossless = checkMode(state.mode) === "lossless";
  const wire = lossless ? state.wire : undefined;
  const inbound = wire === undefined ? undefined : bytes(wire.inbound, "inbound");
  const outbound = wire === undefined ? undefined : bytes(wire.outbound, "outbound");
  const w = new ByteWriter(128 + (inbound?.length ?? 0) + (outbound?.length ?? 0));
  for (const byte of MAGIC) w.u8(byte);
  w.u8(MAJOR);
  w.u8(MINOR);
  w.u8(
    (wire !== undefined ? FLAG_WIRE : 0) | (lossless ? FLAG_LOSSLESS : 0) |
      (state.drained ? FLAG_DRAINED : 0),
  );
  w.u32(0); // the total length, written at the end

  let at = w.open(Section.SESSION);
  words(w, state.hostCaps, "hostCaps", 1);
  words(w, state.guestCaps ?? [], "guestCaps", 0);
  const selections = state.selections;
  if (!Array.isArray(selections) || selections.length !== 3) {
    throw new TypeError("Cannot encode checkpoint: selections must hold 3 entries");
  }
  for (const s of selections) {
    w.varint(u32(s.lastSerial, "lastSerial"));
    if (s.hostOffer !== undefined && s.hostOffer.length === 0) {
      throw new RangeError("Cannot encode checkpoint: a host offer needs at least one type");
    }
    w.varint(mask(s.hostOffer ?? [], "hostOffer"));
    w.varint(mask(s.guestRequests, "guestRequests"));
  }
  w.close(at);

  if (inbound !== undefined && outbound !== undefined) {
    at = w.open(Section.INBOUND);
    w.bytes(inbound);
    w.close(at);
    at = w.open(Section.OUTBOUND);
    w.varint(int(wire!.written ?? 0, "written", 0, Math.max(0, outbound.length - 1)));
    w.bytes(outbound);
    w.close(at);
  }
  let unsent = 0;
  selections.forEach((s: SelectionState, selection) => {
    if (s.hostOffer !== undefined && s.hostOfferSent === false) unsent |= 1 << selection;
  });
  const awaiting = state.awaiting === undefined ? 0 : AWAITING.indexOf(state.awaiting);
  if (awaiting < 0) {
    throw new TypeError(`Cannot encode checkpoint: awaiting must be "caps" or "probe"`);
  }
  if (unsent !== 0 || awaiting !== 0) {
    at = w.open(Section.OWED);
    w.u8(unsent);
    w.u8(awaiting);
    w.close(at);
  }
  if (lossless) {
    at = w.open(Section.GUEST_OFFERS);
    selections.forEach((s: SelectionState, selection) => {
      if (s.guestOffer === undefined) return;
      const { serial, types } = s.guestOffer;
      if (types.length === 0) {
        throw new RangeError("Cannot encode checkpoint: a guest offer needs a type");
      }
      w.u8(selection);
      w.u8(serial === undefined ? 0 : 1);
      if (serial !== undefined) w.u32(u32(serial, "serial"));
      w.varint(types.length);
      for (const type of types) w.varint(u32(type, "type"));
    });
    w.close(at, true);
    at = w.open(Section.HOST_REQUESTS);
    selections.forEach((s: SelectionState, selection) => {
      for (const type of s.hostRequests ?? []) {
        w.u8(selection);
        w.varint(u32(type, "type"));
      }
    });
    w.close(at, true);
    if (state.mouse !== undefined) {
      const { x, y, buttons, display, sent } = state.mouse;
      at = w.open(Section.MOUSE);
      w.u32(u32(x, "x"));
      w.u32(u32(y, "y"));
      w.u32(u32(buttons, "buttons"));
      w.u8(int(display, "display", 0, 0xff));
      w.u8(sent ? 1 : 0);
      w.close(at);
    }
    if (state.guestMaxClipboard !== undefined) {
      at = w.open(Section.GUEST_MAX);
      w.u32(int(state.guestMaxClipboard, "guestMaxClipboard", 0, 0x7fff_ffff));
      w.close(at);
    }
  }

  const total = w.length + CRC_SIZE;
  if (total > 0xffff_ffff) {
    throw new RangeError(`Cannot encode checkpoint: ${total} bytes exceed 4 GiB`);
  }
  w.u32(0); // the CRC, written below
  const out = w.finish();
  putU32(out, 7, total);
  putU32(out, total - CRC_SIZE, crc32(out.subarray(0, total - CRC_SIZE)));
  return out;
}

function checkMode(mode: unknown): "lossless" | "minimal" {
  if (mode !== "lossless" && mode !== "minimal") {
    throw new TypeError(
      `Cannot encode checkpoint: mode must be "lossless" or "minimal", got ${mode}`,
    );
  }
  return mode;
}

function words(w: ByteWriter, caps: readonly number[], name: string, min: number): void {
  if (!Array.isArray(caps) || caps.length < min) {
    throw new RangeError(`Cannot encode checkpoint: ${name} needs at least ${min} word`);
  }
  w.varint(caps.length);
  for (const word of caps) w.u32(u32(word, name));
}

function mask(types: readonly number[], name: string): number {
  let m = 0;
  for (const type of types) m |= 1 << int(type, name, 1, MAX_MASK_TYPE);
  return m >>> 0;
}

function bytes(b: Uint8Array, name: string): Uint8Array {
  if (!(b instanceof Uint8Array)) {
    throw new TypeError(`Cannot encode checkpoint: ${name} must be a Uint8Array`);
  }
  return b;
}

function int(v: number, name: string, min: number, max: number): number {
  if (!Number.isInteger(v) || v < min || v > max) {
    throw new RangeError(
      `Cannot encode checkpoint: ${name} must be an integer from ${min} to ${max}, got ${v}`,
    );
  }
  return v;
}

function u32(v: number, name: string): number {
  return int(v, name, 0, 0xffff_ffff);
}
