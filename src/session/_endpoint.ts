// This module is browser compatible.

import type { Selection } from "../protocol/selection.ts";
import { Capability } from "../protocol/capability.ts";
import { decodePayload } from "../protocol/_decode_payload.ts";
import { encodeMessage } from "../protocol/encode_message.ts";
import { hasCapability } from "../protocol/has_capability.ts";
import type { MessagePayload, PayloadOptions } from "../protocol/message_payload.ts";
import { agentMessage } from "../wire/_message_reader.ts";
import type { AgentMessage } from "../wire/agent_message.ts";
import {
  checkSelection,
  checkTimeout,
  checkTypes,
  DEFAULT_REQUEST_TIMEOUT,
  failClosed,
  negotiatedLayout,
  sessionLimits,
  startRequest,
} from "./_common.ts";
import type { EndpointOptions } from "./_endpoint_options.ts";
import { Outbox } from "./_outbox.ts";
import { type SessionStream, sessionStream } from "./_session_stream.ts";
import { RequestTable } from "./_requests.ts";
import { SelectionSlot } from "./_selection_slot.ts";
import { nextSerial } from "./_serial.ts";
import { ClipboardError } from "./clipboard_error.ts";
import type { RequestOptions } from "./request_options.ts";
import type { SessionDiagnostic } from "./session_diagnostic.ts";
import type { SessionLimits } from "./session_limits.ts";

/**
 * The role-neutral core of a vdagent endpoint: outbox, own requests, layout, limits, per-selection
 * slots, the receive skeleton, grab, release and request. A pipeline drives it synchronously
 * (`attach`, `receive`, `run`, `close`); its stream is built only when first read. `HostCore`
 * and `GuestCore` add each role's rules through the abstract methods.
 */
export abstract class Endpoint {
  /** Who the peer is, in messages. */
  protected abstract readonly peer: "host" | "guest";
  /** Whether a grab moves this side's serial on (the guest's counter does). */
  protected abstract readonly bumpsSerial: boolean;
  /** The largest type this side may offer. */
  protected readonly maxOwnType: number = 0xffff_ffff;
  /**
   * Where messages go. A session that nothing drives builds its stream at its
   * first output, which then waits on the readable side.
   */
  protected readonly outbox: Outbox = new Outbox(() => this.#transform());
  protected readonly limits: Required<SessionLimits>;
  protected readonly requests: RequestTable;
  protected readonly timeout: number;
  protected readonly clipboardOn: boolean;
  readonly slots: readonly [SelectionSlot, SelectionSlot, SelectionSlot] = [
    new SelectionSlot(),
    new SelectionSlot(),
    new SelectionSlot(),
  ];
  // The callbacks, not the options object: a host's may hold a large `restore`.
  readonly #onDiagnostic: EndpointOptions["onDiagnostic"];
  readonly #onMessage: EndpointOptions["onMessage"];
  /** The capabilities this side announced. */
  ownCaps: number[];
  /** The peer's capabilities, once it announced them. */
  peerCaps: number[] | undefined;
  /** The negotiated layout, with the decoding limits. */
  wireLayout: PayloadOptions;
  /** The limit the peer set with MAX_CLIPBOARD. */
  protected peerMax: number | undefined;
  closed = false;
  #stream: SessionStream | undefined;
  #attached = false;

  constructor(what: string, options: EndpointOptions, ownCaps: number[]) {
    this.#onDiagnostic = options.onDiagnostic;
    this.#onMessage = options.onMessage;
    this.clipboardOn = options.clipboard !== false;
    this.limits = sessionLimits(what, options);
    this.requests = new RequestTable(this.limits.maxRequests);
    this.timeout = checkTimeout(options.requestTimeout ?? DEFAULT_REQUEST_TIMEOUT);
    this.ownCaps = ownCaps;
    this.wireLayout = this.layoutFor(undefined);
  }

  /** The messages for the peer, in batches. */
  get readable(): ReadableStream<AgentMessage[]> {
    return this.#transform().readable;
  }

  /** The peer's messages, one or a batch per write. */
  get writable(): WritableStream<AgentMessage | readonly AgentMessage[]> {
    return this.#transform().writable;
  }

  /** This side copies: it owns `selection` and offers `types`; sent once the peer may have it. */
  grab(selection: number, types: readonly number[]): void {
    checkSelection(selection);
    checkTypes(types, this.limits.maxGrabTypes, this.maxOwnType);
    this.checkClipboard(selection, "grab");
    this.slots[selection]!.own(types);
    this.dropPeerOffer(selection);
    if (this.linkUp) this.sendGrab(selection);
  }

  /** This side gives `selection` up; the peer is told if it had the grab. */
  release(selection: number): void {
    checkSelection(selection);
    const slot = this.slots[selection]!;
    if (this.ended || slot.ownOffer === undefined) return;
    if (!slot.ownSent) return slot.disown(); // the peer never heard of it
    this.releaseOwn(selection);
  }

  /** This side pastes: asks the peer for `type` on `selection`; failures are rejections. */
  request(selection: number, type: number, options?: RequestOptions): Promise<Uint8Array> {
    try {
      checkSelection(selection);
      this.checkClipboard(selection, "request");
    } catch (error) {
      return Promise.reject(error);
    }
    const timeout = options?.timeout === undefined ? this.timeout : checkTimeout(options.timeout);
    const later = this.holdsRequests;
    const { result, taken } = startRequest(
      this.requests,
      this.slots[selection]!.peerOffer,
      this.peer,
      selection,
      type,
      timeout,
      options?.signal,
      later ? undefined : this.outbox,
      this.wireLayout,
    );
    // A refused request is never sent, now or later.
    if (later && taken) this.requestHeld(selection, type);
    return result;
  }

  /** Sends outbound batches to `deliver` instead of the stream's readable side. */
  attach(deliver: (batch: AgentMessage[]) => void): void {
    this.#attached = true;
    this.outbox.attach(deliver);
  }

  /** Runs `fn`, delivering what it sends as one batch. */
  run<T>(fn: () => T): T {
    return this.outbox.run(() => {
      this.starting();
      return fn();
    });
  }

  /** Payload bytes sent but not yet delivered. */
  queuedBytes(): number {
    return this.outbox.queuedBytes;
  }

  /** Ends the session: pending requests fail. */
  close(reason?: unknown): void {
    if (this.closed) return;
    this.closed = true;
    this.closing();
    failClosed(this.requests, reason);
    for (const slot of this.slots) slot.dropPeerRequests();
  }

  /** Handles the message whose payload is `bytes[start, end)`; `message` is it, if the caller has it. */
  receive(
    port: number,
    type: number,
    opaque: bigint,
    bytes: Uint8Array,
    start: number,
    end: number,
    skipped: number | undefined,
    message?: AgentMessage,
  ): void {
    if (this.closed) return;
    this.starting();
    const payload = decodePayload(type, bytes, start, end, skipped, this.wireLayout);
    switch (payload.kind) {
      case "announce_capabilities":
        return this.onCaps(payload.caps, payload.request);
      case "clipboard_grab":
      case "clipboard_request":
      case "clipboard":
      case "clipboard_release": {
        if (!this.clipboardNegotiated()) {
          return this.diagnose({
            code: "CLIPBOARD_DISABLED",
            message: `Ignored ${payload.kind}: the clipboard is not negotiated`,
            payload,
          });
        }
        const selection = payload.selection;
        if (selection > 2) {
          return this.diagnose({
            code: "BAD_SELECTION",
            message: `Ignored ${payload.kind} for selection ${selection}`,
            selection,
            payload,
          });
        }
        if (payload.kind === "clipboard_grab") {
          return this.onPeerGrab(selection, payload.types, payload.serial);
        }
        if (payload.kind === "clipboard_request") {
          return this.onPeerRequest(selection, payload.type);
        }
        if (payload.kind === "clipboard") {
          return this.onPeerData(selection, payload.type, payload.data, payload);
        }
        return this.peerReleased(selection);
      }
      case "max_clipboard":
        this.peerMax = payload.max < 0 ? undefined : payload.max;
        break;
      default:
        if (this.receiveOther(payload)) return;
        if (payload.kind === "invalid") {
          this.diagnose({
            code: "INVALID_PAYLOAD",
            message: `Ignored invalid message: ${payload.reason}`,
            payload,
          });
        }
    }
    this.#onMessage?.(
      payload,
      message ?? agentMessage(port, type, opaque, bytes, start, end, skipped),
    );
  }

  /** Closed, or sealed at a hand-off: nothing more leaves. */
  protected get ended(): boolean {
    return this.closed || this.outbox.sealed;
  }

  /** Whether grabs may go to the peer now. */
  protected get linkUp(): boolean {
    return this.peerCaps !== undefined;
  }

  /** Whether a `request` waits to be sent (it is then given to {@linkcode requestHeld}). */
  protected get holdsRequests(): boolean {
    return false;
  }

  /** A request taken while {@linkcode holdsRequests}: the role sends it later. */
  protected requestHeld(_selection: number, _type: number): void {}

  /** Runs before any input or batch: a host announces itself there. */
  protected starting(): void {}

  /** Runs when the session closes, before its requests fail. */
  protected closing(): void {}

  /** The peer announced its capabilities. */
  protected abstract onCaps(caps: readonly number[], request: boolean): void;
  /** The peer grabbed `selection`; `serial` with GRAB_SERIAL. */
  protected abstract onPeerGrab(selection: number, types: readonly number[], serial?: number): void;
  /** The peer pastes what this side grabbed. */
  protected abstract onPeerRequest(selection: number, type: number): void;
  /** The peer released `selection`; this side's requests of it have failed already. */
  protected abstract onPeerRelease(selection: number): void;
  /** Tells the handler the peer offers `types` on `selection`. */
  protected abstract tellGrab(selection: Selection, types: readonly number[]): void;
  /** Tells the handler the peer no longer owns `selection`. */
  protected abstract tellRelease(selection: Selection): void;
  /** Any other message: returns true if handled, so it goes to no `onMessage`. */
  protected abstract receiveOther(payload: MessagePayload): boolean;

  /** The peer's clipboard data: it answers this side's oldest request of `type`, or is unsolicited. */
  protected onPeerData(
    selection: number,
    type: number,
    data: Uint8Array,
    payload: MessagePayload,
  ): void {
    if (!this.requests.answer(selection, type, data)) this.unsolicited(selection, type, payload);
  }

  /** Clipboard data no request waits for. */
  protected unsolicited(selection: number, type: number, payload: MessagePayload): void {
    this.diagnose({
      code: "UNSOLICITED_DATA",
      message:
        `Ignored clipboard data of type ${type} for selection ${selection}: no request waits for it`,
      selection,
      payload,
    });
  }

  /** The peer released `selection`: this side's pastes of it fail, then the role's rules. */
  protected peerReleased(selection: number): void {
    this.requests.failAll(
      (s) =>
        new ClipboardError("RELEASED", `Cannot paste: the ${this.peer} released the selection`, s),
      selection,
    );
    this.onPeerRelease(selection);
  }

  /** The peer now offers `types` on `selection` (with `serial`, if any). */
  protected takePeerOffer(selection: number, types: readonly number[], serial?: number): void {
    const slot = this.slots[selection]!;
    slot.disown();
    slot.peerOffer = serial === undefined ? { types } : { serial, types };
    this.tellGrab(selection as Selection, types); // checked: 0, 1 or 2
  }

  /** Forgets what the peer offers on `selection`, telling the handler. */
  protected dropPeerOffer(selection: number): void {
    const slot = this.slots[selection]!;
    if (slot.peerOffer === undefined) return;
    slot.peerOffer = undefined;
    this.tellRelease(selection as Selection); // checked: 0, 1 or 2
  }

  /** Releases an owned selection, failing the peer's pending pastes of it fast. */
  protected releaseOwn(selection: number): void {
    const slot = this.slots[selection]!;
    slot.disown();
    slot.dropPeerRequests();
    this.send({ kind: "clipboard_release", selection });
  }

  protected checkClipboard(selection: number, action: string): void {
    const refuse = (code: "CLOSED" | "DISABLED" | "UNSUPPORTED", why: string) => {
      throw new ClipboardError(code, `Cannot ${action}: ${why}`, selection);
    };
    if (this.ended) refuse("CLOSED", "the session ended");
    if (!this.clipboardOn || !hasCapability(this.ownCaps, Capability.CLIPBOARD_BY_DEMAND)) {
      refuse("DISABLED", "the session has the clipboard off");
    }
    const caps = this.peerCaps;
    if (caps === undefined) return;
    if (!hasCapability(caps, Capability.CLIPBOARD_BY_DEMAND)) {
      refuse("DISABLED", `the ${this.peer} has no clipboard by demand`);
    }
    if (selection !== 0 && !this.wireLayout.selection) {
      refuse(
        "UNSUPPORTED",
        `selection ${selection} needs CLIPBOARD_SELECTION, which the ${this.peer} lacks`,
      );
    }
  }

  /** Both sides announced CLIPBOARD_BY_DEMAND and the clipboard is on. */
  protected clipboardNegotiated(): boolean {
    return this.clipboardOn && this.peerCaps !== undefined &&
      hasCapability(this.peerCaps, Capability.CLIPBOARD_BY_DEMAND) &&
      hasCapability(this.ownCaps, Capability.CLIPBOARD_BY_DEMAND);
  }

  /** The clipboard layout both sides announced, with the session's decoding limits. */
  protected layoutFor(peer: readonly number[] | undefined): PayloadOptions {
    return negotiatedLayout(this.ownCaps, peer, this.limits);
  }

  /** Sends the grab of `selection`, with the slot's serial if GRAB_SERIAL (moved on if `bumpsSerial`). */
  protected sendGrab(selection: number): void {
    const slot = this.slots[selection]!;
    const types = slot.ownOffer!;
    if (!this.wireLayout.grabSerial) {
      this.send({ kind: "clipboard_grab", selection, types });
    } else {
      const serial = slot.serial;
      if (this.bumpsSerial) slot.serial = nextSerial(serial);
      this.send({ kind: "clipboard_grab", selection, serial, types });
    }
    slot.ownSent = true;
  }

  /** Own grabs once the peer's caps are known: forgets those they cannot carry, sends those owed (all, `again`). */
  protected sendOwedGrabs(again: boolean): void {
    const clipboard = this.clipboardNegotiated();
    this.slots.forEach((slot, s) => {
      if (slot.ownOffer === undefined) return;
      if (!clipboard || (s !== 0 && !this.wireLayout.selection)) slot.disown();
      else if (!slot.ownSent || again) this.sendGrab(s);
    });
  }

  protected send(payload: MessagePayload): void {
    this.outbox.send(encodeMessage(payload, this.wireLayout));
  }

  protected diagnose(diagnostic: SessionDiagnostic): void {
    this.#onDiagnostic?.(diagnostic);
  }

  /** The stream that wraps this core, built when first needed. */
  #transform(): SessionStream {
    return this.#stream ??= sessionStream(this, this.outbox, () => this.#attached);
  }
}
