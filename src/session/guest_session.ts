// This module is browser compatible.

import { checkSelection } from "./_common.ts";
import { GuestCore } from "./_guest_core.ts";
import { setGuestCoreOf } from "./_session_cores.ts";
import type { ClipboardOffer } from "./clipboard_offer.ts";
import type { GuestSessionOptions } from "./guest_session_options.ts";
import type { RequestOptions } from "./request_options.ts";
import type { AgentMessage } from "../wire/agent_message.ts";

export type { GuestClipboardHandler } from "./guest_clipboard_handler.ts";
export type { GuestSessionOptions } from "./guest_session_options.ts";

/**
 * The guest agent's side of the vdagent protocol, following the Linux agent
 * (`spice-vdagentd` with its session agent): a stream stage whose writable
 * side takes the host's messages and whose readable side yields messages for
 * the host. Tests and demos use it as an in-process guest; it is also the
 * start of a guest agent written in TypeScript.
 *
 * Like the Linux agent it announces its capabilities with request=1 when
 * created, treats the host's request=1 as a new client (serials back to 0,
 * its own clipboard released), accepts a host grab whose serial is the
 * expected one or one less ("client wins") and discards any other, and
 * answers a paste it cannot serve with type NONE.
 *
 * @example The guest copies and the host pastes
 * ```ts
 * import { ClipboardType, GuestSession, HostSession, Selection } from "@vdagent/streams";
 * import assert from "node:assert/strict";
 *
 * const ready = Promise.withResolvers<void>();
 * const offered = Promise.withResolvers<number>();
 * const guest = new GuestSession({
 *   onHostCaps: () => ready.resolve(),
 *   clipboard: { provide: () => new TextEncoder().encode("guest text") },
 * });
 * const host = new HostSession({ clipboard: { onGuestGrab: (sel) => offered.resolve(sel) } });
 * const wires = new AbortController();
 * host.readable.pipeTo(guest.writable, wires).catch(() => {});
 * guest.readable.pipeTo(host.writable, wires).catch(() => {});
 *
 * await ready.promise;
 * guest.grab(Selection.CLIPBOARD, [ClipboardType.UTF8_TEXT]);
 * const data = await host.request(await offered.promise, ClipboardType.UTF8_TEXT);
 * assert.equal(new TextDecoder().decode(data), "guest text");
 * wires.abort();
 * ```
 */
export class GuestSession {
  readonly #core: GuestCore;

  static {
    setGuestCoreOf((session) => session.#core);
  }

  /**
   * Creates a guest session; it announces its capabilities at once.
   *
   * @param options Capabilities, handlers and limits.
   */
  constructor(options: GuestSessionOptions = {}) {
    this.#core = new GuestCore(options);
  }

  /** The host's messages, one or a batch per write. */
  get writable(): WritableStream<AgentMessage | readonly AgentMessage[]> {
    return this.#core.writable;
  }

  /** The messages for the host, in batches. */
  get readable(): ReadableStream<AgentMessage[]> {
    return this.#core.readable;
  }

  /** The capabilities this guest announced. */
  get caps(): readonly number[] {
    return this.#core.ownCaps;
  }

  /** The host's capability words, or `undefined` until it announces them. */
  get hostCaps(): readonly number[] | undefined {
    return this.#core.peerCaps;
  }

  /** The guest's next grab serial per selection (`clipboard_serial` in the Linux agent). */
  get serials(): readonly number[] {
    return this.#core.slots.map((slot) => slot.serial);
  }

  /** What the host offers on `selection`, or `undefined`. */
  hostOffer(selection: number): ClipboardOffer | undefined {
    return this.#core.slots[checkSelection(selection)]!.peerOffer;
  }

  /** The types the guest offers on `selection`, or `undefined`. */
  guestOffer(selection: number): readonly number[] | undefined {
    return this.#core.slots[checkSelection(selection)]!.ownOffer;
  }

  /**
   * The guest's port closed and reopened (the host side reconnected), as the
   * Linux agent's daemon reports it to its session agent: the host's offers
   * and pending pastes are dropped, and the guest releases what it offered.
   * Serials are kept, and no capabilities are exchanged. A guest pipeline
   * over the new connection must start with fresh reassembly state.
   *
   * @example The guest releases its offer and keeps its serials
   * ```ts
   * import { ClipboardType, createGuestPipeline, createHostPipeline, Selection } from "@vdagent/streams";
   * import assert from "node:assert/strict";
   *
   * const toGuest = new TransformStream<Uint8Array, Uint8Array>();
   * const toHost = new TransformStream<Uint8Array, Uint8Array>();
   * const released: number[] = [];
   * const relay = createHostPipeline({ readable: toHost.readable, writable: toGuest.writable }, {
   *   clipboard: { onGuestRelease: (selection) => void released.push(selection) },
   * });
   * const guest = createGuestPipeline({ readable: toGuest.readable, writable: toHost.writable });
   * const tick = () => new Promise((r) => setTimeout(r, 1));
   * while (guest.session.hostCaps === undefined) await tick();
   * guest.session.grab(Selection.CLIPBOARD, [ClipboardType.UTF8_TEXT]);
   * while (relay.session.guestOffer(Selection.CLIPBOARD) === undefined) await tick();
   * const serials = [...guest.session.serials];
   * guest.session.clientDisconnected(); // here the same host stands in for the next one
   * while (released.length === 0) await tick();
   * assert.deepEqual(released, [Selection.CLIPBOARD]);
   * assert.equal(guest.session.guestOffer(Selection.CLIPBOARD), undefined);
   * assert.deepEqual(guest.session.serials, serials);
   * await relay.close();
   * await guest.done;
   * ```
   */
  clientDisconnected(): void {
    this.#core.clientDisconnected();
  }

  /**
   * The guest user copies: the guest owns `selection` and offers `types`.
   *
   * @param selection `Selection` value.
   * @param types Offered `ClipboardType` values.
   */
  grab(selection: number, types: readonly number[]): void {
    this.#core.grab(selection, types);
  }

  /**
   * The guest gives `selection` up. Does nothing if it does not own it.
   *
   * @param selection `Selection` value.
   */
  release(selection: number): void {
    this.#core.release(selection);
  }

  /**
   * The guest user pastes what the host offers.
   *
   * @param selection `Selection` value.
   * @param type `ClipboardType` value.
   * @param options Timeout and cancellation.
   * @returns The host's data; rejects with a `ClipboardError`.
   */
  request(selection: number, type: number, options?: RequestOptions): Promise<Uint8Array> {
    return this.#core.request(selection, type, options);
  }
}
