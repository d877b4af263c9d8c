// This module is browser compatible.

/** Names of the `MouseButton` masks, for {@linkcode MouseInput.buttons}. */
export type MouseButtonName = "left" | "middle" | "right" | "up" | "down" | "side" | "extra";

/** An absolute pointer state, as `HostSession.mouse` takes it. */
export interface MouseInput {
  /** X in pixels of the display, a u32. */
  x: number;
  /** Y in pixels of the display, a u32. */
  y: number;
  /** Pressed buttons: a `MouseButton` mask, or names. Default none. */
  buttons?: number | readonly MouseButtonName[];
  /** Display index, a u8. Default 0. */
  display?: number;
}
