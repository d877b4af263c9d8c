// This module is browser compatible.

import { Capability } from "../protocol/capability.ts";
import { ClipboardType } from "../protocol/clipboard_type.ts";
import { decodePayload } from "../protocol/_decode_payload.ts";
import { hasCapability } from "../protocol/has_capability.ts";
import type { MessagePayload, PayloadOptions } from "../protocol/message_payload.ts";
import type { HostSessionState } from "../session/host_session_state.ts";
import { getU32 } from "../wire/_bytes.ts";
import { ChunkReader } from "../wire/_chunk_reader.ts";
import { MessageReader } from "../wire/_message_reader.ts";
import { WireFormat } from "../wire/wire_format.ts";
import { CheckpointError } from "./checkpoint_error.ts";

/** The limits the bytes in flight are checked against: the restoring pipeline's. */
export interface WireLimits {
  maxMessageSize: number;
  maxBuffered: number;
  maxGrabTypes: number;
  maxCapsWords: number;
}

const invalid = (detail: string, cause?: unknown) =>
  new CheckpointError(
    "MALFORMED",
    `Cannot decode checkpoint: ${detail}`,
    cause === undefined ? undefined : { cause },
  );

/**
 * The guest's bytes in flight must parse as chunks and messages under the
 * restoring pipeline's limits; nothing is kept of them.
 */
export function checkInbound(inbound: Uint8Array, limits: WireLimits): void {
  const messages = new MessageReader(() => {}, {
    maxMessageSize: limits.maxMessageSize,
    maxBuffered: limits.maxBuffered,
    copy: false,
    checkOnly: true, // a hostile header may declare 4 GiB: allocate nothing
  });
  const chunks = new ChunkReader(messages, {
    maxChunkSize: limits.maxMessageSize + WireFormat.MESSAGE_HEADER_SIZE,
  });
  try {
    chunks.push(inbound);
  } catch (error) {
    throw invalid("its inbound bytes do not parse", error);
  }
}

/**
 * The host's bytes in flight (framed messages from a message start; the
 * first `written` bytes already reached the guest) must be what this
 * session could have sent: chunks of at most 2048 bytes on port 1 carrying
 * the messages of the host's role, as its state allows. A forged checkpoint
 * cannot make the next relay write a FILE_XFER, a MONITORS_CONFIG or any
 * message the session never sends; refused as `FORBIDDEN_MESSAGE`.
 */
export function checkOutbound(
  outbound: Uint8Array,
  written: number,
  state: HostSessionState,
  limits: WireLimits,
): void {
  if (outbound.length === 0 ? written !== 0 : written >= firstMessageEnd(outbound)) {
    throw invalid(`${written} bytes of its outbound bytes are said to be written`);
  }
  const layout = layoutOf(state, limits);
  let lastMouse: MessagePayload | undefined;
  const forbid = (detail: string) => {
    throw new CheckpointError("FORBIDDEN_MESSAGE", `Cannot decode checkpoint: ${detail}`);
  };
  const messages = new MessageReader((port, type, opaque, bytes, start, end) => {
    if (port !== WireFormat.CLIENT_PORT || opaque !== 0n) {
      forbid(`its outbound bytes hold a message on port ${port} with opaque ${opaque}`);
    }
    const payload = decodePayload(type, bytes, start, end, undefined, layout);
    const why = refuse(payload, state, layout);
    if (why !== undefined) forbid(`its outbound bytes hold ${why}, which this session never sends`);
    if (payload.kind === "mouse_state") lastMouse = payload;
  }, { maxMessageSize: limits.maxMessageSize, maxBuffered: limits.maxBuffered, copy: false });
  const chunks = new ChunkReader(messages, { maxChunkSize: WireFormat.MAX_CHUNK_SIZE });
  try {
    chunks.push(outbound);
    chunks.finish();
    messages.finish(chunks.offset);
  } catch (error) {
    if (error instanceof CheckpointError) throw error;
    throw invalid("its outbound bytes do not parse as the host's messages", error);
  }
  if (lastMouse?.kind === "mouse_state") {
    const m = state.mouse;
    if (
      m === undefined || m.x !== lastMouse.x || m.y !== lastMouse.y ||
      m.buttons !== lastMouse.buttons || m.display !== lastMouse.display
    ) {
      forbid("its last outbound MOUSE_STATE is not the session's mouse state");
    }
  }
}

/** Why the host role would not send `payload` in `state`, or `undefined` if it would. */
function refuse(
  payload: MessagePayload,
  state: HostSessionState,
  layout: PayloadOptions,
): string | undefined {
  const caps = state.hostCaps;
  switch (payload.kind) {
    case "announce_capabilities":
      return payload.caps.length === caps.length && payload.caps.every((w, i) => w === caps[i])
        ? undefined
        : "an announcement of other capabilities";
    case "clipboard_grab":
    case "clipboard_request":
    case "clipboard_release":
    case "clipboard": {
      if (!hasCapability(caps, Capability.CLIPBOARD_BY_DEMAND)) return `a ${payload.kind}`;
      if (payload.selection > 2 || (payload.selection > 0 && !layout.selection)) {
        return `a ${payload.kind} for selection ${payload.selection}`;
      }
      if (payload.kind !== "clipboard") return undefined;
      const offered = state.selections[payload.selection]?.hostOffer ?? [];
      return payload.type !== ClipboardType.NONE && offered.includes(payload.type)
        ? undefined
        : `clipboard data of type ${payload.type}, which the host does not offer`;
    }
    case "mouse_state":
      return hasCapability(caps, Capability.MOUSE_STATE) ? undefined : "a MOUSE_STATE";
    case "max_clipboard":
      return hasCapability(caps, Capability.MAX_CLIPBOARD) ? undefined : "a MAX_CLIPBOARD";
    default:
      return payload.kind === "unknown" || payload.kind === "invalid"
        ? `a message of type ${payload.type} that does not decode`
        : `a ${payload.kind}`;
  }
}

/** The layout the session encoded its messages with: what both sides announced. */
function layoutOf(state: HostSessionState, limits: WireLimits): PayloadOptions {
  const both = (bit: number) =>
    state.guestCaps !== undefined && hasCapability(state.guestCaps, bit) &&
    hasCapability(state.hostCaps, bit);
  return {
    selection: both(Capability.CLIPBOARD_SELECTION),
    grabSerial: both(Capability.CLIPBOARD_GRAB_SERIAL),
    maxGrabTypes: limits.maxGrabTypes,
    maxCapsWords: limits.maxCapsWords,
  };
}

/** Where the first message of framed bytes that start with it ends (past them if cut short). */
function firstMessageEnd(bytes: Uint8Array): number {
  const H = WireFormat.CHUNK_HEADER_SIZE;
  if (bytes.length < H + WireFormat.MESSAGE_HEADER_SIZE) return Infinity;
  const total = WireFormat.MESSAGE_HEADER_SIZE + getU32(bytes, H + 16);
  let at = 0;
  for (let carried = 0; carried < total && at + H <= bytes.length;) {
    const size = getU32(bytes, at + 4);
    if (size === 0) return Infinity; // does not parse: the reader says so
    carried += size;
    at += H + size;
  }
  return at;
}
