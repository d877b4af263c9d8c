// This module is browser compatible.

import { checkLimit } from "../wire/_limits.ts";
import { MessageType } from "./message_type.ts";
import type { PayloadOptions } from "./message_payload.ts";
import { DEFAULT_MAX_CAPS_WORDS, DEFAULT_MAX_GRAB_TYPES } from "./_payload.ts";

/**
 * The largest payload {@linkcode decodeMessage} can accept as valid for a
 * message of `type`, under any clipboard layout and the given limits: a
 * message that declares more is invalid whatever its bytes, so an assembler
 * may skip it without keeping it (`MessageAssembler`'s `maxSizeFor`).
 *
 * The exact-size types give their largest size (MOUSE_STATE 13, REPLY 8,
 * DISPLAY_CONFIG 8, CLIPBOARD_REQUEST 8, CLIPBOARD_RELEASE 4,
 * FILE_XFER_STATUS 16, CLIENT_DISCONNECTED 0, MAX_CLIPBOARD 4);
 * CLIPBOARD_GRAB gives 8 + 4 × `maxGrabTypes` + 3 and ANNOUNCE_CAPABILITIES
 * 4 + 4 × `maxCapsWords` + 3 (trailing bytes short of a word are ignored).
 * Types whose payload has no bound of its own (clipboard data, file data,
 * monitor lists, unknown types) give `Infinity`: only the message size limit
 * bounds them.
 *
 * @param type The message type.
 * @param limits `maxGrabTypes` (default 64) and `maxCapsWords` (default 16).
 * @returns The bound in bytes, or `Infinity`.
 *
 * @example Skipping a grab of 10 million types as it arrives
 * ```ts
 * import { decodeMessage, MessageAssembler, maxPayloadSize, MessageType } from "@vdagent/streams";
 * import assert from "node:assert/strict";
 *
 * assert.equal(maxPayloadSize(MessageType.CLIPBOARD_GRAB), 8 + 4 * 64 + 3);
 * const size = 8 + 4 * 10_000_000;
 * const header = new Uint8Array(20);
 * new DataView(header.buffer).setUint32(0, 1, true); // protocol
 * new DataView(header.buffer).setUint32(4, MessageType.CLIPBOARD_GRAB, true);
 * new DataView(header.buffer).setUint32(16, size, true);
 * const body = new Uint8Array(2048); // the same bytes again and again: nothing is kept
 * const chunks = [{ port: 1, data: header }];
 * for (let left = size; left > 0; left -= body.length) {
 *   chunks.push({ port: 1, data: body.subarray(0, Math.min(left, body.length)) });
 * }
 * const assembler = new MessageAssembler({ maxSizeFor: (type) => maxPayloadSize(type) });
 * const batches = await Array.fromAsync(ReadableStream.from([chunks]).pipeThrough(assembler));
 * const grab = batches[0]![0]!;
 * assert.equal(grab.skipped, size);
 * assert.equal(grab.data.length, 0);
 * assert.equal(decodeMessage(grab, { selection: true, grabSerial: true }).kind, "invalid");
 * ```
 */
export function maxPayloadSize(
  type: number,
  limits: Pick<PayloadOptions, "maxGrabTypes" | "maxCapsWords"> = {},
): number {
  switch (type) {
    case MessageType.MOUSE_STATE:
      return 13;
    case MessageType.REPLY:
    case MessageType.DISPLAY_CONFIG:
    case MessageType.CLIPBOARD_REQUEST: // selection prefix + type
      return 8;
    case MessageType.CLIPBOARD_RELEASE: // selection prefix
    case MessageType.MAX_CLIPBOARD:
      return 4;
    case MessageType.FILE_XFER_STATUS: // id, result, u64 free space
      return 16;
    case MessageType.CLIENT_DISCONNECTED:
      return 0;
    case MessageType.ANNOUNCE_CAPABILITIES:
      return 4 + 4 * checkLimit(
            "bound",
            "maxCapsWords",
            limits.maxCapsWords,
            DEFAULT_MAX_CAPS_WORDS,
          ) +
        3;
    case MessageType.CLIPBOARD_GRAB: // selection prefix + serial + types
      return 8 + 4 * checkLimit(
            "bound",
            "maxGrabTypes",
            limits.maxGrabTypes,
            DEFAULT_MAX_GRAB_TYPES,
          ) +
        3;
    default:
      return Infinity;
  }
}
