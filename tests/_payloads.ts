// A seeded generator of valid payloads of every message type and layout.
import type { MessagePayload, PayloadOptions } from "../mod.ts";
import { randBytes, randInt } from "./_helpers.ts";

const KINDS = [
  "mouse_state",
  "monitors_config",
  "reply",
  "clipboard",
  "display_config",
  "announce_capabilities",
  "clipboard_grab",
  "clipboard_request",
  "clipboard_release",
  "file_xfer_start",
  "file_xfer_status",
  "file_xfer_data",
  "client_disconnected",
  "max_clipboard",
  "audio_volume_sync",
  "graphics_device_info",
  "unknown",
] as const;

/** Every layout combination. */
export const LAYOUTS: PayloadOptions[] = [
  {},
  { selection: true },
  { grabSerial: true },
  { selection: true, grabSerial: true },
];

function u32(rand: () => number): number {
  const r = rand();
  return r < 0.2 ? 0 : r < 0.4 ? 0xffff_ffff : Math.floor(rand() * 2 ** 32);
}

function text(rand: () => number): string {
  const alphabet = ["a", "Z", "0", " ", "é", "✓", "=", "\n", "/", "😀"];
  return Array.from({ length: randInt(rand, 0, 20) }, () => alphabet[randInt(rand, 0, 9)]).join("");
}

/** A random valid payload of `kind`, laid out for `layout`. */
export function randomPayload(
  rand: () => number,
  layout: PayloadOptions,
  kind: typeof KINDS[number] = KINDS[randInt(rand, 0, KINDS.length - 1)]!,
): MessagePayload {
  const selection = layout.selection ? randInt(rand, 0, 2) : 0;
  switch (kind) {
    case "mouse_state":
      return {
        kind,
        x: u32(rand),
        y: u32(rand),
        buttons: u32(rand),
        display: randInt(rand, 0, 255),
      };
    case "monitors_config": {
      const physical = rand() < 0.5;
      return {
        kind,
        flags: (physical ? 2 : 0) | randInt(rand, 0, 1),
        monitors: Array.from({ length: randInt(rand, 0, 4) }, () => ({
          height: u32(rand),
          width: u32(rand),
          depth: u32(rand),
          x: randInt(rand, -(2 ** 31), 2 ** 31 - 1),
          y: randInt(rand, -(2 ** 31), 2 ** 31 - 1),
          ...(physical
            ? { heightMm: randInt(rand, 0, 0xffff), widthMm: randInt(rand, 0, 0xffff) }
            : {}),
        })),
      };
    }
    case "reply":
      return { kind, messageType: u32(rand), error: u32(rand) };
    case "clipboard":
      return {
        kind,
        selection,
        type: randInt(rand, 0, 6),
        data: randBytes(rand, randInt(rand, 0, 3000)),
      };
    case "display_config":
      return { kind, flags: u32(rand), depth: u32(rand) };
    case "announce_capabilities":
      return {
        kind,
        request: rand() < 0.5,
        caps: Array.from({ length: randInt(rand, 1, 16) }, () => u32(rand)),
      };
    case "clipboard_grab": {
      const types = Array.from({ length: randInt(rand, 1, 64) }, () => u32(rand));
      return layout.grabSerial
        ? { kind, selection, serial: u32(rand), types }
        : { kind, selection, types };
    }
    case "clipboard_request":
      return { kind, selection, type: u32(rand) };
    case "clipboard_release":
      return { kind, selection };
    case "file_xfer_start":
      return { kind, id: u32(rand), metadata: `[vdagent-file-xfer]\nname=${text(rand)}\nsize=1\n` };
    case "file_xfer_status": {
      const r = rand();
      return r < 0.3
        ? { kind, id: u32(rand), result: 4, freeSpace: BigInt(u32(rand)) * 4096n }
        : r < 0.6
        ? {
          kind,
          id: u32(rand),
          result: 2,
          error: { type: randInt(rand, 0, 255), code: u32(rand) },
        }
        : { kind, id: u32(rand), result: randInt(rand, 0, 7) };
    }
    case "file_xfer_data":
      return { kind, id: u32(rand), data: randBytes(rand, randInt(rand, 0, 5000)) };
    case "client_disconnected":
      return { kind };
    case "max_clipboard":
      return { kind, max: randInt(rand, -(2 ** 31), 2 ** 31 - 1) };
    case "audio_volume_sync":
      return {
        kind,
        playback: rand() < 0.5,
        mute: rand() < 0.5,
        volume: Array.from({ length: randInt(rand, 0, 8) }, () => randInt(rand, 0, 0xffff)),
      };
    case "graphics_device_info":
      return {
        kind,
        displays: Array.from({ length: randInt(rand, 0, 4) }, () => ({
          channelId: u32(rand),
          monitorId: u32(rand),
          deviceDisplayId: u32(rand),
          deviceAddress: `pci/0000/${text(rand)}`,
        })),
      };
    case "unknown":
      return {
        kind,
        type: rand() < 0.5 ? 0 : randInt(rand, 17, 2 ** 32 - 1),
        data: randBytes(rand, randInt(rand, 0, 100)),
      };
  }
}

export { KINDS };
