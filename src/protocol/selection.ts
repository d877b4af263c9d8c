// This module is browser compatible.

/**
 * Clipboard selections (`VD_AGENT_CLIPBOARD_SELECTION_*`). Without the
 * CLIPBOARD_SELECTION capability every clipboard message is about CLIPBOARD.
 *
 * @example
 * ```ts
 * import { Selection } from "@vdagent/streams";
 * import assert from "node:assert/strict";
 *
 * assert.equal(Selection.PRIMARY, 1);
 * ```
 */
export const Selection = {
  /** The clipboard proper (Ctrl+C / Ctrl+V). */
  CLIPBOARD: 0,
  /** X11 PRIMARY: the current text selection, pasted with the middle button. */
  PRIMARY: 1,
  /** X11 SECONDARY. */
  SECONDARY: 2,
} as const;

/** One of the {@linkcode Selection} values. */
export type Selection = typeof Selection[keyof typeof Selection];
