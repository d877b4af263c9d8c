// This module is browser compatible.

import { putU16, putU32, putU64 } from "../wire/_bytes.ts";
import type { AgentMessage } from "../wire/agent_message.ts";
import { WireFormat } from "../wire/wire_format.ts";
import { allocate } from "./_slab.ts";
import { FileXferStatus } from "./file_xfer_status.ts";
import { MessageType } from "./message_type.ts";
import { MonitorsConfigFlag } from "./monitors_config_flag.ts";
import type { MessagePayload, PayloadOptions } from "./message_payload.ts";

const encoder = new TextEncoder();

/**
 * Encodes a payload into a message for port 1 with `opaque` 0, laid out as
 * `options` say was negotiated.
 *
 * Arguments that cannot be encoded throw: a `RangeError` for a number out of
 * its field's range, a selection other than CLIPBOARD without the selection
 * prefix, or a grab without types; a `TypeError` for a missing or extra grab
 * serial, or missing physical monitor sizes. `unknown` and `invalid` payloads
 * are written back raw.
 *
 * Payloads of up to 128 bytes are views into a buffer shared with other
 * small payloads (it saves an allocation per message, which costs hundreds of
 * nanoseconds in Deno), so index `data.buffer` with `data.byteOffset`.
 *
 * @param payload What to send.
 * @param options Negotiated layout.
 * @returns The message, ready for a `MessageFramer`.
 *
 * @example Encoding a host grab, as QEMU lays it out with both caps
 * ```ts
 * import { ClipboardType, encodeMessage, Selection } from "@vdagent/streams";
 * import assert from "node:assert/strict";
 *
 * const message = encodeMessage(
 *   { kind: "clipboard_grab", selection: Selection.CLIPBOARD, serial: 2, types: [ClipboardType.UTF8_TEXT] },
 *   { selection: true, grabSerial: true },
 * );
 * assert.equal(message.type, 7);
 * assert.deepEqual(message.data, new Uint8Array([0, 0, 0, 0, 2, 0, 0, 0, 1, 0, 0, 0]));
 * ```
 */
export function encodeMessage(payload: MessagePayload, options: PayloadOptions = {}): AgentMessage {
  const prefix = options.selection ? 4 : 0;
  let type: number;
  let d: Uint8Array;
  switch (payload.kind) {
    case "mouse_state":
      type = MessageType.MOUSE_STATE;
      d = allocate(13);
      putU32(d, 0, u32(payload.x, "x"));
      putU32(d, 4, u32(payload.y, "y"));
      putU32(d, 8, u32(payload.buttons, "buttons"));
      d[12] = int(payload.display, "display", 0, 0xff);
      break;
    case "monitors_config": {
      type = MessageType.MONITORS_CONFIG;
      const flags = u32(payload.flags, "flags");
      const physical = (flags & MonitorsConfigFlag.PHYSICAL_SIZE) !== 0;
      const n = payload.monitors.length;
      d = allocate(8 + (physical ? 24 : 20) * n);
      putU32(d, 0, n);
      putU32(d, 4, flags);
      payload.monitors.forEach((m, i) => {
        const p = 8 + 20 * i;
        putU32(d, p, u32(m.height, "height"));
        putU32(d, p + 4, u32(m.width, "width"));
        putU32(d, p + 8, u32(m.depth, "depth"));
        putU32(d, p + 12, i32(m.x, "x"));
        putU32(d, p + 16, i32(m.y, "y"));
        if (physical) {
          if (m.heightMm === undefined || m.widthMm === undefined) {
            throw new TypeError(
              `Cannot encode MONITORS_CONFIG: monitor ${i} needs heightMm and widthMm with PHYSICAL_SIZE`,
            );
          }
          putU16(d, 8 + 20 * n + 4 * i, int(m.heightMm, "heightMm", 0, 0xffff));
          putU16(d, 8 + 20 * n + 4 * i + 2, int(m.widthMm, "widthMm", 0, 0xffff));
        }
      });
      break;
    }
    case "reply":
      type = MessageType.REPLY;
      d = allocate(8);
      putU32(d, 0, u32(payload.messageType, "messageType"));
      putU32(d, 4, u32(payload.error, "error"));
      break;
    case "clipboard":
      type = MessageType.CLIPBOARD;
      d = allocate(prefix + 4 + payload.data.length);
      putSelection(d, prefix, payload.selection);
      putU32(d, prefix, u32(payload.type, "type"));
      d.set(payload.data, prefix + 4);
      break;
    case "display_config":
      type = MessageType.DISPLAY_CONFIG;
      d = allocate(8);
      putU32(d, 0, u32(payload.flags, "flags"));
      putU32(d, 4, u32(payload.depth, "depth"));
      break;
    case "announce_capabilities": {
      type = MessageType.ANNOUNCE_CAPABILITIES;
      const caps = payload.caps;
      if (caps.length === 0) {
        throw new RangeError("Cannot encode ANNOUNCE_CAPABILITIES: it needs at least one word");
      }
      d = allocate(4 + 4 * caps.length);
      putU32(d, 0, payload.request ? 1 : 0);
      caps.forEach((word, i) => putU32(d, 4 + 4 * i, u32(word, "caps word")));
      break;
    }
    case "clipboard_grab": {
      type = MessageType.CLIPBOARD_GRAB;
      const serial = options.grabSerial ? 4 : 0;
      if ((payload.serial !== undefined) !== (serial !== 0)) {
        throw new TypeError(
          options.grabSerial
            ? "Cannot encode CLIPBOARD_GRAB: GRAB_SERIAL is negotiated, so it needs a serial"
            : "Cannot encode CLIPBOARD_GRAB: it has a serial but GRAB_SERIAL is not negotiated",
        );
      }
      if (payload.types.length === 0) {
        throw new RangeError("Cannot encode CLIPBOARD_GRAB: it needs at least one type");
      }
      d = allocate(prefix + serial + 4 * payload.types.length);
      putSelection(d, prefix, payload.selection);
      if (serial) putU32(d, prefix, u32(payload.serial!, "serial"));
      payload.types.forEach((t, i) => putU32(d, prefix + serial + 4 * i, u32(t, "type")));
      break;
    }
    case "clipboard_request":
      type = MessageType.CLIPBOARD_REQUEST;
      d = allocate(prefix + 4);
      putSelection(d, prefix, payload.selection);
      putU32(d, prefix, u32(payload.type, "type"));
      break;
    case "clipboard_release":
      type = MessageType.CLIPBOARD_RELEASE;
      d = allocate(prefix);
      putSelection(d, prefix, payload.selection);
      break;
    case "file_xfer_start": {
      type = MessageType.FILE_XFER_START;
      const text = encoder.encode(payload.metadata);
      d = allocate(4 + text.length + 1);
      putU32(d, 0, u32(payload.id, "id"));
      d.set(text, 4);
      break;
    }
    case "file_xfer_status": {
      type = MessageType.FILE_XFER_STATUS;
      const { freeSpace, error } = payload;
      const result = u32(payload.result, "result");
      if (freeSpace !== undefined && result !== FileXferStatus.NOT_ENOUGH_SPACE) {
        throw new TypeError(
          "Cannot encode FILE_XFER_STATUS: freeSpace belongs to NOT_ENOUGH_SPACE",
        );
      }
      if (error !== undefined && result !== FileXferStatus.ERROR) {
        throw new TypeError("Cannot encode FILE_XFER_STATUS: error belongs to ERROR");
      }
      d = allocate(freeSpace !== undefined ? 16 : error !== undefined ? 13 : 8);
      putU32(d, 0, u32(payload.id, "id"));
      putU32(d, 4, result);
      if (freeSpace !== undefined) putU64(d, 8, u64(freeSpace, "freeSpace"));
      if (error !== undefined) {
        d[8] = int(error.type, "error type", 0, 0xff);
        putU32(d, 9, u32(error.code, "error code"));
      }
      break;
    }
    case "file_xfer_data":
      type = MessageType.FILE_XFER_DATA;
      d = allocate(12 + payload.data.length);
      putU32(d, 0, u32(payload.id, "id"));
      putU64(d, 4, BigInt(payload.data.length));
      d.set(payload.data, 12);
      break;
    case "client_disconnected":
      type = MessageType.CLIENT_DISCONNECTED;
      d = allocate(0);
      break;
    case "max_clipboard":
      type = MessageType.MAX_CLIPBOARD;
      d = allocate(4);
      putU32(d, 0, i32(payload.max, "max"));
      break;
    case "audio_volume_sync": {
      type = MessageType.AUDIO_VOLUME_SYNC;
      const n = int(payload.volume.length, "channel count", 0, 0xff);
      d = allocate(3 + 2 * n);
      d[0] = payload.playback ? 1 : 0;
      d[1] = payload.mute ? 1 : 0;
      d[2] = n;
      payload.volume.forEach((v, i) => putU16(d, 3 + 2 * i, int(v, "volume", 0, 0xffff)));
      break;
    }
    case "graphics_device_info": {
      type = MessageType.GRAPHICS_DEVICE_INFO;
      const addresses = payload.displays.map((x) => encoder.encode(x.deviceAddress));
      d = allocate(4 + addresses.reduce((n, a) => n + 17 + a.length, 0));
      putU32(d, 0, payload.displays.length);
      let p = 4;
      payload.displays.forEach((x, i) => {
        const address = addresses[i]!;
        putU32(d, p, u32(x.channelId, "channelId"));
        putU32(d, p + 4, u32(x.monitorId, "monitorId"));
        putU32(d, p + 8, u32(x.deviceDisplayId, "deviceDisplayId"));
        putU32(d, p + 12, address.length + 1);
        d.set(address, p + 16);
        p += 17 + address.length;
      });
      break;
    }
    case "unknown":
    case "invalid":
      type = u32(payload.type, "type");
      d = payload.data;
      break;
    default:
      throw new TypeError(
        `Cannot encode message: unknown kind "${(payload as { kind: unknown }).kind}"`,
      );
  }
  return { port: WireFormat.CLIENT_PORT, type, opaque: 0n, data: d };
}

function int(value: number, name: string, min: number, max: number): number {
  if (!Number.isInteger(value) || value < min || value > max) {
    throw new RangeError(
      `Cannot encode message: ${name} must be an integer from ${min} to ${max}, got ${value}`,
    );
  }
  return value;
}

function u32(value: number, name: string): number {
  return int(value, name, 0, 0xffff_ffff);
}

function i32(value: number, name: string): number {
  return int(value, name, -0x8000_0000, 0x7fff_ffff);
}

function u64(value: bigint, name: string): bigint {
  if (typeof value !== "bigint" || value < 0n || value > 0xffff_ffff_ffff_ffffn) {
    throw new RangeError(`Cannot encode message: ${name} must be a u64 bigint, got ${value}`);
  }
  return value;
}

function putSelection(d: Uint8Array, prefix: number, selection: number): void {
  if (prefix) {
    d[0] = int(selection, "selection", 0, 0xff);
  } else if (selection !== 0) {
    throw new RangeError(
      `Cannot encode message: selection ${selection} needs CLIPBOARD_SELECTION to be negotiated`,
    );
  }
}
