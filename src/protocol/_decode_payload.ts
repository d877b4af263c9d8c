// This module is browser compatible.

import { getI32, getU16, getU32, getU64, view } from "../wire/_bytes.ts";
import { checkLimit } from "../wire/_limits.ts";
import { FileXferStatus } from "./file_xfer_status.ts";
import { MessageType } from "./message_type.ts";
import { MonitorsConfigFlag } from "./monitors_config_flag.ts";
import type {
  DeviceDisplayInfo,
  InvalidPayload,
  InvalidPayloadCode,
  MessagePayload,
  MonitorConfig,
  PayloadOptions,
} from "./message_payload.ts";
import { DEFAULT_MAX_CAPS_WORDS, DEFAULT_MAX_GRAB_TYPES, typeName } from "./_payload.ts";

const decoder = new TextDecoder();

/**
 * `decodeMessage` of the payload `b[start, end)`, so that a decoder that has
 * the bytes in a larger buffer needs no view of them; byte fields are views
 * of `b`.
 */
export function decodePayload(
  type: number,
  b: Uint8Array,
  start: number,
  end: number,
  skippedSize: number | undefined,
  options: PayloadOptions,
): MessagePayload {
  if (skippedSize !== undefined) return skipped(type, view(b, start, end), skippedSize, options);
  const size = end - start;
  const prefix = options.selection ? 4 : 0;
  const selection = prefix && size > 0 ? b[start]! : 0;
  switch (type) {
    case MessageType.MOUSE_STATE:
      if (size !== 13) return exact(type, view(b, start, end), 13);
      return {
        kind: "mouse_state",
        x: getU32(b, start),
        y: getU32(b, start + 4),
        buttons: getU32(b, start + 8),
        display: b[start + 12]!,
      };
    case MessageType.MONITORS_CONFIG: {
      if (size < 8) return minimum(type, view(b, start, end), 8);
      const count = getU32(b, start);
      const flags = getU32(b, start + 4);
      const physical = (flags & MonitorsConfigFlag.PHYSICAL_SIZE) !== 0;
      const each = physical ? 24 : 20;
      if (count > (size - 8) / each || size !== 8 + each * count) {
        return invalid(
          type,
          view(b, start, end),
          "PAYLOAD_SIZE",
          `${count} monitors${physical ? " with physical sizes" : ""} take ${
            8 + each * count
          } bytes, got ${size}`,
        );
      }
      const monitors: MonitorConfig[] = [];
      for (let i = 0, p = 8; i < count; i++, p += 20) {
        const monitor: MonitorConfig = {
          height: getU32(b, start + p),
          width: getU32(b, start + p + 4),
          depth: getU32(b, start + p + 8),
          x: getI32(b, start + p + 12),
          y: getI32(b, start + p + 16),
        };
        if (physical) {
          const mm = 8 + 20 * count + 4 * i;
          monitor.heightMm = getU16(b, start + mm);
          monitor.widthMm = getU16(b, start + mm + 2);
        }
        monitors.push(monitor);
      }
      return { kind: "monitors_config", flags, monitors };
    }
    case MessageType.REPLY:
      if (size !== 8) return exact(type, view(b, start, end), 8);
      return { kind: "reply", messageType: getU32(b, start), error: getU32(b, start + 4) };
    case MessageType.CLIPBOARD:
      if (size < prefix + 4) return minimum(type, view(b, start, end), prefix + 4);
      return {
        kind: "clipboard",
        selection,
        type: getU32(b, start + prefix),
        data: b.subarray(start + prefix + 4, end),
      };
    case MessageType.DISPLAY_CONFIG:
      if (size !== 8) return exact(type, view(b, start, end), 8);
      return { kind: "display_config", flags: getU32(b, start), depth: getU32(b, start + 4) };
    case MessageType.ANNOUNCE_CAPABILITIES: {
      if (size < 8) return minimum(type, view(b, start, end), 8);
      const max = checkLimit(
        "decoder",
        "maxCapsWords",
        options.maxCapsWords,
        DEFAULT_MAX_CAPS_WORDS,
      );
      const count = (size - 4) >>> 2;
      if (count > max) {
        return invalid(
          type,
          view(b, start, end),
          "TOO_MANY_CAPS",
          `${count} capability words exceed the maximum of ${max}`,
        );
      }
      const caps: number[] = [];
      for (let i = 0; i < count; i++) caps.push(getU32(b, start + 4 + 4 * i));
      return { kind: "announce_capabilities", request: getU32(b, start) !== 0, caps };
    }
    case MessageType.CLIPBOARD_GRAB: {
      const head = prefix + (options.grabSerial ? 4 : 0);
      if (size < head + 4) return minimum(type, view(b, start, end), head + 4);
      const max = checkLimit(
        "decoder",
        "maxGrabTypes",
        options.maxGrabTypes,
        DEFAULT_MAX_GRAB_TYPES,
      );
      const count = (size - head) >>> 2;
      if (count > max) {
        return invalid(
          type,
          view(b, start, end),
          "TOO_MANY_TYPES",
          `${count} types exceed the maximum of ${max}`,
        );
      }
      const types: number[] = [];
      for (let i = 0; i < count; i++) types.push(getU32(b, start + head + 4 * i));
      return options.grabSerial
        ? { kind: "clipboard_grab", selection, serial: getU32(b, start + prefix), types }
        : { kind: "clipboard_grab", selection, types };
    }
    case MessageType.CLIPBOARD_REQUEST:
      if (size !== prefix + 4) return exact(type, view(b, start, end), prefix + 4);
      return { kind: "clipboard_request", selection, type: getU32(b, start + prefix) };
    case MessageType.CLIPBOARD_RELEASE:
      if (size !== prefix) return exact(type, view(b, start, end), prefix);
      return { kind: "clipboard_release", selection };
    case MessageType.FILE_XFER_START: {
      if (size < 4) return minimum(type, view(b, start, end), 4);
      const text = b.subarray(start + 4, end);
      const nul = text.indexOf(0);
      return {
        kind: "file_xfer_start",
        id: getU32(b, start),
        metadata: decoder.decode(nul < 0 ? text : text.subarray(0, nul)),
      };
    }
    case MessageType.FILE_XFER_STATUS: {
      if (size < 8) return exact(type, view(b, start, end), 8);
      const id = getU32(b, start);
      const result = getU32(b, start + 4);
      if (size === 8) return { kind: "file_xfer_status", id, result };
      if (result === FileXferStatus.NOT_ENOUGH_SPACE && size === 16) {
        return { kind: "file_xfer_status", id, result, freeSpace: getU64(b, start + 8) };
      }
      if (result === FileXferStatus.ERROR && size === 13) {
        return {
          kind: "file_xfer_status",
          id,
          result,
          error: { type: b[start + 8]!, code: getU32(b, start + 9) },
        };
      }
      return invalid(
        type,
        view(b, start, end),
        "PAYLOAD_SIZE",
        `FILE_XFER_STATUS with result ${result} must be 8 bytes${
          result === FileXferStatus.NOT_ENOUGH_SPACE
            ? " or 16"
            : result === FileXferStatus.ERROR
            ? " or 13"
            : ""
        }, got ${size}`,
      );
    }
    case MessageType.FILE_XFER_DATA: {
      if (size < 12) return minimum(type, view(b, start, end), 12);
      const length = getU64(b, start + 4);
      if (length !== BigInt(size - 12)) {
        return invalid(
          type,
          view(b, start, end),
          "PAYLOAD_SIZE",
          `FILE_XFER_DATA declares ${length} data bytes, carries ${size - 12}`,
        );
      }
      return {
        kind: "file_xfer_data",
        id: getU32(b, start),
        data: b.subarray(start + 12, end),
      };
    }
    case MessageType.CLIENT_DISCONNECTED:
      if (size !== 0) return exact(type, view(b, start, end), 0);
      return { kind: "client_disconnected" };
    case MessageType.MAX_CLIPBOARD:
      if (size !== 4) return exact(type, view(b, start, end), 4);
      return { kind: "max_clipboard", max: getI32(b, start) };
    case MessageType.AUDIO_VOLUME_SYNC: {
      if (size < 3) return minimum(type, view(b, start, end), 3);
      const channels = b[start + 2]!;
      if (size < 3 + 2 * channels) {
        return invalid(
          type,
          view(b, start, end),
          "PAYLOAD_SIZE",
          `${channels} channels take ${3 + 2 * channels} bytes, got ${size}`,
        );
      }
      const volume: number[] = [];
      for (let i = 0; i < channels; i++) volume.push(getU16(b, start + 3 + 2 * i));
      return {
        kind: "audio_volume_sync",
        playback: b[start] !== 0,
        mute: b[start + 1] !== 0,
        volume,
      };
    }
    case MessageType.GRAPHICS_DEVICE_INFO: {
      if (size < 4) return minimum(type, view(b, start, end), 4);
      const count = getU32(b, start);
      if (count > (size - 4) / 16) {
        return invalid(
          type,
          view(b, start, end),
          "PAYLOAD_SIZE",
          `${count} displays cannot fit in ${size} bytes`,
        );
      }
      const displays: DeviceDisplayInfo[] = [];
      let p = 4;
      for (let i = 0; i < count; i++) {
        if (size - p < 16) {
          return invalid(
            type,
            view(b, start, end),
            "PAYLOAD_SIZE",
            `display ${i} starts past the end of the payload`,
          );
        }
        const length = getU32(b, start + p + 12);
        if (length > size - p - 16) {
          return invalid(
            type,
            view(b, start, end),
            "PAYLOAD_SIZE",
            `display ${i}'s address of ${length} bytes overruns the payload`,
          );
        }
        const address = b.subarray(start + p + 16, start + p + 16 + length);
        const nul = address.indexOf(0);
        displays.push({
          channelId: getU32(b, start + p),
          monitorId: getU32(b, start + p + 4),
          deviceDisplayId: getU32(b, start + p + 8),
          deviceAddress: decoder.decode(nul < 0 ? address : address.subarray(0, nul)),
        });
        p += 16 + length;
      }
      return { kind: "graphics_device_info", displays };
    }
    default:
      return { kind: "unknown", type, data: view(b, start, end) };
  }
}

/** A message skipped unread for being over its type's size bound. */
function skipped(
  type: number,
  data: Uint8Array,
  size: number,
  options: PayloadOptions,
): InvalidPayload {
  const note = `; its ${size} bytes were skipped unread`;
  if (type === MessageType.CLIPBOARD_GRAB) {
    const max = checkLimit("decoder", "maxGrabTypes", options.maxGrabTypes, DEFAULT_MAX_GRAB_TYPES);
    const head = (options.selection ? 4 : 0) + (options.grabSerial ? 4 : 0);
    const count = Math.max(0, size - head) >>> 2;
    if (count > max) {
      return invalid(
        type,
        data,
        "TOO_MANY_TYPES",
        `${count} types exceed the maximum of ${max}${note}`,
      );
    }
  } else if (type === MessageType.ANNOUNCE_CAPABILITIES) {
    const max = checkLimit("decoder", "maxCapsWords", options.maxCapsWords, DEFAULT_MAX_CAPS_WORDS);
    const count = Math.max(0, size - 4) >>> 2;
    if (count > max) {
      return invalid(
        type,
        data,
        "TOO_MANY_CAPS",
        `${count} capability words exceed the maximum of ${max}${note}`,
      );
    }
  }
  return invalid(
    type,
    data,
    "PAYLOAD_SIZE",
    `${typeName(type)} of ${size} bytes is over the size bound of its type${note}`,
  );
}

function invalid(
  type: number,
  data: Uint8Array,
  code: InvalidPayloadCode,
  reason: string,
): InvalidPayload {
  return { kind: "invalid", type, code, reason, data };
}

function exact(type: number, data: Uint8Array, size: number): InvalidPayload {
  return invalid(
    type,
    data,
    "PAYLOAD_SIZE",
    `${typeName(type)} must be ${size} bytes, got ${data.length}`,
  );
}

function minimum(type: number, data: Uint8Array, size: number): InvalidPayload {
  return invalid(
    type,
    data,
    "PAYLOAD_SIZE",
    `${typeName(type)} needs at least ${size} bytes, got ${data.length}`,
  );
}
