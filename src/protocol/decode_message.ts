// This module is browser compatible.

import type { MessagePayload, PayloadOptions } from "./message_payload.ts";
import { decodePayload } from "./_decode_payload.ts";

/**
 * Decodes a message's payload into a typed object.
 *
 * Size rules are the Linux agent's: an exact size for MOUSE_STATE (13),
 * REPLY, DISPLAY_CONFIG, FILE_XFER_STATUS (8, or the detailed sizes),
 * CLIPBOARD_REQUEST, CLIPBOARD_RELEASE, MAX_CLIPBOARD and
 * CLIENT_DISCONNECTED; a minimum for the others (trailing bytes after the
 * last whole element are ignored). The selection prefix and the grab serial
 * count when `options` say they are negotiated. A payload that breaks a rule
 * is returned as `{ kind: "invalid", code, reason }`, never thrown: the real
 * agents ignore such messages, and the stream stays in sync. A type this
 * library does not know comes back as `{ kind: "unknown" }` with its bytes.
 *
 * A message an assembler skipped because it was over the size bound of its
 * type (`skipped` set, see `maxPayloadSize`) is invalid: `TOO_MANY_TYPES`
 * for a grab, `TOO_MANY_CAPS` for capabilities, `PAYLOAD_SIZE` otherwise.
 *
 * Byte fields (`data`) are views into `message.data`.
 *
 * @param message A message's type and payload, e.g. an `AgentMessage`.
 * @param options Negotiated layout and limits.
 * @returns The decoded payload.
 *
 * @example Decoding a guest's grab
 * ```ts
 * import { decodeMessage } from "@vdagent/streams";
 * import assert from "node:assert/strict";
 *
 * // selection 0 + 3 reserved, serial 2, types [IMAGE_PNG]
 * const data = new Uint8Array([0, 0, 0, 0, 2, 0, 0, 0, 2, 0, 0, 0]);
 * assert.deepEqual(
 *   decodeMessage({ type: 7, data }, { selection: true, grabSerial: true }),
 *   { kind: "clipboard_grab", selection: 0, serial: 2, types: [2] },
 * );
 * assert.equal(decodeMessage({ type: 8, data: new Uint8Array(3) }).kind, "invalid");
 * ```
 */
export function decodeMessage(
  message: { type: number; data: Uint8Array; skipped?: number | undefined },
  options: PayloadOptions = {},
): MessagePayload {
  const { data } = message;
  return decodePayload(message.type, data, 0, data.length, message.skipped, options);
}
