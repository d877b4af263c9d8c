// This module is browser compatible.

import type { ClipboardOffer } from "../session/clipboard_offer.ts";
import type { MouseSnapshot, SelectionState } from "../session/host_session_state.ts";
import { checkLimit, DEFAULT_MAX_MESSAGE_SIZE } from "../wire/_limits.ts";
import { WireFormat } from "../wire/wire_format.ts";
import { checkInbound, checkOutbound } from "./_wire_check.ts";
import { getU32 } from "../wire/_bytes.ts";
import {
  ByteReader,
  CRC_SIZE,
  DEFAULT_MAX_CHECKPOINT_SIZE,
  DEFAULT_MAX_SECTIONS,
  FLAG_DRAINED,
  FLAG_LOSSLESS,
  FLAG_MAC,
  FLAG_WIRE,
  HEADER_SIZE,
  KNOWN_FLAGS,
  MAC_SIZE,
  MAGIC,
  MAJOR,
  malformed,
  MAX_MASK_TYPE,
  OPTIONAL,
  Section,
} from "./_format.ts";
import { checkSelections } from "./_check_selections.ts";
import { crc32 } from "./_crc32.ts";
import { CheckpointError } from "./checkpoint_error.ts";
import type { CheckpointLimits } from "./checkpoint_limits.ts";
import type { CheckpointState } from "./checkpoint_state.ts";

/**
 * Decodes and verifies a checkpoint. A corrupt, truncated or hostile one
 * (wrong magic, another major version, a bad CRC-32, huge lengths, a
 * selection ≥ 3, too many capability words, inbound bytes that do not parse)
 * throws a {@linkcode CheckpointError} with a stable
 * `code`; limits are checked before anything is allocated. Optional sections
 * this version does not know are skipped; unknown required ones are refused.
 *
 * @param bytes The checkpoint.
 * @param limits Bounds on sizes and counts.
 * @returns The state it holds; byte fields are copies.
 *
 * @example Refusing a checkpoint from a newer major version
 * ```ts
 * import { CheckpointError, decodeCheckpoint, encodeCheckpoint } from "@vdagent/streams";
 * import assert from "node:assert/strict";
 *
 * const bytes = encodeCheckpoint({
 *   mode: "minimal",
 *   hostCaps: [1],
 *   selections: [{ lastSerial: 0, guestRequests: [] }, { lastSerial: 0, guestRequests: [] }, {
 *     lastSerial: 0,
 *     guestRequests: [],
 *   }],
 * });
 * bytes[4] = 3; // major version
 * assert.throws(() => decodeCheckpoint(bytes), (e) => e instanceof CheckpointError && e.code === "UNSUPPORTED_VERSION");
 * ```
 */
export function decodeCheckpoint(
  bytes: Uint8Array,
  limits: CheckpointLimits = {},
): CheckpointState {
  if (!(bytes instanceof Uint8Array)) {
    throw new TypeError("Cannot decode checkpoint: it must be a Uint8Array");
  }
  const maxSize = checkLimit("decoder", "maxSize", limits.maxSize, DEFAULT_MAX_CHECKPOINT_SIZE);
  const maxSections = checkLimit(
    "decoder",
    "maxSections",
    limits.maxSections,
    DEFAULT_MAX_SECTIONS,
  );
  const maxCapsWords = checkLimit("decoder", "maxCapsWords", limits.maxCapsWords, 16);
  const maxGrabTypes = checkLimit("decoder", "maxGrabTypes", limits.maxGrabTypes, 64);
  const maxRequests = checkLimit("decoder", "maxRequests", limits.maxRequests, 16);
  const maxMessageSize = checkLimit(
    "decoder",
    "maxMessageSize",
    limits.maxMessageSize,
    DEFAULT_MAX_MESSAGE_SIZE,
    0xffff_ffff - WireFormat.MESSAGE_HEADER_SIZE,
  );
  const wireLimits = {
    maxMessageSize,
    maxBuffered: checkLimit("decoder", "maxBuffered", limits.maxBuffered, maxMessageSize),
    maxGrabTypes,
    maxCapsWords,
  };
  const maxOutbound = checkLimit(
    "decoder",
    "maxOutbound",
    limits.maxOutbound,
    2 * maxMessageSize + (2 << 20),
    Number.MAX_SAFE_INTEGER,
  );

  const magicLength = Math.min(bytes.length, MAGIC.length);
  for (let i = 0; i < magicLength; i++) {
    if (bytes[i] !== MAGIC[i]) {
      throw new CheckpointError(
        "BAD_MAGIC",
        'Cannot decode checkpoint: it does not start with "VDCK"',
      );
    }
  }
  if (bytes.length >= 5 && bytes[4] !== MAJOR) {
    throw new CheckpointError(
      "UNSUPPORTED_VERSION",
      `Cannot decode checkpoint: format version ${bytes[4]}.${
        bytes[5] ?? 0
      } is not ${MAJOR}.x, which this library reads`,
    );
  }
  if (bytes.length < HEADER_SIZE + CRC_SIZE) {
    throw new CheckpointError(
      "TRUNCATED",
      `Cannot decode checkpoint: ${bytes.length} bytes cannot hold one`,
    );
  }
  const total = getU32(bytes, 7);
  if (total > maxSize || bytes.length > maxSize) {
    throw new CheckpointError(
      "TOO_LARGE",
      `Cannot decode checkpoint: ${
        Math.max(total, bytes.length)
      } bytes exceed the maximum of ${maxSize}`,
    );
  }
  if (bytes.length < total) {
    throw new CheckpointError(
      "TRUNCATED",
      `Cannot decode checkpoint: ${bytes.length} of its ${total} bytes`,
    );
  }
  if (bytes.length > total || total < HEADER_SIZE + CRC_SIZE) {
    throw malformed(`its length field says ${total} bytes, but it has ${bytes.length}`);
  }
  const expected = getU32(bytes, total - CRC_SIZE);
  if (crc32(bytes.subarray(0, total - CRC_SIZE)) !== expected) {
    throw new CheckpointError(
      "BAD_CHECKSUM",
      "Cannot decode checkpoint: its CRC-32 does not match",
    );
  }
  const flags = bytes[6]!;
  if ((flags & ~KNOWN_FLAGS) !== 0) throw malformed(`unknown flags 0x${flags.toString(16)}`);

  // Sections: tag, varint length, payload; then the MAC, if sealed.
  const sealed = (flags & FLAG_MAC) !== 0;
  const end = total - CRC_SIZE - (sealed ? MAC_SIZE : 0);
  if (end < HEADER_SIZE) throw malformed("it is too short for its MAC");
  const sections = new Map<number, Uint8Array>();
  const outer = new ByteReader(bytes.subarray(HEADER_SIZE, end), "the section list");
  for (let count = 1; !outer.done; count++) {
    const tag = outer.u8();
    const payload = outer.bytes(outer.varint());
    if (count > maxSections) {
      throw new CheckpointError(
        "TOO_LARGE",
        `Cannot decode checkpoint: more than ${maxSections} sections`,
      );
    }
    if (!KNOWN_SECTIONS.has(tag)) {
      if (tag & OPTIONAL) continue;
      throw new CheckpointError(
        "UNKNOWN_SECTION",
        `Cannot decode checkpoint: required section 0x${
          tag.toString(16)
        } is unknown to this version`,
      );
    }
    if (sections.has(tag)) {
      throw new CheckpointError(
        "DUPLICATE_SECTION",
        `Cannot decode checkpoint: section 0x${tag.toString(16)} twice`,
      );
    }
    sections.set(tag, payload);
  }
  const wire = (flags & FLAG_WIRE) !== 0;
  const lossless = (flags & FLAG_LOSSLESS) !== 0;
  const session = sections.get(Section.SESSION);
  if (session === undefined) {
    throw new CheckpointError(
      "MISSING_SECTION",
      "Cannot decode checkpoint: it has no SESSION section",
    );
  }
  for (const tag of sections.keys()) {
    const needs = tag === Section.INBOUND || tag === Section.OUTBOUND
      ? wire
      : tag === Section.OWED || lossless;
    if (tag !== Section.SESSION && !needs) {
      throw malformed(
        `section ${SECTION_NAMES.get(tag)} does not belong in this kind of checkpoint`,
      );
    }
  }
  if (wire && !lossless) throw malformed("a checkpoint with bytes in flight must be lossless");

  // SESSION: caps, then per selection: last serial, host offer mask, guest request mask.
  const r = new ByteReader(session, "section SESSION");
  const hostCaps = readWords(r, "host", maxCapsWords);
  if (hostCaps.length === 0) throw malformed("section SESSION has no host capabilities");
  const guestCaps = readWords(r, "guest", maxCapsWords);
  const selections: SelectionState[] = [];
  for (let s = 0; s < 3; s++) {
    const lastSerial = r.varint();
    const hostOffer = unmask(r.varint());
    const guestRequests = unmask(r.varint());
    selections.push(
      hostOffer.length > 0
        ? { lastSerial, hostOffer, guestRequests }
        : { lastSerial, guestRequests },
    );
  }
  r.end();

  const offers = sections.get(Section.GUEST_OFFERS);
  if (offers !== undefined) {
    const o = new ByteReader(offers, "section GUEST_OFFERS");
    while (!o.done) {
      const selection = readSelection(o);
      if (selections[selection]!.guestOffer !== undefined) {
        throw malformed(`two guest offers for selection ${selection}`);
      }
      const flag = o.u8();
      if (flag > 1) throw malformed(`guest offer flags 0x${flag.toString(16)}`);
      const serial = flag ? o.u32() : undefined;
      const count = o.varint();
      if (count === 0) throw malformed("a guest offer without types");
      if (count > maxGrabTypes) {
        throw new CheckpointError(
          "TOO_LARGE",
          `Cannot decode checkpoint: an offer of ${count} types exceeds ${maxGrabTypes}`,
        );
      }
      const types: number[] = [];
      for (let i = 0; i < count; i++) types.push(o.varint());
      const offer: ClipboardOffer = serial === undefined ? { types } : { serial, types };
      selections[selection] = { ...selections[selection]!, guestOffer: offer };
    }
  }
  if (lossless) {
    const requests: number[][] = [[], [], []];
    const table = sections.get(Section.HOST_REQUESTS);
    if (table !== undefined) {
      const q = new ByteReader(table, "section HOST_REQUESTS");
      while (!q.done) {
        const selection = readSelection(q);
        if (requests[selection]!.length === maxRequests) {
          throw new CheckpointError(
            "TOO_LARGE",
            `Cannot decode checkpoint: over ${maxRequests} requests on a selection`,
          );
        }
        requests[selection]!.push(q.varint());
      }
    }
    requests.forEach((hostRequests, s) => selections[s] = { ...selections[s]!, hostRequests });
  }
  checkSelections(hostCaps, guestCaps, selections);
  let mouse: MouseSnapshot | undefined;
  const mouseBytes = sections.get(Section.MOUSE);
  if (mouseBytes !== undefined) {
    const m = new ByteReader(mouseBytes, "section MOUSE");
    mouse = { x: m.u32(), y: m.u32(), buttons: m.u32(), display: m.u8(), sent: false };
    const sent = m.u8();
    if (sent > 1) throw malformed("section MOUSE has a bad sent flag");
    mouse.sent = sent === 1;
    m.end();
  }
  let awaiting: "caps" | "probe" | undefined;
  const owedBytes = sections.get(Section.OWED);
  if (owedBytes !== undefined) {
    const o = new ByteReader(owedBytes, "section OWED");
    const mask = o.u8();
    const asked = o.u8();
    o.end();
    for (let s = 0; s < 8; s++) {
      if ((mask & (1 << s)) === 0) continue;
      if (s > 2 || selections[s]!.hostOffer === undefined) {
        throw malformed(`section OWED names selection ${s}, which the host does not own`);
      }
      selections[s] = { ...selections[s]!, hostOfferSent: false };
    }
    if (asked > 2) throw malformed(`section OWED waits for ${asked}`);
    awaiting = asked === 1 ? "caps" : asked === 2 ? "probe" : undefined;
  }
  let guestMaxClipboard: number | undefined;
  const maxBytes = sections.get(Section.GUEST_MAX);
  if (maxBytes !== undefined) {
    const m = new ByteReader(maxBytes, "section GUEST_MAX");
    guestMaxClipboard = m.u32();
    m.end();
    if (guestMaxClipboard > 0x7fff_ffff) throw malformed("section GUEST_MAX is negative");
  }
  const state = {
    hostCaps,
    ...(guestCaps.length ? { guestCaps } : {}),
    selections: selections as [SelectionState, SelectionState, SelectionState],
    ...(mouse === undefined ? {} : { mouse }),
  };
  let inbound: Uint8Array | undefined;
  let outbound: Uint8Array | undefined;
  let written = 0;
  if (wire) {
    const carried = sections.get(Section.INBOUND) ?? new Uint8Array(0);
    if (carried.length > wireLimits.maxBuffered + 2 * WireFormat.CHUNK_HEADER_SIZE + 16) {
      throw new CheckpointError(
        "TOO_LARGE",
        `Cannot decode checkpoint: ${carried.length} inbound bytes exceed what the pipeline buffers`,
      );
    }
    checkInbound(carried, wireLimits);
    inbound = carried.slice();
    const o = new ByteReader(sections.get(Section.OUTBOUND) ?? new Uint8Array([0]), "OUTBOUND");
    written = o.varint();
    const framed = o.bytes((sections.get(Section.OUTBOUND)?.length ?? 1) - varintSize(written));
    if (framed.length > maxOutbound) {
      throw new CheckpointError(
        "TOO_LARGE",
        `Cannot decode checkpoint: ${framed.length} outbound bytes exceed the maximum of ${maxOutbound}`,
      );
    }
    checkOutbound(framed, written, state, wireLimits);
    outbound = framed.slice();
  }

  return {
    mode: lossless ? "lossless" : "minimal",
    ...state,
    ...(guestMaxClipboard === undefined ? {} : { guestMaxClipboard }),
    ...(awaiting === undefined ? {} : { awaiting }),
    ...(inbound === undefined || outbound === undefined ? {} : {
      wire: { inbound, outbound, ...(written === 0 ? {} : { written }) },
    }),
    ...((flags & FLAG_DRAINED) !== 0 ? { drained: true } : {}),
  };
}

/** Section tags this version knows, and their names. */
const SECTION_NAMES = new Map<number, string>(
  Object.entries(Section).map(([name, tag]) => [tag, name]),
);
const KNOWN_SECTIONS = new Set<number>(SECTION_NAMES.keys());

function readWords(r: ByteReader, side: string, max: number): number[] {
  const count = r.varint();
  if (count > max) {
    throw new CheckpointError(
      "TOO_LARGE",
      `Cannot decode checkpoint: ${count} ${side} capability words exceed ${max}`,
    );
  }
  const words: number[] = [];
  for (let i = 0; i < count; i++) words.push(r.u32());
  return words;
}

function readSelection(r: ByteReader): number {
  const selection = r.u8();
  if (selection > 2) throw malformed(`selection ${selection} is not 0, 1 or 2`);
  return selection;
}

function unmask(mask: number): number[] {
  const types: number[] = [];
  if (mask & 1) throw malformed("type 0 (NONE) in a type mask");
  for (let type = 1; type <= MAX_MASK_TYPE; type++) if (mask & (1 << type)) types.push(type);
  return types;
}

/** Bytes of `v` as a LEB128 varint. */
function varintSize(v: number): number {
  let n = 1;
  for (let x = v >>> 7; x > 0; x >>>= 7) n++;
  return n;
}
