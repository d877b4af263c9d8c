// This module is browser compatible.

/**
 * Clipboard data types (`VD_AGENT_CLIPBOARD_*`).
 *
 * @example Checking a grab's offer
 * ```ts
 * import { ClipboardType } from "@vdagent/streams";
 * import assert from "node:assert/strict";
 *
 * const offered = [ClipboardType.UTF8_TEXT, ClipboardType.IMAGE_PNG];
 * assert.ok(offered.includes(ClipboardType.IMAGE_PNG));
 * ```
 */
export const ClipboardType = {
  /** No data: the answer to a request that cannot be served. */
  NONE: 0,
  /** UTF-8 text. */
  UTF8_TEXT: 1,
  /** PNG image; every client with image support handles it. */
  IMAGE_PNG: 2,
  /** BMP image. */
  IMAGE_BMP: 3,
  /** TIFF image. */
  IMAGE_TIFF: 4,
  /** JPEG image. */
  IMAGE_JPG: 5,
  /** NUL-separated UTF-8 list: `copy` or `cut`, then paths in the WebDAV share. */
  FILE_LIST: 6,
} as const;

/** One of the {@linkcode ClipboardType} values. */
export type ClipboardType = typeof ClipboardType[keyof typeof ClipboardType];
