// This module is browser compatible.

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
  type MouseState,
} from "./_common.ts";
import { Endpoint } from "./_endpoint.ts";
import type { PeerRequest } from "./_selection_slot.ts";
import { ClipboardError } from "./clipboard_error.ts";
import type { HostClipboardHandler } from "./host_clipboard_handler.ts";
import type { HostSessionOptions } from "./host_session_options.ts";
import type { HostSessionState } from "./host_session_state.ts";
import type { ResumedRequest } from "./resumed_request.ts";
import type { RestoreMode } from "./restore_mode.ts";
import type { MouseInput } from "./mouse_input.ts";

/** Default of `retryInterval`. */
const DEFAULT_RETRY_INTERVAL = 1000;
/** Probes sent before a restored session falls back to announcing itself. */
const PROBES = 3;
/** Announcements sent before the session waits for the guest to announce itself. */
const ANNOUNCEMENTS = 4;
/**
 * The probe: a request of type NONE on SECONDARY, which the Linux agent
 * answers at once with type NONE (it has no SECONDARY), with no log line and
 * no state change. Its answer says the guest reads what this session writes.
 */
const PROBE_SELECTION = 2;
/** The largest type the host may offer: checkpoints carry the host's types as a 32-bit mask. */
const MAX_OWNED_TYPE = 31;

/** The host session's core: the host's rules over the role-neutral {@linkcode Endpoint}. */
export class HostCore extends Endpoint {
  protected readonly peer = "guest";
  protected readonly bumpsSerial = false;
  protected override readonly maxOwnType = MAX_OWNED_TYPE;
  readonly #mouseOn: boolean;
  readonly #handler: HostClipboardHandler;
  readonly #onGuestCaps: HostSessionOptions["onGuestCaps"];
  readonly #maxClipboard: number | undefined;
  readonly #guestTimeout: number;
  readonly #retryInterval: number;
  #mouse: MouseState | undefined;
  #mouseSent = true;
  #announced = false;
  #restored = false;
  #resumed: ResumedRequest[] = [];
  /** Resumed requests sent again: an answer beyond the first is expected. */
  #duplicates = [0, 0, 0];
  /** Host requests outstanding and not sent yet (or sent again at a resume), oldest first. */
  #unsent: { selection: number; type: number }[] = [];
  /** Selections on which a restored session has not yet seen a guest grab. */
  #unseen = [false, false, false];
  /**
   * What the session waits for before it sends anything else: the guest's
   * caps after announcing itself (`"caps"`), or the answer to its probe after
   * a reconnected restore that keeps the serials (`"probe"`).
   */
  #waiting: "caps" | "probe" | undefined;
  #asks = 0;
  #askTimer: ReturnType<typeof setTimeout> | undefined;
  /** Probes sent and not yet answered. */
  #probes = 0;
  /** The guest announced itself while the session was sealed: nobody answered it. */
  #sealedCaps = false;

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
    super("HostSession", options, capabilityWords(bits));
    this.#mouseOn = mouseOn;
    this.#maxClipboard = maxClipboard;
    this.#onGuestCaps = options.onGuestCaps;
    this.#handler = typeof options.clipboard === "object" ? options.clipboard : {};
    this.#guestTimeout = checkTimeout(options.guestRequestTimeout ?? DEFAULT_GUEST_REQUEST_TIMEOUT);
    this.#retryInterval = checkTimeout(options.retryInterval ?? DEFAULT_RETRY_INTERVAL);
    // At the end of this turn, so a pipeline can take the output or restore
    // a checkpoint first.
    queueMicrotask(() => this.outbox.run(() => this.#announce()));
  }

  /** The host's requests outstanding when the restored checkpoint was taken. */
  get resumedRequests(): readonly ResumedRequest[] {
    return this.#resumed;
  }

  /** Sends `state` once the guest may have it; `false` if the session ended. */
  mouse(state: MouseInput): boolean {
    if (!this.#mouseOn) throw new TypeError("Cannot send mouse state: the session has mouse off");
    const mouse = checkMouse(state);
    if (this.ended) return false;
    this.#mouse = mouse;
    this.#mouseSent = false;
    this.#flushMouse();
    return true;
  }

  /** The session's migratable state, lossless. */
  snapshot(): HostSessionState {
    return {
      hostCaps: [...this.ownCaps],
      ...(this.peerCaps === undefined ? {} : { guestCaps: [...this.peerCaps] }),
      // A paste asked while probing may name any type; one the host can never own gets a
      // release once the probe is answered, and is not carried on.
      selections: [0, 1, 2].map((s) =>
        this.slots[s]!.snapshot(this.requests.types(s), MAX_OWNED_TYPE)
      ) as unknown as HostSessionState["selections"],
      ...(this.#mouse === undefined ? {} : { mouse: { ...this.#mouse, sent: this.#mouseSent } }),
      ...(this.peerMax === undefined ? {} : { guestMaxClipboard: this.peerMax }),
      ...(this.#waiting === undefined ? {} : { awaiting: this.#waiting }),
    };
  }

  /** Stops all output for good; what the guest sends is still taken in. */
  seal(): void {
    this.outbox.seal();
    clearTimeout(this.#askTimer);
  }

  /** Whether every announcement of the guest was answered (none arrived while sealed). */
  answeredAll(): boolean {
    return !this.#sealedCaps;
  }

  /**
   * Takes `state` over before any traffic. Four cases, by how the transport
   * relates to the old one and whether the old relay read everything the
   * guest sent until its connection closed (`drained`):
   *
   * - continued, not drained: the same byte streams go on (the old relay's
   *   unwritten bytes are written first by the pipeline). Nothing is sent
   *   again; the guest's pending pastes go to the provider.
   * - continued, drained: the old relay's connection ended but the guest's
   *   port stayed open (a new connection made before the guest resumed after
   *   a migration). What the old relay wrote last may be lost (bytes written
   *   to a VM that had stopped), so the host's grabs, its outstanding requests
   *   and the mouse go again at once.
   * - reconnected, drained: the guest saw its port close and reopen, which
   *   made it drop the host's grabs and release its own offers (the releases
   *   arrive here); its serials stayed, and the state has them all. The
   *   session sends a probe first, and nothing else until it is answered (a
   *   guest still closing its port drops what arrives), then grabs again,
   *   serves the pastes and sends the mouse. It does not announce itself: that
   *   would make the guest release what its user copied meanwhile.
   * - reconnected, not drained: a guest grab may have been lost with the old
   *   connection, so the guest's serials are unknown: the session announces
   *   itself with request=1 (serials back to 0 on both sides) and grabs again
   *   once the guest answers; the guest's offers and pastes are dropped.
   */
  restore(state: HostSessionState, mode: RestoreMode): void {
    if (this.#announced || this.closed) {
      throw new TypeError("Cannot restore the session: it has already started");
    }
    const { reconnected, drained, offers } = mode;
    this.#restored = true;
    this.ownCaps = [...state.hostCaps];
    this.peerCaps = state.guestCaps === undefined ? undefined : [...state.guestCaps];
    this.wireLayout = this.layoutFor(this.peerCaps);
    this.peerMax = state.guestMaxClipboard;
    if (state.mouse !== undefined) {
      const { sent, ...mouse } = state.mouse;
      this.#mouse = mouse;
      this.#mouseSent = sent && !drained && !reconnected;
    }
    // After a reconnect, a guest that never announced itself or an unknown serial: start again
    // as a new client. On a stream that goes on, the old relay's announcement was sent already.
    const quiet = !reconnected || (this.peerCaps !== undefined && drained);
    const probe = reconnected && quiet && this.clipboardNegotiated() && this.wireLayout.selection!;
    this.outbox.run(() => {
      state.selections.forEach((s, selection) => {
        const slot = this.slots[selection]!;
        slot.serial = s.lastSerial;
        slot.ownOffer = s.hostOffer === undefined ? undefined : [...s.hostOffer];
        slot.ownSent = !reconnected && !drained && s.hostOffer !== undefined &&
          s.hostOfferSent !== false && this.peerCaps !== undefined;
        // A guest release of a selection it did not offer then means a grab lost on the way.
        this.#unseen[selection] = quiet && drained && offers;
        for (const type of s.hostRequests ?? []) {
          const result = this.requests.add(selection, type, this.timeout);
          result.catch(() => {}); // whoever takes it from resumedRequests sees the failure
          this.#resumed.push({ selection, type, result });
          if (quiet && drained) {
            // The old relay's may have been lost with its connection: asked again, and the
            // second answer, if both arrive, is expected.
            this.#unsent.push({ selection, type });
            this.#duplicates[selection]!++;
          }
        }
        if (quiet) {
          if (s.guestOffer !== undefined) slot.peerOffer = s.guestOffer;
          slot.deferred = [...s.guestRequests];
        }
      });
      if (!quiet) {
        this.#announced = true;
        this.#reannounce();
      } else if (probe) {
        this.#ask("probe");
      } else if (reconnected) {
        // No probe can be laid out (no clipboard, or no CLIPBOARD_SELECTION): the
        // announcement is what the guest answers.
        this.#announced = true;
        this.#reannounce();
      } else if (state.awaiting !== undefined) {
        // The old relay's question is on its way (or was lost): its answer comes here, and
        // the question goes again if it does not.
        this.#waiting = state.awaiting;
        if (state.awaiting === "probe") this.#probes = 1;
        this.#asks = 0;
        this.#scheduleAsk();
      } else {
        this.#resume();
      }
    });
  }

  /** The guest announced itself and answered what the session asked: grabs and mouse may go. */
  protected override get linkUp(): boolean {
    return this.peerCaps !== undefined && this.#waiting === undefined;
  }

  /** While probing, what is sent may be dropped: a request goes once the guest answers. */
  protected override get holdsRequests(): boolean {
    return this.#waiting === "probe";
  }

  protected override requestHeld(selection: number, type: number): void {
    this.#unsent.push({ selection, type });
  }

  protected override starting(): void {
    this.#announce();
  }

  protected override closing(): void {
    clearTimeout(this.#askTimer);
  }

  protected tellGrab(selection: number, types: readonly number[]): void {
    this.#handler.onGuestGrab?.(selection, types);
  }

  protected tellRelease(selection: number): void {
    this.#handler.onGuestRelease?.(selection);
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

  #announce(): void {
    if (this.#announced || this.#restored || this.closed) return;
    this.#announced = true;
    this.#ask("caps");
  }

  /**
   * Asks the guest: announces the session (request=1), or sends a probe. A
   * guest that answers neither within `retryInterval` may have dropped the
   * bytes (it was still closing its port for the previous client): the
   * session asks again, with doubling delays; unanswered probes give way to
   * an announcement.
   */
  #ask(what: "caps" | "probe"): void {
    this.#waiting = what;
    this.#asks = 0;
    this.#askAgain();
  }

  #askAgain(): void {
    clearTimeout(this.#askTimer);
    this.#askTimer = undefined;
    if (this.ended || this.#waiting === undefined) return;
    if (this.#waiting === "probe" && this.#asks === PROBES) return this.#reannounce();
    if (this.#waiting === "caps" && this.#asks === ANNOUNCEMENTS) return;
    if (this.#waiting === "caps") {
      this.send({ kind: "announce_capabilities", request: true, caps: this.ownCaps });
    } else {
      this.#probes++;
      this.send({
        kind: "clipboard_request",
        selection: PROBE_SELECTION,
        type: ClipboardType.NONE,
      });
    }
    this.#scheduleAsk();
  }

  /** Asks again after the retry interval, doubled for every time it asked. */
  #scheduleAsk(): void {
    if (this.#retryInterval === 0) return;
    const delay = this.#retryInterval * 2 ** this.#asks++;
    this.#askTimer = setTimeout(() => this.outbox.run(() => this.#askAgain()), delay);
  }

  /**
   * Announces the session with request=1, which sets the guest's serials
   * back to 0 (and releases what its user offered): for when they cannot be
   * known. What waited to be sent is dropped; the grabs and the mouse go again
   * once the guest answers.
   */
  #reannounce(): void {
    this.#unsent = [];
    for (const slot of this.slots) {
      slot.ownSent = false;
      slot.deferred = [];
    }
    if (this.#mouse !== undefined) this.#mouseSent = false;
    this.#ask("caps");
  }

  /** The probe was answered: the guest reads what this session writes. */
  #probeAnswered(): void {
    this.#probes--;
    if (this.#waiting !== "probe") return;
    this.#waiting = undefined;
    clearTimeout(this.#askTimer);
    this.#resume();
  }

  /**
   * Sends what a restored session owes the guest: the host's grabs it has not
   * sent (after a drained or reconnected restore, all of them: the old
   * relay's last ones may have been lost with its connection, and a grab
   * again with the same serial is accepted), the guest's pastes still to
   * serve, and the mouse.
   */
  #resume(): void {
    // The host's requests still outstanding that were not sent, or may have been lost.
    const unsent = this.#unsent;
    this.#unsent = [];
    const sent = new Map<string, number>();
    for (const { selection, type } of unsent) {
      const key = `${selection}/${type}`;
      const n = (sent.get(key) ?? 0) + 1;
      sent.set(key, n);
      // One settled meanwhile (the guest released its copy, a timeout) is not asked.
      if (n <= this.requests.count(selection, type)) {
        this.send({ kind: "clipboard_request", selection, type });
      }
    }
    this.sendOwedGrabs(false);
    this.#serveDeferred();
    this.#flushMouse();
  }

  #serveDeferred(): void {
    for (let s = 0; s < 3; s++) {
      const types = this.slots[s]!.deferred!;
      this.slots[s]!.deferred = [];
      for (const type of types) this.onPeerRequest(s, type);
    }
  }

  protected onCaps(caps: readonly number[], request: boolean): void {
    const again = this.peerCaps !== undefined;
    // Any announcement answers ours; one that arrives while probing means the guest restarted.
    this.#unsent = [];
    this.#waiting = undefined;
    clearTimeout(this.#askTimer);
    if (this.outbox.sealed) this.#sealedCaps = true;
    this.#unseen = [false, false, false];
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
    this.#duplicates = [0, 0, 0];
    this.#onGuestCaps?.(this.peerCaps);
    // Once per guest (re)start: its request=1 announcement, or the first one.
    const start = request || !again;
    if (
      start && this.#maxClipboard !== undefined && hasCapability(caps, Capability.MAX_CLIPBOARD)
    ) {
      this.send({ kind: "max_clipboard", max: this.#maxClipboard });
    }
    this.#flushMouse();
    this.sendOwedGrabs(request);
  }

  /*
   * Grabs with the serial of the guest's last grab (0 before any), and keeps
   * it: unlike QEMU, the host never moves its serial on. The Linux agent
   * accepts a host grab whose serial is its next one or one less, so a host
   * grab lost with a connection (bytes written to a VM that stopped for its
   * migration) never puts the host ahead of the guest.
   */
  #flushMouse(): void {
    const mouse = this.#mouse;
    if (mouse === undefined || this.#mouseSent || !this.linkUp) return;
    if (!hasCapability(this.peerCaps!, Capability.MOUSE_STATE)) return;
    this.#mouseSent = true;
    this.send({ kind: "mouse_state", ...mouse });
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
    this.#unseen[selection] = false;
    this.slots[selection]!.dropPeerRequests();
    this.slots[selection]!.deferred = [];
    this.takePeerOffer(selection, types, serial);
  }

  protected onPeerRelease(selection: number): void {
    if (
      this.slots[selection]!.peerOffer === undefined &&
      this.slots[selection]!.ownOffer === undefined &&
      this.#unseen[selection]
    ) {
      // The guest owned it, so it grabbed it, and that grab never arrived: it was lost with the
      // old relay's connection, and moved the guest's serial on unseen. (Where the host owns the
      // selection, the guest still owning it means the host's own grab was lost: its serial is
      // the one the guest expects.)
      this.#unseen = [false, false, false];
      this.diagnose({
        code: "LOST_GRAB",
        message:
          `The guest released selection ${selection}, whose grab never arrived: its serial moved on unseen, so the session announces itself to set the serials back to 0`,
        selection,
      });
      if (!this.ended) this.#reannounce();
      return;
    }
    this.dropPeerOffer(selection);
  }

  protected onPeerData(
    selection: number,
    type: number,
    data: Uint8Array,
    payload: MessagePayload,
  ): void {
    if (
      selection === PROBE_SELECTION && type === ClipboardType.NONE && this.#probes > 0 &&
      this.requests.types(selection).length === 0
    ) {
      return this.#probeAnswered();
    }
    if (this.#maxClipboard !== undefined && data.length > this.#maxClipboard) {
      const error = new ClipboardError(
        "TOO_LARGE",
        `Cannot paste: the guest sent ${data.length} bytes, over the limit of ${this.#maxClipboard}`,
        selection,
      );
      this.diagnose({ code: "TOO_LARGE", message: error.message, selection, error });
      if (this.requests.fail(selection, type, error)) return;
    } else if (this.requests.answer(selection, type, data)) {
      return;
    }
    if (this.#duplicates[selection]! > 0) {
      this.#duplicates[selection]!--; // the second answer to a request sent again
      return;
    }
    this.diagnose({
      code: "UNSOLICITED_DATA",
      message:
        `Ignored clipboard data of type ${type} for selection ${selection}: no request waits for it`,
      selection,
      payload,
    });
  }

  protected onPeerRequest(selection: number, type: number): void {
    if (this.outbox.sealed || this.#waiting === "probe") {
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
    if (owned === undefined || !owned.includes(type) || this.#handler.provide === undefined) {
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
    if (this.#guestTimeout > 0) {
      request.timer = setTimeout(() => {
        if (!this.slots[selection]!.peerRequests!.includes(request) || this.ended) return;
        this.diagnose({
          code: "REQUEST_EXPIRED",
          message:
            `The guest's paste on selection ${selection} waited ${this.#guestTimeout} ms; it gets a release`,
          selection,
        });
        this.releaseOwn(selection);
      }, this.#guestTimeout);
    }
    queue.push(request);
    callProvider(this.#handler.provide, selection, type, this.outbox, (data, error) => {
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
