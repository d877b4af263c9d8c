// One-line, human-readable descriptions of decoded messages, for the CLI tools.
import {
  Capability,
  ClipboardType,
  type MessagePayload,
  MessageType,
  MouseButton,
  Selection,
} from "../mod.ts";

const invert = (o: Record<string, number>) => new Map(Object.entries(o).map(([k, v]) => [v, k]));
const typeNames = invert(MessageType);
const clipboardNames = invert(ClipboardType);
const selectionNames = invert(Selection);
const capabilityNames = invert(Capability);

/** `MessageType` name of a type number. */
export function messageTypeName(type: number): string {
  return typeNames.get(type) ?? `TYPE_${type}`;
}

/** Name of a clipboard type. */
export function clipboardTypeName(type: number): string {
  return clipboardNames.get(type) ?? `TYPE_${type}`;
}

/** Name of a selection. */
export function selectionName(selection: number): string {
  return selectionNames.get(selection) ?? `SELECTION_${selection}`;
}

/** Names of the capability bits set in `caps`. */
export function capabilityNamesOf(caps: readonly number[]): string[] {
  const names: string[] = [];
  caps.forEach((word, w) => {
    for (let bit = 0; bit < 32; bit++) {
      if ((word >>> bit) & 1) {
        names.push(capabilityNames.get(w * 32 + bit) ?? `BIT_${w * 32 + bit}`);
      }
    }
  });
  return names;
}

const hex = (n: number) => `0x${n.toString(16).padStart(8, "0")}`;

/** Summarises bytes: short text in quotes, otherwise the length and a prefix. */
export function summarise(data: Uint8Array, max = 40): string {
  let text: string | undefined;
  try {
    text = new TextDecoder("utf-8", { fatal: true }).decode(
      data.subarray(0, Math.min(data.length, max * 4)),
    );
  } catch {
    text = undefined;
  }
  const printable = text !== undefined && ![...text].some((c) => c < " " && !"\t\n\r".includes(c));
  if (printable && data.length <= max) return `${data.length} B ${JSON.stringify(text)}`;
  if (printable) return `${data.length} B ${JSON.stringify(text!.slice(0, max))}…`;
  const head = [...data.subarray(0, Math.min(16, data.length))].map((b) =>
    b.toString(16).padStart(2, "0")
  );
  return `${data.length} B ${head.join(" ")}${data.length > 16 ? " …" : ""}`;
}

function buttons(mask: number): string {
  const names = Object.entries(MouseButton).filter(([, v]) => mask & v).map(([k]) =>
    k.toLowerCase()
  );
  return names.length ? names.join("+") : "none";
}

/** One line describing a decoded payload. */
export function describe(p: MessagePayload): string {
  switch (p.kind) {
    case "announce_capabilities":
      return `ANNOUNCE_CAPABILITIES request=${p.request ? 1 : 0} caps=[${
        p.caps.map(hex).join(", ")
      }] (${capabilityNamesOf(p.caps).join("|")})`;
    case "clipboard_grab":
      return `CLIPBOARD_GRAB ${selectionName(p.selection)}${
        p.serial === undefined ? "" : ` serial=${p.serial}`
      } types=[${p.types.map(clipboardTypeName).join(", ")}]`;
    case "clipboard_request":
      return `CLIPBOARD_REQUEST ${selectionName(p.selection)} ${clipboardTypeName(p.type)}`;
    case "clipboard_release":
      return `CLIPBOARD_RELEASE ${selectionName(p.selection)}`;
    case "clipboard":
      return `CLIPBOARD ${selectionName(p.selection)} ${clipboardTypeName(p.type)} data=${
        summarise(p.data)
      }`;
    case "mouse_state":
      return `MOUSE_STATE x=${p.x} y=${p.y} buttons=${buttons(p.buttons)} display=${p.display}`;
    case "monitors_config":
      return `MONITORS_CONFIG flags=${p.flags} ${
        p.monitors.map((m) => `${m.width}x${m.height}+${m.x}+${m.y}@${m.depth}`).join(" ")
      }`;
    case "reply":
      return `REPLY to ${messageTypeName(p.messageType)} error=${p.error}`;
    case "display_config":
      return `DISPLAY_CONFIG flags=${p.flags} depth=${p.depth}`;
    case "file_xfer_start":
      return `FILE_XFER_START id=${p.id} ${JSON.stringify(p.metadata)}`;
    case "file_xfer_status":
      return `FILE_XFER_STATUS id=${p.id} result=${p.result}${
        p.freeSpace === undefined ? "" : ` free=${p.freeSpace}`
      }${p.error === undefined ? "" : ` error=${p.error.type}/${p.error.code}`}`;
    case "file_xfer_data":
      return `FILE_XFER_DATA id=${p.id} data=${summarise(p.data)}`;
    case "client_disconnected":
      return "CLIENT_DISCONNECTED";
    case "max_clipboard":
      return `MAX_CLIPBOARD max=${p.max}`;
    case "audio_volume_sync":
      return `AUDIO_VOLUME_SYNC ${p.playback ? "playback" : "record"}${
        p.mute ? " muted" : ""
      } volume=[${p.volume.join(", ")}]`;
    case "graphics_device_info":
      return `GRAPHICS_DEVICE_INFO ${
        p.displays.map((d) =>
          `${d.channelId}:${d.monitorId}→${d.deviceAddress}#${d.deviceDisplayId}`
        ).join(" ")
      }`;
    case "unknown":
      return `${messageTypeName(p.type)} (unknown) data=${summarise(p.data)}`;
    case "invalid":
      return `${messageTypeName(p.type)} INVALID ${p.code}: ${p.reason} data=${summarise(p.data)}`;
  }
}
