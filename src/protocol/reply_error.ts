// This module is browser compatible.

/**
 * Results carried by REPLY (`VD_AGENT_SUCCESS`, `VD_AGENT_ERROR`).
 *
 * @example
 * ```ts
 * import { ReplyError } from "@vdagent/streams";
 * import assert from "node:assert/strict";
 *
 * assert.equal(ReplyError.SUCCESS, 1);
 * ```
 */
export const ReplyError = {
  /** The acknowledged message was applied. */
  SUCCESS: 1,
  /** The acknowledged message failed. */
  ERROR: 2,
} as const;

/** One of the {@linkcode ReplyError} values. */
export type ReplyError = typeof ReplyError[keyof typeof ReplyError];
