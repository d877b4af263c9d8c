// This module is browser compatible.

import { checkSelection } from "./_common.ts";
import { HostCore } from "./_host_core.ts";
import { setHostCoreOf } from "./_session_cores.ts";
import type { ClipboardOffer } from "./clipboard_offer.ts";
import type { HostSessionOptions } from "./host_session_options.ts";
import type { MouseInput } from "./mouse_input.ts";
import type { RequestOptions } from "./request_options.ts";
import type { ResumedRequest } from "./resumed_request.ts";
import type { AgentMessage } from "../wire/agent_message.ts";

export type { HostClipboardHandler } from "./host_clipboard_handler.ts";
export type { HostSessionOptions } from "./host_session_options.ts";
export type { RequestOptions } from "./request_options.ts";
export type { RestoreMode } from "./restore_mode.ts";

/**
 * The host endpoint of the vdagent protocol, the role QEMU's `qemu-vdagent`
 * chardev plays: a stream stage whose writable side takes the guest's
 * messages (from a {@linkcode MessageAssembler}) and whose readable side
 * yields messages for the guest (into a {@linkcode MessageFramer}).
 *
 * It announces its capabilities when created, answers the guest's, tracks
 * clipboard ownership per selection with grab serials, serves the guest's
 * pastes from the handler's `provide`, fetches the guest's clipboard with
 * {@linkcode request}, and sends absolute mouse states. It follows QEMU
 * except where QEMU loses things: serials compare with wrap-around, a paste
 * with no data is answered with a release instead of being left hanging, no
 * message is dropped silently, and every request settles.
 *
 * @example A host and a guest back to back: the guest pastes the host's text
 * ```ts
 * import { ClipboardType, GuestSession, HostSession, Selection } from "@vdagent/streams";
 * import assert from "node:assert/strict";
 *
 * const text = new TextEncoder().encode("from the host");
 * const host = new HostSession({ clipboard: { provide: () => text } });
 * const ready = Promise.withResolvers<void>();
 * const pasted = Promise.withResolvers<Uint8Array>();
 * const guest = new GuestSession({
 *   onHostCaps: () => ready.resolve(),
 *   clipboard: { onHostGrab: (sel, types) => pasted.resolve(guest.request(sel, types[0]!)) },
 * });
 * const wires = new AbortController();
 * host.readable.pipeTo(guest.writable, wires).catch(() => {});
 * guest.readable.pipeTo(host.writable, wires).catch(() => {});
 *
 * await ready.promise;
 * host.grab(Selection.CLIPBOARD, [ClipboardType.UTF8_TEXT]);
 * assert.equal(new TextDecoder().decode(await pasted.promise), "from the host");
 * wires.abort();
 * ```
 */
export class HostSession {
  readonly #core: HostCore;

  static {
    setHostCoreOf((session) => session.#core);
  }

  /**
   * Creates a host session; it announces its capabilities at once.
   *
   * @param options Features, handlers and limits.
   */
  constructor(options: HostSessionOptions = {}) {
    this.#core = new HostCore(options);
  }

  /** The guest's messages, one or a batch per write. */
  get writable(): WritableStream<AgentMessage | readonly AgentMessage[]> {
    return this.#core.writable;
  }

  /** The messages for the guest, in batches. */
  get readable(): ReadableStream<AgentMessage[]> {
    return this.#core.readable;
  }

  /**
   * The host's requests that were outstanding when the checkpoint this
   * session was restored from was taken: their data arrives here.
   *
   * @example A paste asked for by one relay, answered to the next
   * ```ts
   * import { ClipboardType, createGuestPipeline, createHostPipeline, Selection } from "@vdagent/streams";
   * import assert from "node:assert/strict";
   *
   * const toGuest = new TransformStream<Uint8Array, Uint8Array>();
   * const toHost = new TransformStream<Uint8Array, Uint8Array>();
   * const transport = { readable: toHost.readable, writable: toGuest.writable };
   * let answer: ((data: Uint8Array) => void) | undefined; // the guest answers when told to
   * const guest = createGuestPipeline({ readable: toGuest.readable, writable: toHost.writable }, {
   *   clipboard: { provide: () => new Promise<Uint8Array>((resolve) => answer = resolve) },
   * });
   * const a = createHostPipeline(transport);
   * while (a.session.guestCaps === undefined) await new Promise((r) => setTimeout(r, 1));
   * guest.session.grab(Selection.CLIPBOARD, [ClipboardType.UTF8_TEXT]);
   * while (!a.session.guestOffer(Selection.CLIPBOARD)) await new Promise((r) => setTimeout(r, 1));
   * a.session.request(Selection.CLIPBOARD, ClipboardType.UTF8_TEXT).catch(() => {}); // fails: handed off
   * while (answer === undefined) await new Promise((r) => setTimeout(r, 1));
   * const b = createHostPipeline(transport, { restore: await a.checkpoint(), resume: "continued" });
   * const [resumed] = b.session.resumedRequests;
   * assert.equal(resumed?.type, ClipboardType.UTF8_TEXT);
   * answer!(new TextEncoder().encode("copied before the hand-off"));
   * assert.equal(new TextDecoder().decode(await resumed!.result), "copied before the hand-off");
   * await b.close();
   * await guest.done;
   * ```
   */
  get resumedRequests(): readonly ResumedRequest[] {
    return this.#core.resumedRequests;
  }

  /** The capabilities this session announced to the guest. */
  get hostCaps(): readonly number[] {
    return this.#core.ownCaps;
  }

  /** The guest's capability words, or `undefined` until it announces them. */
  get guestCaps(): readonly number[] | undefined {
    return this.#core.peerCaps;
  }

  /** The negotiated clipboard layout: selection prefix and grab serials. */
  get layout(): { readonly selection: boolean; readonly grabSerial: boolean } {
    const { selection, grabSerial } = this.#core.wireLayout;
    return { selection: selection!, grabSerial: grabSerial! };
  }

  /** What the guest offers on `selection`, or `undefined` if it does not own it. */
  guestOffer(selection: number): ClipboardOffer | undefined {
    return this.#core.slots[checkSelection(selection)]!.peerOffer;
  }

  /** The types the host offers on `selection`, or `undefined` if it does not own it. */
  hostOffer(selection: number): readonly number[] | undefined {
    return this.#core.slots[checkSelection(selection)]!.ownOffer;
  }

  /**
   * The host copies: it now owns `selection` and offers `types`. The guest
   * pastes through the handler's `provide`. Before the guest has announced its
   * capabilities the grab is kept and sent when they arrive.
   *
   * @param selection `Selection` value.
   * @param types Offered `ClipboardType` values, at least one, each from 1 to 31
   * (a checkpoint carries them as a mask; the protocol defines 1 to 8).
   * @throws {RangeError} For a bad selection or list of types.
   */
  grab(selection: number, types: readonly number[]): void {
    this.#core.grab(selection, types);
  }

  /**
   * The host gives `selection` up: the guest is told, and pending guest
   * pastes of it fail fast. Does nothing if the host does not own it.
   *
   * @param selection `Selection` value.
   */
  release(selection: number): void {
    this.#core.release(selection);
  }

  /**
   * The host pastes: asks the guest for the data of `type` on `selection`.
   * Rejects with a {@linkcode ClipboardError}: `NOT_OFFERED` if the guest
   * does not offer it, `RELEASED`, `TIMEOUT`, `CLOSED`, `PEER_RESET`,
   * `ABORTED`, `NO_DATA` or `TOO_LARGE`. It never stays pending.
   *
   * @param selection `Selection` value.
   * @param type `ClipboardType` value.
   * @param options Timeout and cancellation.
   * @returns The guest's data.
   */
  request(selection: number, type: number, options?: RequestOptions): Promise<Uint8Array> {
    return this.#core.request(selection, type, options);
  }

  /**
   * Moves the guest's pointer: sends MOUSE_STATE once the guest announced
   * MOUSE_STATE; until then the latest state is kept and sent when its
   * capabilities arrive.
   *
   * @param state Position, buttons (a `MouseButton` mask or names such as
   * `"left"`) and display.
   * @returns `false` if the session has ended (or was handed off), so the
   * state goes nowhere; `true` otherwise.
   */
  mouse(state: MouseInput): boolean {
    return this.#core.mouse(state);
  }
}
