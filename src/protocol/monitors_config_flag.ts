// This module is browser compatible.

/**
 * Flags of MONITORS_CONFIG (`VD_AGENT_CONFIG_MONITORS_FLAG_*`).
 *
 * @example
 * ```ts
 * import { MonitorsConfigFlag } from "@vdagent/streams";
 * import assert from "node:assert/strict";
 *
 * assert.equal(MonitorsConfigFlag.PHYSICAL_SIZE, 2);
 * ```
 */
export const MonitorsConfigFlag = {
  /** Monitors have positions. */
  USE_POS: 1 << 0,
  /** Physical sizes in millimetres follow the monitors. */
  PHYSICAL_SIZE: 1 << 1,
} as const;

/** One of the {@linkcode MonitorsConfigFlag} values. */
export type MonitorsConfigFlag = typeof MonitorsConfigFlag[keyof typeof MonitorsConfigFlag];
