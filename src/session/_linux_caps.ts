// This module is browser compatible.

import { Capability } from "../protocol/capability.ts";
import { capabilityWords } from "../protocol/capability_words.ts";

/** The Linux agent's capabilities (0x00038DE7), without what the options switch off. */
export function linuxCaps(selection: boolean, grabSerial: boolean): number[] {
  const bits: number[] = [
    Capability.MOUSE_STATE,
    Capability.MONITORS_CONFIG,
    Capability.REPLY,
    Capability.CLIPBOARD_BY_DEMAND,
    Capability.SPARSE_MONITORS_CONFIG,
    Capability.GUEST_LINEEND_LF,
    Capability.MAX_CLIPBOARD,
    Capability.AUDIO_VOLUME_SYNC,
    Capability.GRAPHICS_DEVICE_INFO,
    Capability.CLIPBOARD_NO_RELEASE_ON_REGRAB,
  ];
  if (selection) bits.push(Capability.CLIPBOARD_SELECTION);
  if (grabSerial) bits.push(Capability.CLIPBOARD_GRAB_SERIAL);
  return capabilityWords(bits);
}
