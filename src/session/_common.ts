// This module is browser compatible.

import type { Selection } from "../protocol/selection.ts";
import { Capability } from "../protocol/capability.ts";
import { hasCapability } from "../protocol/has_capability.ts";
import { encodeMessage } from "../protocol/encode_message.ts";
import type { PayloadOptions } from "../protocol/message_payload.ts";
import { MouseButton } from "../protocol/mouse_button.ts";
import type { Outbox } from "./_outbox.ts";
import { DEFAULT_MAX_CAPS_WORDS, DEFAULT_MAX_GRAB_TYPES } from "../protocol/_payload.ts";
import { checkLimit } from "../wire/_limits.ts";
import type { AgentMessage } from "../wire/agent_message.ts";
import type { RequestTable } from "./_requests.ts";
import { ClipboardError } from "./clipboard_error.ts";
import type { ClipboardOffer } from "./clipboard_offer.ts";
import type { MouseButtonName, MouseInput } from "./mouse_input.ts";
import type { SessionLimits } from "./session_limits.ts";

/** Default milliseconds a request waits for its data. */
export const DEFAULT_REQUEST_TIMEOUT = 30_000;
/** Default milliseconds a guest's paste may wait for the host's provider. */
export const DEFAULT_GUEST_REQUEST_TIMEOUT = 10_000;
/** Default requests outstanding per selection. */
export const DEFAULT_MAX_REQUESTS = 16;

/** A validated mouse state. */
export interface MouseState {
  x: number;
  y: number;
  buttons: number;
  display: number;
}

/** Limits with their defaults applied. */
export function sessionLimits(what: string, options: SessionLimits): Required<SessionLimits> {
  return {
    maxGrabTypes: checkLimit(what, "maxGrabTypes", options.maxGrabTypes, DEFAULT_MAX_GRAB_TYPES),
    maxCapsWords: checkLimit(what, "maxCapsWords", options.maxCapsWords, DEFAULT_MAX_CAPS_WORDS),
    maxRequests: checkLimit(what, "maxRequests", options.maxRequests, DEFAULT_MAX_REQUESTS),
  };
}

/** Checks a selection argument (0, 1 or 2). */
export function checkSelection(selection: number): number {
  if (selection !== 0 && selection !== 1 && selection !== 2) {
    throw new RangeError(`Cannot use selection: it must be 0, 1 or 2, got ${selection}`);
  }
  return selection;
}

/** Checks a list of offered clipboard types: `max` of them, each from 1 to `maxType`. */
export function checkTypes(types: readonly number[], max: number, maxType = 0xffff_ffff): void {
  if (!Array.isArray(types) || types.length === 0 || types.length > max) {
    throw new RangeError(
      `Cannot grab: offer from 1 to ${max} types, got ${
        Array.isArray(types) ? types.length : types
      }`,
    );
  }
  for (const type of types) {
    if (!Number.isInteger(type) || type < 1 || type > maxType) {
      throw new RangeError(
        `Cannot grab: types must be clipboard types from 1 to ${maxType}, got ${type}`,
      );
    }
  }
}

const buttonMasks: Record<MouseButtonName, number> = {
  left: MouseButton.LEFT,
  middle: MouseButton.MIDDLE,
  right: MouseButton.RIGHT,
  up: MouseButton.UP,
  down: MouseButton.DOWN,
  side: MouseButton.SIDE,
  extra: MouseButton.EXTRA,
};

/** Checks a mouse state and resolves button names to a mask. */
export function checkMouse(input: MouseInput): MouseState {
  const { x, y, display = 0 } = input;
  const u32 = (v: number) => Number.isInteger(v) && v >= 0 && v <= 0xffff_ffff;
  if (!u32(x) || !u32(y)) {
    throw new RangeError(`Cannot send mouse state: x and y must be u32, got ${x}, ${y}`);
  }
  if (!Number.isInteger(display) || display < 0 || display > 255) {
    throw new RangeError(`Cannot send mouse state: display must be a u8, got ${display}`);
  }
  let buttons = 0;
  if (typeof input.buttons === "number") {
    if (!u32(input.buttons)) {
      throw new RangeError(
        `Cannot send mouse state: buttons must be a u32 mask, got ${input.buttons}`,
      );
    }
    buttons = input.buttons;
  } else {
    for (const name of input.buttons ?? []) {
      const mask = buttonMasks[name];
      if (mask === undefined) {
        throw new RangeError(`Cannot send mouse state: unknown button "${name}"`);
      }
      buttons |= mask;
    }
  }
  return { x, y, buttons, display };
}

/** Checks a timeout in milliseconds (0 for none). */
export function checkTimeout(timeout: number): number {
  if (!Number.isFinite(timeout) || timeout < 0) {
    throw new RangeError(
      `Cannot use timeout: it must be a number of milliseconds ≥ 0, got ${timeout}`,
    );
  }
  return timeout;
}

/** A clipboard provider, as the handlers define it. */
export type Provider = (
  selection: Selection,
  type: number,
) => Uint8Array | undefined | Promise<Uint8Array | undefined>;

/**
 * Calls a clipboard provider. `done` runs once, with the data (or
 * `undefined`) and the error if it failed; when the provider answers later,
 * `done` runs inside `outbox.run` so what it sends leaves as one batch.
 */
export function callProvider(
  provide: Provider | undefined,
  selection: Selection,
  type: number,
  outbox: Outbox,
  done: (data: Uint8Array | undefined, error?: unknown) => void,
): void {
  const settle = (data: unknown, error?: unknown) => {
    if (error === undefined && data !== undefined && !(data instanceof Uint8Array)) {
      return done(
        undefined,
        new TypeError("The clipboard provider must return a Uint8Array or undefined"),
      );
    }
    done(data as Uint8Array | undefined, error);
  };
  if (provide === undefined) return done(undefined);
  let result: ReturnType<Provider>;
  try {
    result = provide(selection, type);
  } catch (error) {
    return done(undefined, error ?? new Error("The clipboard provider threw"));
  }
  if (result instanceof Promise) {
    result.then(
      (data) => outbox.run(() => settle(data)),
      (error) =>
        outbox.run(() => settle(undefined, error ?? new Error("The clipboard provider rejected"))),
    );
  } else {
    settle(result);
  }
}

/** The clipboard layout both sides announced, with the session's decoding limits. */
export function negotiatedLayout(
  own: readonly number[],
  peer: readonly number[] | undefined,
  limits: Required<SessionLimits>,
): PayloadOptions {
  const both = (bit: number) =>
    peer !== undefined && hasCapability(peer, bit) && hasCapability(own, bit);
  return {
    selection: both(Capability.CLIPBOARD_SELECTION),
    grabSerial: both(Capability.CLIPBOARD_GRAB_SERIAL),
    maxGrabTypes: limits.maxGrabTypes,
    maxCapsWords: limits.maxCapsWords,
  };
}

/**
 * Checks a paste of `type` on `selection` against what the peer offers,
 * registers it and asks the peer through `outbox` (unless the caller sends it
 * later: `undefined`). A paste that is refused (not offered, too many
 * outstanding, its signal already aborted) is rejected and nothing is sent:
 * `taken` is false then. Failures come as rejections.
 */
export function startRequest(
  requests: RequestTable,
  offer: ClipboardOffer | undefined,
  peer: "host" | "guest",
  selection: number,
  type: number,
  timeout: number,
  signal: AbortSignal | undefined,
  outbox: Outbox | undefined,
  layout: PayloadOptions,
): { result: Promise<Uint8Array>; taken: boolean } {
  if (!offer?.types.includes(type)) {
    const error = new ClipboardError(
      "NOT_OFFERED",
      `Cannot paste: the ${peer} does not offer type ${type} on selection ${selection}`,
      selection,
    );
    return { result: Promise.reject(error), taken: false };
  }
  const refused = requests.refusal(selection, signal);
  if (refused !== undefined) return { result: Promise.reject(refused), taken: false };
  const result = requests.add(selection, type, timeout, signal);
  outbox?.send(requestMessage(selection, type, layout));
  return { result, taken: true };
}

let lastRequest:
  | { selection: number; type: number; layout: PayloadOptions; message: AgentMessage }
  | undefined;

/**
 * The CLIPBOARD_REQUEST message for `selection` and `type` in a session's
 * `layout`. A session that pastes the same type again and again sends the
 * same message object: encoding each anew took about 75 ns of the 550 a
 * grab, request and answer cost the host session (Deno 2.9.6).
 */
function requestMessage(
  selection: number,
  type: number,
  layout: PayloadOptions,
): AgentMessage {
  const last = lastRequest;
  if (last?.type === type && last.selection === selection && last.layout === layout) {
    return last.message;
  }
  const message = encodeMessage({ kind: "clipboard_request", selection, type }, layout);
  lastRequest = { selection, type, layout, message };
  return message;
}

/** Fails every request of a session that ended. */
export function failClosed(requests: RequestTable, reason: unknown): void {
  const options = reason === undefined ? undefined : { cause: reason };
  requests.failAll((s) =>
    new ClipboardError("CLOSED", "Cannot paste: the session ended", s, options)
  );
}
