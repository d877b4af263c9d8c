// This module is browser compatible.

import { ClipboardType } from "../protocol/clipboard_type.ts";
import { Selection } from "../protocol/selection.ts";
import type { CheckpointLimits } from "./checkpoint_limits.ts";
import type { CheckpointState } from "./checkpoint_state.ts";
import { decodeCheckpoint } from "./decode_checkpoint.ts";

const typeNames = new Map<number, string>(Object.entries(ClipboardType).map(([k, v]) => [v, k]));
const selectionNames = Object.keys(Selection);

/**
 * A JSON view of a checkpoint, for humans and logs: capability words in hex,
 * selections and clipboard types by name, the bytes in flight as counts.
 *
 * @param checkpoint Encoded bytes (verified first) or a decoded state.
 * @param limits Limits for decoding.
 * @returns A plain object, ready for `JSON.stringify`.
 *
 * @example Capability words in hex, clipboard types by name
 * ```ts
 * import { describeCheckpoint, encodeCheckpoint } from "@vdagent/streams";
 * import assert from "node:assert/strict";
 *
 * const empty = { lastSerial: 0, guestRequests: [] };
 * const bytes = encodeCheckpoint({
 *   mode: "lossless",
 *   hostCaps: [0x00020061],
 *   guestCaps: [0x00038de7],
 *   selections: [{ ...empty, lastSerial: 3, guestOffer: { serial: 3, types: [1, 2] } }, empty, empty],
 * });
 * const view = describeCheckpoint(bytes);
 * assert.equal(view.format, "2.0");
 * assert.deepEqual(view.guestCaps, ["0x00038de7"]);
 * assert.deepEqual(view.selections[0]?.guestOffer, { serial: 3, types: ["UTF8_TEXT", "IMAGE_PNG"] });
 * ```
 */
export function describeCheckpoint(
  checkpoint: Uint8Array | CheckpointState,
  limits?: CheckpointLimits,
): CheckpointDescription {
  const state = checkpoint instanceof Uint8Array
    ? decodeCheckpoint(checkpoint, limits)
    : checkpoint;
  const hex = (words: readonly number[]) =>
    words.map((w) => `0x${w.toString(16).padStart(8, "0")}`);
  const names = (types: readonly number[]) => types.map((t) => typeNames.get(t) ?? `TYPE_${t}`);
  return {
    ...(checkpoint instanceof Uint8Array
      ? { format: `${checkpoint[4]}.${checkpoint[5]}`, size: checkpoint.length }
      : {}),
    mode: state.mode,
    hostCaps: hex(state.hostCaps),
    ...(state.guestCaps === undefined ? {} : { guestCaps: hex(state.guestCaps) }),
    selections: state.selections.map((s, i) => ({
      selection: selectionNames[i]!,
      lastSerial: s.lastSerial,
      ...(s.hostOffer === undefined ? {} : { hostOffer: names(s.hostOffer) }),
      ...(s.hostOfferSent === false ? { hostOfferSent: false } : {}),
      guestRequests: names(s.guestRequests),
      ...(s.guestOffer === undefined ? {} : {
        guestOffer: {
          ...(s.guestOffer.serial === undefined ? {} : { serial: s.guestOffer.serial }),
          types: names(s.guestOffer.types),
        },
      }),
      ...(s.hostRequests === undefined ? {} : { hostRequests: names(s.hostRequests) }),
    })),
    ...(state.mouse === undefined ? {} : { mouse: { ...state.mouse } }),
    ...(state.guestMaxClipboard === undefined
      ? {}
      : { guestMaxClipboard: state.guestMaxClipboard }),
    ...(state.awaiting === undefined ? {} : { awaiting: state.awaiting }),
    ...(state.wire === undefined ? {} : {
      wire: {
        inboundBytes: state.wire.inbound.length,
        outboundBytes: state.wire.outbound.length,
        ...(state.wire.written === undefined ? {} : { outboundWritten: state.wire.written }),
      },
    }),
  };
}

/** What {@linkcode describeCheckpoint} returns. */
export interface CheckpointDescription {
  /** Format version, when described from bytes. */
  format?: string;
  /** Encoded size, when described from bytes. */
  size?: number;
  /** `"lossless"` or `"minimal"`. */
  mode: string;
  /** Host capability words in hex. */
  hostCaps: string[];
  /** Guest capability words in hex, if it announced them. */
  guestCaps?: string[];
  /** CLIPBOARD, PRIMARY, SECONDARY. */
  selections: {
    selection: string;
    lastSerial: number;
    hostOffer?: string[];
    hostOfferSent?: boolean;
    guestRequests: string[];
    guestOffer?: { serial?: number; types: string[] };
    hostRequests?: string[];
  }[];
  /** The last mouse state. */
  mouse?: { x: number; y: number; buttons: number; display: number; sent: boolean };
  /** The guest's MAX_CLIPBOARD. */
  guestMaxClipboard?: number;
  /** What the session was waiting for the guest to answer. */
  awaiting?: string;
  /** Bytes in flight. */
  wire?: { inboundBytes: number; outboundBytes: number; outboundWritten?: number };
}
