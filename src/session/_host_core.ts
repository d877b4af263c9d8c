// This module is browser compatible.

import type { Selection } from "../protocol/selection.ts";
import { Capability } from "../protocol/capability.ts";
import { ClipboardType } from "../protocol/clipboard_type.ts";
import { capabilityWords } from "../protocol/capability_words.ts";
import { hasCapability } from "../protocol/has_capability.ts";
import type { MessagePayload } from "../protocol/message_payload.ts";
import { MessageType } from "../protocol/message_type.ts";
import { serialBefore } from "./_serial.ts";
import {
  callProvider,
  checkMouse,
  checkTimeout,
  DEFAULT_GUEST_REQUEST_TIMEOUT,
} from "./_common.ts";
import { DEFAULT_RETRY_INTERVAL, HostLink, MAX_OWNED_TYPE, PROBE_SELECTION } from "./_host_link.ts";
import type { PeerRequest } from "./_selection_slot.ts";
import { ClipboardError } from "./clipboard_error.ts";
import type { HostClipboardHandler } from "./host_clipboard_handler.ts";
import type { HostSessionOptions } from "./host_session_options.ts";
import type { MouseInput } from "./mouse_input.ts";

/** The host session's core: the host's rules for the guest's messages, over {@linkcode HostLink}. */
export class HostCore extends HostLink {
  protected readonly peer = "guest";
  protected readonly bumpsSerial = false;
  protected override readonly maxOwnType = MAX_OWNED_TYPE;
  protected readonly mouseOn: boolean;
  protected readonly handler: HostClipboardHandler;
  protected readonly onGuestCaps: HostSessionOptions["onGuestCaps"];
  protected readonly maxClipboard: number | undefined;
  protected readonly guestTimeout: number;

  constructor(options: HostSessionOptions) {
    const mouseOn = options.mouse ?? true;
    const maxClipboard = options.maxClipboard;
    if (
      maxClipboard !== undefined &&
      (!Number.isInteger(maxClipboard) || maxClipboard < 0 || maxClipboard > 0x7fff_ffff)
    ) {
      throw new RangeError(
        `Cannot create HostSession: maxClipboard must be an integer from 0 to 2^31-1, got ${maxClipboard}`,
      );
    }
    const bits: number[] = [];
    if (mouseOn) bits.push(Capability.MOUSE_STATE);
    if (options.clipboard !== false) {
      bits.push(
        Capability.CLIPBOARD_BY_DEMAND,
        Capability.CLIPBOARD_SELECTION,
        Capability.CLIPBOARD_GRAB_SERIAL,
      );
    }
    if (maxClipboard !== undefined) bits.push(Capability.MAX_CLIPBOARD);
    super(
      "HostSession",
      options,
      capabilityWords(bits),
      checkTimeout(options.retryInterval ?? DEFAULT_RETRY_INTERVAL),
    );
    this.mouseOn = mouseOn;
    this.maxClipboard = maxClipboard;
    this.onGuestCaps = options.onGuestCaps;
    this.handler = typeof options.clipboard === "object" ? options.clipboard : {};
    this.guestTimeout = checkTimeout(options.guestRequestTimeout ?? DEFAULT_GUEST_REQUEST_TIMEOUT);
    // At the end of this turn, so a pipeline can take the output or restore
    // a checkpoint first.
    queueMicrotask(() => this.outbox.run(() => this.announce()));
  }

  /** Sends `state` once the guest may have it; `false` if the session ended. */
  mouse(state: MouseInput): boolean {
    if (!this.mouseOn) throw new TypeError("Cannot send mouse state: the session has mouse off");
    const mouse = checkMouse(state);
    if (this.ended) return false;
    this.mouseState = mouse;
    this.mouseSent = false;
    this.flushMouse();
    return true;
  }

  protected tellGrab(selection: Selection, types: readonly number[]): void {
    this.handler.onGuestGrab?.(selection, types);
  }

  protected tellRelease(selection: Selection): void {
    this.handler.onGuestRelease?.(selection);
  }

  protected receiveOther(payload: MessagePayload): boolean {
    if (
      payload.kind !== "invalid" || payload.type !== MessageType.CLIPBOARD_RELEASE ||
      payload.data.length !== 1 || payload.data[0]! >= 3 || !this.clipboardNegotiated()
    ) {
      return false;
    }
    this.diagnose({
      code: "LEGACY_RELEASE",
      message: "Accepted the Linux agent's 1-byte CLIPBOARD_RELEASE",
      selection: payload.data[0]!,
      payload,
    });
    this.peerReleased(payload.data[0]!);
    return true;
  }

  protected onCaps(caps: readonly number[], request: boolean): void {
    const again = this.peerCaps !== undefined;
    // Any announcement answers ours; one that arrives while probing means the guest restarted.
    this.unsent = [];
    this.waiting = undefined;
    clearTimeout(this.askTimer);
    if (this.outbox.sealed) this.sealedCaps = true;
    this.unseen = [false, false, false];
    this.peerCaps = [...caps];
    this.wireLayout = this.layoutFor(caps);
    // The guest's first announcement is answered with request=0, as QEMU does. A second one
    // means its agent restarted, but the Linux daemon keeps its grab serials when only the
    // session agent restarts (a logout): request=1 makes it zero them, as we do below.
    if (request) {
      this.send({ kind: "announce_capabilities", request: again, caps: this.ownCaps });
    }
    for (const slot of this.slots) slot.serial = 0;
    // The guest (re)started: what it offered and asked for is gone.
    this.requests.failAll((s) =>
      new ClipboardError("PEER_RESET", "Cannot paste: the guest restarted", s)
    );
    for (let s = 0; s < 3; s++) {
      this.slots[s]!.dropPeerRequests();
      this.slots[s]!.deferred = [];
      this.dropPeerOffer(s);
    }
    this.duplicates = [0, 0, 0];
    this.onGuestCaps?.(this.peerCaps);
    // Once per guest (re)start: its request=1 announcement, or the first one.
    const start = request || !again;
    if (
      start && this.maxClipboard !== undefined && hasCapability(caps, Capability.MAX_CLIPBOARD)
    ) {
      this.send({ kind: "max_clipboard", max: this.maxClipboard });
    }
    this.flushMouse();
    this.sendOwedGrabs(request);
  }

  protected onPeerGrab(
    selection: number,
    types: readonly number[],
    serial: number | undefined,
  ): void {
    if (serial !== undefined) {
      const last = this.slots[selection]!.serial!;
      if (serialBefore(serial, last)) {
        return this.diagnose({
          code: "GRAB_DISCARDED",
          message:
            `Discarded the guest's grab of selection ${selection}: serial ${serial} is older than ${last}`,
          selection,
        });
      }
      this.slots[selection]!.serial = serial;
    }
    this.unseen[selection] = false;
    this.slots[selection]!.dropPeerRequests();
    this.slots[selection]!.deferred = [];
    this.takePeerOffer(selection, types, serial);
  }

  protected onPeerRelease(selection: number): void {
    if (
      this.slots[selection]!.peerOffer === undefined &&
      this.slots[selection]!.ownOffer === undefined &&
      this.unseen[selection]
    ) {
      // The guest owned it, so it grabbed it, and that grab never arrived: it was lost with the
      // old relay's connection, and moved the guest's serial on unseen. (Where the host owns the
      // selection, the guest still owning it means the host's own grab was lost: its serial is
      // the one the guest expects.)
      this.unseen = [false, false, false];
      this.diagnose({
        code: "LOST_GRAB",
        message:
          `The guest released selection ${selection}, whose grab never arrived: its serial moved on unseen, so the session announces itself to set the serials back to 0`,
        selection,
      });
      if (!this.ended) this.reannounce();
      return;
    }
    this.dropPeerOffer(selection);
  }

  protected override onPeerData(
    selection: number,
    type: number,
    data: Uint8Array,
    payload: MessagePayload,
  ): void {
    if (
      selection === PROBE_SELECTION && type === ClipboardType.NONE && this.probes > 0 &&
      this.requests.types(selection).length === 0
    ) {
      return this.probeAnswered();
    }
    if (this.maxClipboard !== undefined && data.length > this.maxClipboard) {
      const error = new ClipboardError(
        "TOO_LARGE",
        `Cannot paste: the guest sent ${data.length} bytes, over the limit of ${this.maxClipboard}`,
        selection,
      );
      this.diagnose({ code: "TOO_LARGE", message: error.message, selection, error });
      if (this.requests.fail(selection, type, error)) return;
    } else if (this.requests.answer(selection, type, data)) {
      return;
    }
    if (this.duplicates[selection]! > 0) {
      this.duplicates[selection]!--; // the second answer to a request sent again
      return;
    }
    this.unsolicited(selection, type, payload);
  }

  protected onPeerRequest(selection: number, type: number): void {
    if (this.outbox.sealed || this.waiting === "probe") {
      // Nothing can leave now: kept for whoever sends next (this session, or the next relay).
      const kept = this.slots[selection]!.deferred!;
      if (kept.length + this.slots[selection]!.peerRequests!.length >= this.limits.maxRequests) {
        return this.diagnose({
          code: "TOO_MANY_REQUESTS",
          message:
            `The guest has ${kept.length} pastes waiting on selection ${selection}; this one is dropped`,
          selection,
        });
      }
      kept.push(type);
      return;
    }
    const owned = this.slots[selection]!.ownOffer;
    if (owned === undefined || !owned.includes(type) || this.handler.provide === undefined) {
      return this.releaseOwn(selection);
    }
    const queue = this.slots[selection]!.peerRequests!;
    if (queue.length >= this.limits.maxRequests) {
      this.diagnose({
        code: "TOO_MANY_REQUESTS",
        message:
          `The guest has ${queue.length} pastes pending on selection ${selection}; it gets a release`,
        selection,
      });
      return this.releaseOwn(selection);
    }
    const request: PeerRequest = { type, timer: undefined };
    if (this.guestTimeout > 0) {
      request.timer = setTimeout(() => {
        if (!this.slots[selection]!.peerRequests!.includes(request) || this.ended) return;
        this.diagnose({
          code: "REQUEST_EXPIRED",
          message:
            `The guest's paste on selection ${selection} waited ${this.guestTimeout} ms; it gets a release`,
          selection,
        });
        this.releaseOwn(selection);
      }, this.guestTimeout);
    }
    queue.push(request);
    callProvider(this.handler.provide, selection as Selection, type, this.outbox, (data, error) => {
      // Re-read: dropping the selection's requests replaces the list.
      const pending = this.slots[selection]!.peerRequests!;
      const at = pending.indexOf(request);
      if (this.closed || at < 0) return;
      pending.splice(at, 1);
      clearTimeout(request.timer);
      if (error !== undefined) {
        this.diagnose({
          code: "PROVIDER_FAILED",
          message:
            `The clipboard provider failed for selection ${selection}; the guest gets a release`,
          selection,
          error,
        });
        return this.releaseOwn(selection);
      }
      if (data === undefined || data.length === 0) return this.releaseOwn(selection);
      if (this.peerMax !== undefined && data.length > this.peerMax) {
        const refused = new ClipboardError(
          "TOO_LARGE",
          `Cannot send ${data.length} bytes: the guest accepts at most ${this.peerMax}`,
          selection,
        );
        this.diagnose({ code: "TOO_LARGE", message: refused.message, selection, error: refused });
        return this.releaseOwn(selection);
      }
      this.send({ kind: "clipboard", selection, type, data });
    });
  }
}
