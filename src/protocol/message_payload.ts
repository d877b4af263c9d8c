// This module is browser compatible.

/**
 * Layout choices and limits for {@linkcode decodeMessage} and
 * `encodeMessage`. The layout flags must reflect what both peers announced.
 */
export interface PayloadOptions {
  /** CLIPBOARD_SELECTION negotiated: clipboard messages start with a 4-byte selection prefix. */
  selection?: boolean;
  /** CLIPBOARD_GRAB_SERIAL negotiated: CLIPBOARD_GRAB carries a serial. */
  grabSerial?: boolean;
  /** Most types one CLIPBOARD_GRAB may offer; more makes it invalid. Default 64. */
  maxGrabTypes?: number;
  /** Most words one ANNOUNCE_CAPABILITIES may carry; more makes it invalid. Default 16. */
  maxCapsWords?: number;
}

/** MOUSE_STATE (1): absolute position, pressed buttons and display. */
export interface MouseStatePayload {
  /** Which payload this is. */
  kind: "mouse_state";
  /** X in pixels of the display. */
  x: number;
  /** Y in pixels of the display. */
  y: number;
  /** `MouseButton` masks ORed together. */
  buttons: number;
  /** Display (monitor) index, a u8. */
  display: number;
}

/** One monitor of a MONITORS_CONFIG. */
export interface MonitorConfig {
  /** Height in pixels; 0 with `width` 0 disables the monitor. */
  height: number;
  /** Width in pixels. */
  width: number;
  /** Colour depth in bits. */
  depth: number;
  /** Left edge (i32). */
  x: number;
  /** Top edge (i32). */
  y: number;
  /** Physical height in mm, present exactly when the PHYSICAL_SIZE flag is set. */
  heightMm?: number;
  /** Physical width in mm, present exactly when the PHYSICAL_SIZE flag is set. */
  widthMm?: number;
}

/** MONITORS_CONFIG (2). */
export interface MonitorsConfigPayload {
  /** Which payload this is. */
  kind: "monitors_config";
  /** `MonitorsConfigFlag` bits. */
  flags: number;
  /** The monitors. */
  monitors: readonly MonitorConfig[];
}

/** REPLY (3). */
export interface ReplyPayload {
  /** Which payload this is. */
  kind: "reply";
  /** Type of the acknowledged message. */
  messageType: number;
  /** `ReplyError` value. */
  error: number;
}

/** CLIPBOARD (4): data of one type for a selection. */
export interface ClipboardPayload {
  /** Which payload this is. */
  kind: "clipboard";
  /** `Selection`; always 0 without the selection prefix. */
  selection: number;
  /** `ClipboardType` of the data; NONE (0) with empty data means "nothing". */
  type: number;
  /** The data, possibly empty; a view into the message. */
  data: Uint8Array;
}

/** DISPLAY_CONFIG (5). */
export interface DisplayConfigPayload {
  /** Which payload this is. */
  kind: "display_config";
  /** `DisplayConfigFlag` bits. */
  flags: number;
  /** Colour depth, applied with SET_COLOR_DEPTH. */
  depth: number;
}

/** ANNOUNCE_CAPABILITIES (6). */
export interface AnnounceCapabilitiesPayload {
  /** Which payload this is. */
  kind: "announce_capabilities";
  /** Whether the sender asks for the receiver's capabilities in return. */
  request: boolean;
  /** Capability words, at least one. */
  caps: readonly number[];
}

/** CLIPBOARD_GRAB (7): the sender owns a selection and offers types. */
export interface ClipboardGrabPayload {
  /** Which payload this is. */
  kind: "clipboard_grab";
  /** `Selection`; always 0 without the selection prefix. */
  selection: number;
  /** Grab serial, present exactly when GRAB_SERIAL is negotiated. */
  serial?: number;
  /** Offered `ClipboardType`s, at least one. */
  types: readonly number[];
}

/** CLIPBOARD_REQUEST (8): asks the owner for data of one type. */
export interface ClipboardRequestPayload {
  /** Which payload this is. */
  kind: "clipboard_request";
  /** `Selection`. */
  selection: number;
  /** Requested `ClipboardType`. */
  type: number;
}

/** CLIPBOARD_RELEASE (9): the sender gives a selection up. */
export interface ClipboardReleasePayload {
  /** Which payload this is. */
  kind: "clipboard_release";
  /** `Selection`. */
  selection: number;
}

/** FILE_XFER_START (10). */
export interface FileXferStartPayload {
  /** Which payload this is. */
  kind: "file_xfer_start";
  /** Transfer id. */
  id: number;
  /**
   * GLib key-file text of group `vdagent-file-xfer` with keys `name` and
   * `size`, without its NUL terminator (added on encode).
   */
  metadata: string;
}

/** FILE_XFER_STATUS (11). */
export interface FileXferStatusPayload {
  /** Which payload this is. */
  kind: "file_xfer_status";
  /** Transfer id. */
  id: number;
  /** `FileXferStatus` result. */
  result: number;
  /** Free disk space, a detail of NOT_ENOUGH_SPACE with FILE_XFER_DETAILED_ERRORS. */
  freeSpace?: bigint;
  /** Error detail of ERROR with FILE_XFER_DETAILED_ERRORS. */
  error?: { type: number; code: number };
}

/** FILE_XFER_DATA (12). */
export interface FileXferDataPayload {
  /** Which payload this is. */
  kind: "file_xfer_data";
  /** Transfer id. */
  id: number;
  /** The data; its length is the message's `size` field. */
  data: Uint8Array;
}

/** CLIENT_DISCONNECTED (13): empty. */
export interface ClientDisconnectedPayload {
  /** Which payload this is. */
  kind: "client_disconnected";
}

/** MAX_CLIPBOARD (14). */
export interface MaxClipboardPayload {
  /** Which payload this is. */
  kind: "max_clipboard";
  /** Largest clipboard data the receiver should send (i32; negative means no limit). */
  max: number;
}

/** AUDIO_VOLUME_SYNC (15). */
export interface AudioVolumeSyncPayload {
  /** Which payload this is. */
  kind: "audio_volume_sync";
  /** Playback (true) or record (false) stream. */
  playback: boolean;
  /** Muted. */
  mute: boolean;
  /** Volume per channel (u16 each). */
  volume: readonly number[];
}

/** One display of GRAPHICS_DEVICE_INFO. */
export interface DeviceDisplayInfo {
  /** SPICE display channel id. */
  channelId: number;
  /** Monitor id within the channel. */
  monitorId: number;
  /** Display id within the device. */
  deviceDisplayId: number;
  /** Device address, e.g. `pci/0000/02.0`, without the NUL terminator. */
  deviceAddress: string;
}

/** GRAPHICS_DEVICE_INFO (16). */
export interface GraphicsDeviceInfoPayload {
  /** Which payload this is. */
  kind: "graphics_device_info";
  /** The displays. */
  displays: readonly DeviceDisplayInfo[];
}

/** A message type this library does not know, kept raw. */
export interface UnknownPayload {
  /** Which payload this is. */
  kind: "unknown";
  /** The message type. */
  type: number;
  /** The raw payload. */
  data: Uint8Array;
}

/**
 * Stable codes of an invalid payload:
 * - `PAYLOAD_SIZE`: the size breaks the type's exact or minimum size rule, or
 *   disagrees with a count or length inside the payload.
 * - `TOO_MANY_TYPES`: a grab offers more than `maxGrabTypes` types.
 * - `TOO_MANY_CAPS`: more than `maxCapsWords` capability words.
 */
export type InvalidPayloadCode = "PAYLOAD_SIZE" | "TOO_MANY_TYPES" | "TOO_MANY_CAPS";

/**
 * A known message whose payload breaks its size rules. The real agents
 * ignore such messages, so it is not a framing error: it is delivered
 * flagged, with the reason.
 */
export interface InvalidPayload {
  /** Which payload this is. */
  kind: "invalid";
  /** The message type. */
  type: number;
  /** Stable code. */
  code: InvalidPayloadCode;
  /** What is wrong, for humans. */
  reason: string;
  /** The raw payload. */
  data: Uint8Array;
}

/** A decoded message payload, discriminated by `kind`. */
export type MessagePayload =
  | MouseStatePayload
  | MonitorsConfigPayload
  | ReplyPayload
  | ClipboardPayload
  | DisplayConfigPayload
  | AnnounceCapabilitiesPayload
  | ClipboardGrabPayload
  | ClipboardRequestPayload
  | ClipboardReleasePayload
  | FileXferStartPayload
  | FileXferStatusPayload
  | FileXferDataPayload
  | ClientDisconnectedPayload
  | MaxClipboardPayload
  | AudioVolumeSyncPayload
  | GraphicsDeviceInfoPayload
  | UnknownPayload
  | InvalidPayload;
