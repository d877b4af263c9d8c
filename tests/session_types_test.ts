// Type-level checks: what the sessions give their callbacks is typed with the exported unions.
import { test } from "node:test";
import assert from "node:assert/strict";
import type {
  GuestClipboardHandler,
  HostClipboardHandler,
  ResumedRequest,
  Selection,
} from "../mod.ts";

/** `true` only if `A` and `B` are the same type. */
type Equals<A, B> = (<T>() => T extends A ? 1 : 2) extends (<T>() => T extends B ? 1 : 2) ? true
  : false;
type SelectionOf<F> = F extends (selection: infer S, ...rest: never[]) => unknown ? S : never;

test("HostClipboardHandler gives its callbacks the Selection union", () => {
  const given: [
    Equals<SelectionOf<NonNullable<HostClipboardHandler["onGuestGrab"]>>, Selection>,
    Equals<SelectionOf<NonNullable<HostClipboardHandler["onGuestRelease"]>>, Selection>,
    Equals<SelectionOf<NonNullable<HostClipboardHandler["provide"]>>, Selection>,
    Equals<ResumedRequest["selection"], Selection>,
  ] = [true, true, true, true];
  assert.deepEqual(given, [true, true, true, true]);
});

test("GuestClipboardHandler gives its callbacks the Selection union", () => {
  const given: [
    Equals<SelectionOf<NonNullable<GuestClipboardHandler["onHostGrab"]>>, Selection>,
    Equals<SelectionOf<NonNullable<GuestClipboardHandler["onHostRelease"]>>, Selection>,
    Equals<SelectionOf<NonNullable<GuestClipboardHandler["provide"]>>, Selection>,
  ] = [true, true, true];
  assert.deepEqual(given, [true, true, true]);
});
