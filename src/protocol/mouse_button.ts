// This module is browser compatible.

/**
 * Button masks of MOUSE_STATE's `buttons` (`VD_AGENT_*BUTTON_MASK`). Bit 0 is
 * unused; the wheel is a press and release of UP or DOWN.
 *
 * @example Left and right pressed together
 * ```ts
 * import { MouseButton } from "@vdagent/streams";
 * import assert from "node:assert/strict";
 *
 * assert.equal(MouseButton.LEFT | MouseButton.RIGHT, 0b1010);
 * ```
 */
export const MouseButton = {
  /** `VD_AGENT_LBUTTON_MASK`. */
  LEFT: 1 << 1,
  /** `VD_AGENT_MBUTTON_MASK`. */
  MIDDLE: 1 << 2,
  /** `VD_AGENT_RBUTTON_MASK`. */
  RIGHT: 1 << 3,
  /** `VD_AGENT_UBUTTON_MASK`: wheel up. */
  UP: 1 << 4,
  /** `VD_AGENT_DBUTTON_MASK`: wheel down. */
  DOWN: 1 << 5,
  /** `VD_AGENT_SBUTTON_MASK`: side button. */
  SIDE: 1 << 6,
  /** `VD_AGENT_EBUTTON_MASK`: extra button. */
  EXTRA: 1 << 7,
} as const;

/** One of the {@linkcode MouseButton} masks. */
export type MouseButton = typeof MouseButton[keyof typeof MouseButton];
