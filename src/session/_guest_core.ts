// This module is browser compatible.

import type { Selection } from "../protocol/selection.ts";
import { ClipboardType } from "../protocol/clipboard_type.ts";
import type { MessagePayload } from "../protocol/message_payload.ts";
import { MessageType } from "../protocol/message_type.ts";
import { ReplyError } from "../protocol/reply_error.ts";
import { callProvider, type Provider } from "./_common.ts";
import { Endpoint } from "./_endpoint.ts";
import { linuxCaps } from "./_linux_caps.ts";
import { nextSerial } from "./_serial.ts";
import { ClipboardError } from "./clipboard_error.ts";
import type { GuestClipboardHandler } from "./guest_clipboard_handler.ts";
import type { GuestSessionOptions } from "./guest_session_options.ts";

/** The guest session's core: the Linux agent's rules over the role-neutral {@linkcode Endpoint}. */
export class GuestCore extends Endpoint {
  protected readonly peer = "host";
  protected readonly bumpsSerial = true;
  readonly #options: GuestSessionOptions;
  readonly #handler: GuestClipboardHandler;
  /** Bumped when the host's caps arrive or it goes away: older answers are dropped. */
  #epoch = 0;

  constructor(options: GuestSessionOptions) {
    super(
      "GuestSession",
      options,
      options.caps === undefined
        ? linuxCaps(options.selection ?? true, options.grabSerial ?? true)
        : [...options.caps],
    );
    this.#options = options;
    this.#handler = typeof options.clipboard === "object" ? options.clipboard : {};
    // Sent at the end of this turn, so a pipeline can take the output first.
    this.send({ kind: "announce_capabilities", request: true, caps: this.ownCaps });
  }

  /** The guest's port closed and reopened: see `GuestSession.clientDisconnected`. */
  clientDisconnected(): void {
    if (this.closed) return;
    this.#clientGone();
  }

  protected onCaps(caps: readonly number[], request: boolean): void {
    this.#epoch++;
    this.peerCaps = [...caps];
    this.wireLayout = this.layoutFor(caps);
    this.#options.onHostCaps?.(this.peerCaps, request);
    if (request) {
      // A new client: answer, forget it all, and start the serials again.
      this.send({ kind: "announce_capabilities", request: false, caps: this.ownCaps });
      for (const slot of this.slots) slot.serial = 0;
      this.#clientGone();
    }
    // Grabs made before the host was known leave now, if they can.
    this.sendOwedGrabs(false);
  }

  protected receiveOther(payload: MessagePayload): boolean {
    if (payload.kind === "mouse_state") {
      const { x, y, buttons, display } = payload;
      this.#options.onMouse?.({ x, y, buttons, display });
      return true;
    }
    if (payload.kind === "client_disconnected") this.#clientGone();
    if (payload.kind === "monitors_config") {
      this.send({
        kind: "reply",
        messageType: MessageType.MONITORS_CONFIG,
        error: ReplyError.SUCCESS,
      });
    }
    return false;
  }

  /**
   * The client went away, as the Linux agent's session agent hears it: its
   * offers and the guest's pastes from it are gone, and the guest releases
   * what it offered. Serials are kept.
   */
  #clientGone(): void {
    this.#epoch++;
    this.requests.failAll((s) =>
      new ClipboardError("PEER_RESET", "Cannot paste: the client went away", s)
    );
    this.slots.forEach((slot, s) => {
      this.dropPeerOffer(s);
      if (!slot.ownSent) return;
      slot.disown();
      if (s === 0 || this.wireLayout.selection) {
        this.send({ kind: "clipboard_release", selection: s });
      }
    });
  }

  protected tellGrab(selection: Selection, types: readonly number[]): void {
    this.#handler.onHostGrab?.(selection, types);
  }

  protected tellRelease(selection: Selection): void {
    this.#handler.onHostRelease?.(selection);
  }

  protected onPeerRelease(selection: number): void {
    this.dropPeerOffer(selection);
  }

  protected onPeerGrab(
    selection: number,
    types: readonly number[],
    serial: number | undefined,
  ): void {
    if (serial !== undefined) {
      const slot = this.slots[selection]!;
      const expected = slot.serial;
      if (serial === expected) {
        slot.serial = nextSerial(expected);
      } else if (serial !== ((expected - 1) >>> 0)) {
        return this.diagnose({
          code: "GRAB_DISCARDED",
          message:
            `Discarded the host's grab of selection ${selection}: serial ${serial}, expected ${expected}`,
          selection,
        });
      }
    }
    this.takePeerOffer(selection, types, serial);
  }

  protected onPeerRequest(selection: number, type: number): void {
    const none = () =>
      this.send({
        kind: "clipboard",
        selection,
        type: ClipboardType.NONE,
        data: new Uint8Array(0),
      });
    if (!this.slots[selection]!.ownOffer?.includes(type)) return none();
    const epoch = this.#epoch;
    callProvider(
      this.#handler.provide as Provider | undefined,
      selection as Selection, // checked: 0, 1 or 2
      type,
      this.outbox,
      (data, error) => {
        // The host that asked is gone, or now lays messages out otherwise.
        if (this.closed || epoch !== this.#epoch) return;
        if (error !== undefined) {
          this.diagnose({
            code: "PROVIDER_FAILED",
            message: "The clipboard provider failed",
            selection,
            error,
          });
        }
        if (data === undefined) return none();
        // Over the host's limit, the Linux agent sends the type with no data.
        const tooLarge = this.peerMax !== undefined && data.length > this.peerMax;
        this.send({
          kind: "clipboard",
          selection,
          type,
          data: tooLarge ? new Uint8Array(0) : data,
        });
      },
    );
  }
}
