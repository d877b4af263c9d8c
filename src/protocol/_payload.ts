// This module is browser compatible.

import { MessageType } from "./message_type.ts";

/** Default limit of types in one CLIPBOARD_GRAB. */
export const DEFAULT_MAX_GRAB_TYPES = 64;
/** Default limit of words in one ANNOUNCE_CAPABILITIES. */
export const DEFAULT_MAX_CAPS_WORDS = 16;

const names = new Map<number, string>(Object.entries(MessageType).map(([k, v]) => [v, k]));

/** `MessageType` name of `type`, or `TYPE_<n>` for unknown types. */
export function typeName(type: number): string {
  return names.get(type) ?? `TYPE_${type}`;
}
