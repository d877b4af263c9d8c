// This module is browser compatible.

import type { SelectionState } from "../session/host_session_state.ts";
import {
  ByteWriter,
  CRC_SIZE,
  FLAG_LOSSLESS,
  FLAG_WIRE,
  HEADER_SIZE,
  MAGIC,
  MAJOR,
  MAX_MASK_TYPE,
  MINOR,
  Section,
} from "./_format.ts";
import { crc32 } from "./_crc32.ts";
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
  const body = new ByteWriter();

  const session = new ByteWriter();
  words(session, state.hostCaps, "hostCaps", 1);
  words(session, state.guestCaps ?? [], "guestCaps", 0);
  const selections = state.selections;
  if (!Array.isArray(selections) || selections.length !== 3) {
    throw new TypeError("Cannot encode checkpoint: selections must hold 3 entries");
  }
  for (const s of selections) {
    session.varint(u32(s.lastSerial, "lastSerial"));
    if (s.hostOffer !== undefined && s.hostOffer.length === 0) {
      throw new RangeError("Cannot encode checkpoint: a host offer needs at least one type");
    }
    session.varint(mask(s.hostOffer ?? [], "hostOffer"));
    session.varint(mask(s.guestRequests, "guestRequests"));
  }
  section(body, Section.SESSION, session.finish());

  if (wire !== undefined) {
    section(body, Section.INBOUND, bytes(wire.inbound, "inbound"));
    section(body, Section.OUTBOUND, bytes(wire.outbound, "outbound"));
  }
  if (lossless) {
    const offers = new ByteWriter();
    const requests = new ByteWriter();
    selections.forEach((s: SelectionState, selection) => {
      if (s.guestOffer !== undefined) {
        const { serial, types } = s.guestOffer;
        if (types.length === 0) {
          throw new RangeError("Cannot encode checkpoint: a guest offer needs a type");
        }
        offers.u8(selection);
        offers.u8(serial === undefined ? 0 : 1);
        if (serial !== undefined) offers.u32(u32(serial, "serial"));
        offers.varint(types.length);
        for (const type of types) offers.varint(u32(type, "type"));
      }
      for (const type of s.hostRequests ?? []) {
        requests.u8(selection);
        requests.varint(u32(type, "type"));
      }
    });
    if (offers.length > 0) section(body, Section.GUEST_OFFERS, offers.finish());
    if (requests.length > 0) section(body, Section.HOST_REQUESTS, requests.finish());
    if (state.mouse !== undefined) {
      const { x, y, buttons, display, sent } = state.mouse;
      const mouse = new ByteWriter();
      mouse.u32(u32(x, "x"));
      mouse.u32(u32(y, "y"));
      mouse.u32(u32(buttons, "buttons"));
      mouse.u8(int(display, "display", 0, 0xff));
      mouse.u8(sent ? 1 : 0);
      section(body, Section.MOUSE, mouse.finish());
    }
    if (state.guestMaxClipboard !== undefined) {
      const max = new ByteWriter();
      max.u32(int(state.guestMaxClipboard, "guestMaxClipboard", 0, 0x7fff_ffff));
      section(body, Section.GUEST_MAX, max.finish());
    }
  }

  const sections = body.finish();
  const total = HEADER_SIZE + sections.length + CRC_SIZE;
  if (total > 0xffff_ffff) {
    throw new RangeError(`Cannot encode checkpoint: ${total} bytes exceed 4 GiB`);
  }
  const out = new Uint8Array(total);
  const view = new DataView(out.buffer);
  out.set(MAGIC, 0);
  out[4] = MAJOR;
  out[5] = MINOR;
  out[6] = (wire !== undefined ? FLAG_WIRE : 0) | (lossless ? FLAG_LOSSLESS : 0);
  view.setUint32(7, total, true);
  out.set(sections, HEADER_SIZE);
  view.setUint32(total - CRC_SIZE, crc32(out.subarray(0, total - CRC_SIZE)), true);
  return out;
}

function section(body: ByteWriter, tag: number, payload: Uint8Array): void {
  body.u8(tag);
  body.varint(payload.length);
  body.bytes(payload);
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
