// This module is browser compatible.

/**
 * Flags of DISPLAY_CONFIG (`VD_AGENT_DISPLAY_CONFIG_FLAG_*`).
 *
 * @example
 * ```ts
 * import { DisplayConfigFlag } from "@vdagent/streams";
 * import assert from "node:assert/strict";
 *
 * assert.equal(DisplayConfigFlag.DISABLE_WALLPAPER | DisplayConfigFlag.SET_COLOR_DEPTH, 9);
 * ```
 */
export const DisplayConfigFlag = {
  /** Hide the wallpaper. */
  DISABLE_WALLPAPER: 1 << 0,
  /** Turn font smoothing off. */
  DISABLE_FONT_SMOOTH: 1 << 1,
  /** Turn animations off. */
  DISABLE_ANIMATION: 1 << 2,
  /** Apply the message's colour depth. */
  SET_COLOR_DEPTH: 1 << 3,
} as const;

/** One of the {@linkcode DisplayConfigFlag} values. */
export type DisplayConfigFlag = typeof DisplayConfigFlag[keyof typeof DisplayConfigFlag];
