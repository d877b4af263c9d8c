// This module is browser compatible.

import { Capability } from "../protocol/capability.ts";
import { capabilityWords } from "../protocol/capability_words.ts";
import { ClipboardType } from "../protocol/clipboard_type.ts";
import { decodePayload } from "../protocol/_decode_payload.ts";
import { encodeMessage } from "../protocol/encode_message.ts";
import { hasCapability } from "../protocol/has_capability.ts";
import type { MessagePayload, PayloadOptions } from "../protocol/message_payload.ts";
import { MessageType } from "../protocol/message_type.ts";
import { ReplyError } from "../protocol/reply_error.ts";
import { agentMessage } from "../wire/_message_reader.ts";
import type { AgentMessage } from "../wire/agent_message.ts";
import {
  callProvider,
  checkSelection,
  checkTimeout,
  checkTypes,
  DEFAULT_REQUEST_TIMEOUT,
  failClosed,
  grabPayload,
  grabsToSend,
  type MouseState,
  negotiatedLayout,
  type Provider,
  sessionLimits,
  startRequest,
} from "./_common.ts";
import { sessionInternals } from "./_internals.ts";
import { Outbox, sessionStreamInit } from "./_outbox.ts";
import { RequestTable } from "./_requests.ts";
import { nextSerial } from "./_serial.ts";
import { ClipboardError } from "./clipboard_error.ts";
import type { ClipboardOffer } from "./clipboard_offer.ts";
import type { RequestOptions } from "./host_session.ts";
import type { SessionDiagnostic } from "./session_diagnostic.ts";
import type { SessionLimits } from "./session_limits.ts";

/** What a {@linkcode GuestSession} tells the guest about the host's clipboard. */
export interface GuestClipboardHandler {
  /** The host now owns `selection` and offers `types`. */
  onHostGrab?(selection: number, types: readonly number[]): void;
  /** The host no longer owns `selection`. */
  onHostRelease?(selection: number): void;
  /**
   * The host pastes what the guest grabbed: return the data of `type`, or
   * `undefined` if there is none (the host then gets type NONE, as the Linux
   * agent answers). May return a promise.
   */
  provide?(
    selection: number,
    type: number,
  ): Uint8Array | undefined | Promise<Uint8Array | undefined>;
}

/** Options of {@linkcode GuestSession}. */
export interface GuestSessionOptions extends SessionLimits {
  /** Announce CLIPBOARD_SELECTION. Default `true`; `false` behaves like the Windows agent. */
  selection?: boolean;
  /** Announce CLIPBOARD_GRAB_SERIAL. Default `true`; `false` behaves like the Windows agent. */
  grabSerial?: boolean;
  /** Share the clipboard: `true`, `false`, or a handler, which implies `true`. Default `true`. */
  clipboard?: boolean | GuestClipboardHandler;
  /** Capability words to announce instead of the Linux agent's set. */
  caps?: readonly number[];
  /** Milliseconds a guest `request` waits for the host's data; 0 waits forever. Default 30 000. */
  requestTimeout?: number;
  /** The host moved the pointer. */
  onMouse?(state: { x: number; y: number; buttons: number; display: number }): void;
  /** The host announced its capabilities; `request` means a new client connected. */
  onHostCaps?(caps: readonly number[], request: boolean): void;
  /** Every message the session does not handle itself. */
  onMessage?(payload: MessagePayload, message: AgentMessage): void;
  /** Something the session ignored or refused. */
  onDiagnostic?(diagnostic: SessionDiagnostic): void;
}

/** The Linux agent's capabilities (0x00038DE7), without what the options switch off. */
function linuxCaps(selection: boolean, grabSerial: boolean): number[] {
  const bits: number[] = [
    Capability.MOUSE_STATE,
    Capability.MONITORS_CONFIG,
    Capability.REPLY,
    Capability.CLIPBOARD_BY_DEMAND,
    Capability.SPARSE_MONITORS_CONFIG,
    Capability.GUEST_LINEEND_LF,
    Capability.MAX_CLIPBOARD,
    Capability.AUDIO_VOLUME_SYNC,
    Capability.GRAPHICS_DEVICE_INFO,
    Capability.CLIPBOARD_NO_RELEASE_ON_REGRAB,
  ];
  if (selection) bits.push(Capability.CLIPBOARD_SELECTION);
  if (grabSerial) bits.push(Capability.CLIPBOARD_GRAB_SERIAL);
  return capabilityWords(bits);
}

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
export class GuestSession
  extends TransformStream<AgentMessage | readonly AgentMessage[], AgentMessage[]> {
  readonly #options: GuestSessionOptions;
  readonly #clipboardOn: boolean;
  readonly #handler: GuestClipboardHandler;
  readonly #limits: Required<SessionLimits>;
  readonly #timeout: number;
  readonly #outbox: Outbox;
  readonly #requests: RequestTable;
  readonly #caps: number[];
  #hostCaps: number[] | undefined;
  #layout: PayloadOptions;
  #serial = [0, 0, 0];
  #owned: (readonly number[] | undefined)[] = [undefined, undefined, undefined];
  #ownedSent = [false, false, false];
  #offers: (ClipboardOffer | undefined)[] = [undefined, undefined, undefined];
  #hostMax: number | undefined;
  #closed = false;
  /** Bumped when the host's caps arrive or it goes away: older answers are dropped. */
  #epoch = 0;

  /**
   * Creates a guest session; it announces its capabilities at once.
   *
   * @param options Capabilities, handlers and limits.
   */
  constructor(options: GuestSessionOptions = {}) {
    const outbox = new Outbox();
    super(
      ...sessionStreamInit(
        outbox,
        (messages) => this.#receiveAll(messages),
        (reason) => this.#close(reason),
      ),
    );
    this.#outbox = outbox;
    sessionInternals.set(this, {
      attach: (deliver) => outbox.attach(deliver),
      receive: (port, type, opaque, bytes, start, end, skipped) =>
        this.#receive(port, type, opaque, bytes, start, end, skipped, undefined),
      run: (fn) => outbox.run(fn),
      close: (reason) => this.#close(reason),
      queuedBytes: () => outbox.queuedBytes,
    });
    this.#options = options;
    this.#clipboardOn = options.clipboard !== false;
    this.#handler = typeof options.clipboard === "object" ? options.clipboard : {};
    this.#limits = sessionLimits("GuestSession", options);
    this.#requests = new RequestTable(this.#limits.maxRequests);
    this.#timeout = checkTimeout(options.requestTimeout ?? DEFAULT_REQUEST_TIMEOUT);
    this.#caps = options.caps === undefined
      ? linuxCaps(options.selection ?? true, options.grabSerial ?? true)
      : [...options.caps];
    this.#layout = this.#layoutFor(undefined);
    // Sent at the end of this turn, so a pipeline can take the output first.
    this.#send({ kind: "announce_capabilities", request: true, caps: this.#caps });
  }

  /** The capabilities this guest announced. */
  get caps(): readonly number[] {
    return this.#caps;
  }

  /** The host's capability words, or `undefined` until it announces them. */
  get hostCaps(): readonly number[] | undefined {
    return this.#hostCaps;
  }

  /** The guest's next grab serial per selection (`clipboard_serial` in the Linux agent). */
  get serials(): readonly number[] {
    return [...this.#serial];
  }

  /** What the host offers on `selection`, or `undefined`. */
  hostOffer(selection: number): ClipboardOffer | undefined {
    return this.#offers[checkSelection(selection)];
  }

  /** The types the guest offers on `selection`, or `undefined`. */
  guestOffer(selection: number): readonly number[] | undefined {
    return this.#owned[checkSelection(selection)];
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
    if (this.#closed) return;
    this.#clientGone();
  }

  /**
   * The guest user copies: the guest owns `selection` and offers `types`.
   *
   * @param selection `Selection` value.
   * @param types Offered `ClipboardType` values.
   */
  grab(selection: number, types: readonly number[]): void {
    checkSelection(selection);
    checkTypes(types, this.#limits.maxGrabTypes);
    this.#checkClipboard(selection, "grab");
    this.#owned[selection] = [...types];
    this.#ownedSent[selection] = false;
    this.#dropHostOffer(selection);
    if (this.#hostCaps !== undefined) this.#sendGrab(selection);
  }

  /**
   * The guest gives `selection` up. Does nothing if it does not own it.
   *
   * @param selection `Selection` value.
   */
  release(selection: number): void {
    checkSelection(selection);
    if (this.#closed || this.#owned[selection] === undefined) return;
    const sent = this.#ownedSent[selection];
    this.#owned[selection] = undefined;
    this.#ownedSent[selection] = false;
    if (sent) this.#send({ kind: "clipboard_release", selection });
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
    try {
      checkSelection(selection);
      this.#checkClipboard(selection, "request");
    } catch (error) {
      return Promise.reject(error);
    }
    const timeout = options?.timeout === undefined ? this.#timeout : checkTimeout(options.timeout);
    return startRequest(
      this.#requests,
      this.#offers[selection],
      "host",
      selection,
      type,
      timeout,
      options?.signal,
      this.#outbox,
      this.#layout,
    ).result;
  }

  #checkClipboard(selection: number, action: string): void {
    if (this.#closed) {
      throw new ClipboardError("CLOSED", `Cannot ${action}: the session ended`, selection);
    }
    if (!this.#clipboardOn || !hasCapability(this.#caps, Capability.CLIPBOARD_BY_DEMAND)) {
      throw new ClipboardError("DISABLED", `Cannot ${action}: the clipboard is off`, selection);
    }
    const host = this.#hostCaps;
    if (host === undefined) return;
    if (!hasCapability(host, Capability.CLIPBOARD_BY_DEMAND)) {
      throw new ClipboardError(
        "DISABLED",
        `Cannot ${action}: the host has no clipboard by demand`,
        selection,
      );
    }
    if (selection !== 0 && !this.#layout.selection) {
      throw new ClipboardError(
        "UNSUPPORTED",
        `Cannot ${action}: selection ${selection} is not negotiated`,
        selection,
      );
    }
  }

  #sendGrab(selection: number): void {
    this.#send(grabPayload(selection, this.#owned[selection]!, this.#layout, this.#serial, true));
    this.#ownedSent[selection] = true;
  }

  #layoutFor(peer: readonly number[] | undefined): PayloadOptions {
    return negotiatedLayout(this.#caps, peer, this.#limits);
  }

  #send(payload: MessagePayload): void {
    this.#outbox.send(encodeMessage(payload, this.#layout));
  }

  #receiveAll(messages: readonly AgentMessage[]): void {
    for (const m of messages) {
      this.#receive(m.port, m.type, m.opaque, m.data, 0, m.data.length, m.skipped, m);
    }
  }

  /** Handles the message whose payload is `bytes[start, end)`; `message` is it, if the caller has it. */
  #receive(
    port: number,
    type: number,
    opaque: bigint,
    bytes: Uint8Array,
    start: number,
    end: number,
    skipped: number | undefined,
    message: AgentMessage | undefined,
  ): void {
    if (this.#closed) return;
    const payload = decodePayload(type, bytes, start, end, skipped, this.#layout);
    switch (payload.kind) {
      case "announce_capabilities":
        return this.#onCaps(payload.caps, payload.request);
      case "mouse_state": {
        const { x, y, buttons, display } = payload;
        const state: MouseState = { x, y, buttons, display };
        this.#options.onMouse?.(state);
        return;
      }
      case "clipboard_grab":
      case "clipboard_request":
      case "clipboard":
      case "clipboard_release": {
        const negotiated = this.#clipboardOn && this.#hostCaps !== undefined &&
          hasCapability(this.#hostCaps, Capability.CLIPBOARD_BY_DEMAND);
        if (!negotiated || payload.selection > 2) {
          this.#options.onDiagnostic?.({
            code: negotiated ? "BAD_SELECTION" : "CLIPBOARD_DISABLED",
            message: `Ignored ${payload.kind}`,
            payload,
          });
          return;
        }
        const selection = payload.selection;
        if (payload.kind === "clipboard_grab") {
          return this.#onHostGrab(selection, payload.types, payload.serial);
        }
        if (payload.kind === "clipboard_request") {
          return this.#onHostRequest(selection, payload.type);
        }
        if (payload.kind === "clipboard_release") {
          this.#requests.failAll(
            (s) =>
              new ClipboardError("RELEASED", "Cannot paste: the host released the selection", s),
            selection,
          );
          return this.#dropHostOffer(selection);
        }
        if (!this.#requests.answer(selection, payload.type, payload.data)) {
          this.#options.onDiagnostic?.({
            code: "UNSOLICITED_DATA",
            message: `Ignored clipboard data for selection ${selection}: no request waits for it`,
            selection,
            payload,
          });
        }
        return;
      }
      case "max_clipboard":
        this.#hostMax = payload.max < 0 ? undefined : payload.max;
        break;
      case "client_disconnected":
        this.#clientGone();
        break;
      case "monitors_config":
        this.#send({
          kind: "reply",
          messageType: MessageType.MONITORS_CONFIG,
          error: ReplyError.SUCCESS,
        });
        break;
      case "invalid":
        this.#options.onDiagnostic?.({
          code: "INVALID_PAYLOAD",
          message: `Ignored: ${payload.reason}`,
          payload,
        });
        break;
    }
    this.#options.onMessage?.(
      payload,
      message ?? agentMessage(port, type, opaque, bytes, start, end, skipped),
    );
  }

  #onCaps(caps: readonly number[], request: boolean): void {
    this.#epoch++;
    this.#hostCaps = [...caps];
    this.#layout = this.#layoutFor(caps);
    this.#options.onHostCaps?.(this.#hostCaps, request);
    if (request) {
      // A new client: answer, forget it all, and start the serials again.
      this.#send({ kind: "announce_capabilities", request: false, caps: this.#caps });
      this.#serial = [0, 0, 0];
      this.#clientGone();
    }
    // Grabs made before the host was known leave now, if they can.
    const negotiated = this.#clipboardOn && hasCapability(caps, Capability.CLIPBOARD_BY_DEMAND);
    for (const s of grabsToSend(this.#owned, this.#ownedSent, negotiated, this.#layout, false)) {
      this.#sendGrab(s);
    }
  }

  /**
   * The client went away, as the Linux agent's session agent hears it: its
   * offers and the guest's pastes from it are gone, and the guest releases
   * what it offered. Serials are kept.
   */
  #clientGone(): void {
    this.#epoch++;
    this.#requests.failAll((s) =>
      new ClipboardError("PEER_RESET", "Cannot paste: the client went away", s)
    );
    for (let s = 0; s < 3; s++) {
      this.#dropHostOffer(s);
      if (!this.#ownedSent[s]) continue;
      this.#owned[s] = undefined;
      this.#ownedSent[s] = false;
      if (s === 0 || this.#layout.selection) {
        this.#send({ kind: "clipboard_release", selection: s });
      }
    }
  }

  #dropHostOffer(selection: number): void {
    if (this.#offers[selection] === undefined) return;
    this.#offers[selection] = undefined;
    this.#handler.onHostRelease?.(selection);
  }

  #onHostGrab(selection: number, types: readonly number[], serial: number | undefined): void {
    if (serial !== undefined) {
      const expected = this.#serial[selection]!;
      if (serial === expected) {
        this.#serial[selection] = nextSerial(expected);
      } else if (serial !== ((expected - 1) >>> 0)) {
        this.#options.onDiagnostic?.({
          code: "GRAB_DISCARDED",
          message:
            `Discarded the host's grab of selection ${selection}: serial ${serial}, expected ${expected}`,
          selection,
        });
        return;
      }
    }
    this.#owned[selection] = undefined;
    this.#ownedSent[selection] = false;
    this.#offers[selection] = serial === undefined ? { types } : { serial, types };
    this.#handler.onHostGrab?.(selection, types);
  }

  #onHostRequest(selection: number, type: number): void {
    const none = () =>
      this.#send({
        kind: "clipboard",
        selection,
        type: ClipboardType.NONE,
        data: new Uint8Array(0),
      });
    if (!this.#owned[selection]?.includes(type)) return none();
    const epoch = this.#epoch;
    callProvider(
      this.#handler.provide as Provider | undefined,
      selection,
      type,
      this.#outbox,
      (data, error) => {
        // The host that asked is gone, or now lays messages out otherwise.
        if (this.#closed || epoch !== this.#epoch) return;
        if (error !== undefined) {
          this.#options.onDiagnostic?.({
            code: "PROVIDER_FAILED",
            message: "The clipboard provider failed",
            selection,
            error,
          });
        }
        if (data === undefined) return none();
        // Over the host's limit, the Linux agent sends the type with no data.
        const tooLarge = this.#hostMax !== undefined && data.length > this.#hostMax;
        this.#send({
          kind: "clipboard",
          selection,
          type,
          data: tooLarge ? new Uint8Array(0) : data,
        });
      },
    );
  }

  #close(reason?: unknown): void {
    if (this.#closed) return;
    this.#closed = true;
    failClosed(this.#requests, reason);
  }
}
