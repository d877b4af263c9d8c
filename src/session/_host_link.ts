// This module is browser compatible.

import type { Selection } from "../protocol/selection.ts";
import { Capability } from "../protocol/capability.ts";
import { ClipboardType } from "../protocol/clipboard_type.ts";
import { hasCapability } from "../protocol/has_capability.ts";
import type { MouseState } from "./_common.ts";
import { Endpoint } from "./_endpoint.ts";
import type { EndpointOptions } from "./_endpoint_options.ts";
import type { HostSessionState } from "./host_session_state.ts";
import type { ResumedRequest } from "./resumed_request.ts";
import type { RestoreMode } from "./restore_mode.ts";

/** Default of `retryInterval`. */
export const DEFAULT_RETRY_INTERVAL = 1000;
/** Probes sent before a restored session falls back to announcing itself. */
const PROBES = 3;
/** Announcements sent before the session waits for the guest to announce itself. */
const ANNOUNCEMENTS = 4;
/**
 * The probe: a request of type NONE on SECONDARY, which the Linux agent
 * answers at once with type NONE (it has no SECONDARY), with no log line and
 * no state change. Its answer says the guest reads what this session writes.
 */
export const PROBE_SELECTION = 2;
/** The largest type the host may offer: checkpoints carry the host's types as a 32-bit mask. */
export const MAX_OWNED_TYPE = 31;

/**
 * The host's hand-off machinery over the role-neutral {@linkcode Endpoint}:
 * what it asks the guest and waits for (its announcement, or a probe after a
 * reconnected restore), and asks again; the snapshot, the restore and the
 * resume; the mouse state that a hand-off carries. {@linkcode HostCore} adds
 * the rules for the guest's messages.
 */
export abstract class HostLink extends Endpoint {
  protected readonly retryInterval: number;
  protected mouseState: MouseState | undefined;
  protected mouseSent = true;
  protected announced = false;
  protected restored = false;
  protected resumed: ResumedRequest[] = [];
  /** Resumed requests sent again: an answer beyond the first is expected. */
  protected duplicates = [0, 0, 0];
  /** Host requests outstanding and not sent yet (or sent again at a resume), oldest first. */
  protected unsent: { selection: number; type: number }[] = [];
  /** Selections on which a restored session has not yet seen a guest grab. */
  protected unseen = [false, false, false];
  /**
   * What the session waits for before it sends anything else: the guest's
   * caps after announcing itself (`"caps"`), or the answer to its probe after
   * a reconnected restore that keeps the serials (`"probe"`).
   */
  protected waiting: "caps" | "probe" | undefined;
  protected asks = 0;
  protected askTimer: ReturnType<typeof setTimeout> | undefined;
  /** Probes sent and not yet answered. */
  protected probes = 0;
  /** The guest announced itself while the session was sealed: nobody answered it. */
  protected sealedCaps = false;

  constructor(what: string, options: EndpointOptions, ownCaps: number[], retryInterval: number) {
    super(what, options, ownCaps);
    this.retryInterval = retryInterval;
  }

  /** The host's requests outstanding when the restored checkpoint was taken. */
  get resumedRequests(): readonly ResumedRequest[] {
    return this.resumed;
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
      ...(this.mouseState === undefined
        ? {}
        : { mouse: { ...this.mouseState, sent: this.mouseSent } }),
      ...(this.peerMax === undefined ? {} : { guestMaxClipboard: this.peerMax }),
      ...(this.waiting === undefined ? {} : { awaiting: this.waiting }),
    };
  }

  /** Stops all output for good; what the guest sends is still taken in. */
  seal(): void {
    this.outbox.seal();
    clearTimeout(this.askTimer);
  }

  /** Whether every announcement of the guest was answered (none arrived while sealed). */
  answeredAll(): boolean {
    return !this.sealedCaps;
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
    if (this.announced || this.closed) {
      throw new TypeError("Cannot restore the session: it has already started");
    }
    const { reconnected, drained, offers } = mode;
    this.restored = true;
    this.ownCaps = [...state.hostCaps];
    this.peerCaps = state.guestCaps === undefined ? undefined : [...state.guestCaps];
    this.wireLayout = this.layoutFor(this.peerCaps);
    this.peerMax = state.guestMaxClipboard;
    if (state.mouse !== undefined) {
      const { sent, ...mouse } = state.mouse;
      this.mouseState = mouse;
      this.mouseSent = sent && !drained && !reconnected;
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
        this.unseen[selection] = quiet && drained && offers;
        for (const type of s.hostRequests ?? []) {
          const result = this.requests.add(selection, type, this.timeout);
          result.catch(() => {}); // whoever takes it from resumedRequests sees the failure
          this.resumed.push({ selection: selection as Selection, type, result });
          if (quiet && drained) {
            // The old relay's may have been lost with its connection: asked again, and the
            // second answer, if both arrive, is expected.
            this.unsent.push({ selection, type });
            this.duplicates[selection]!++;
          }
        }
        if (quiet) {
          if (s.guestOffer !== undefined) slot.peerOffer = s.guestOffer;
          slot.deferred = [...s.guestRequests];
        }
      });
      if (!quiet) {
        this.announced = true;
        this.reannounce();
      } else if (probe) {
        this.ask("probe");
      } else if (reconnected) {
        // No probe can be laid out (no clipboard, or no CLIPBOARD_SELECTION): the
        // announcement is what the guest answers.
        this.announced = true;
        this.reannounce();
      } else if (state.awaiting !== undefined) {
        // The old relay's question is on its way (or was lost): its answer comes here, and
        // the question goes again if it does not.
        this.waiting = state.awaiting;
        if (state.awaiting === "probe") this.probes = 1;
        this.asks = 0;
        this.scheduleAsk();
      } else {
        this.resume();
      }
    });
  }

  /** The guest announced itself and answered what the session asked: grabs and mouse may go. */
  protected override get linkUp(): boolean {
    return this.peerCaps !== undefined && this.waiting === undefined;
  }

  /** While probing, what is sent may be dropped: a request goes once the guest answers. */
  protected override get holdsRequests(): boolean {
    return this.waiting === "probe";
  }

  protected override requestHeld(selection: number, type: number): void {
    this.unsent.push({ selection, type });
  }

  protected override starting(): void {
    this.announce();
  }

  protected override closing(): void {
    clearTimeout(this.askTimer);
  }

  protected announce(): void {
    if (this.announced || this.restored || this.closed) return;
    this.announced = true;
    this.ask("caps");
  }

  /**
   * Asks the guest: announces the session (request=1), or sends a probe. A
   * guest that answers neither within `retryInterval` may have dropped the
   * bytes (it was still closing its port for the previous client): the
   * session asks again, with doubling delays; unanswered probes give way to
   * an announcement.
   */
  protected ask(what: "caps" | "probe"): void {
    this.waiting = what;
    this.asks = 0;
    this.askAgain();
  }

  protected askAgain(): void {
    clearTimeout(this.askTimer);
    this.askTimer = undefined;
    if (this.ended || this.waiting === undefined) return;
    if (this.waiting === "probe" && this.asks === PROBES) return this.reannounce();
    if (this.waiting === "caps" && this.asks === ANNOUNCEMENTS) return;
    if (this.waiting === "caps") {
      this.send({ kind: "announce_capabilities", request: true, caps: this.ownCaps });
    } else {
      this.probes++;
      this.send({
        kind: "clipboard_request",
        selection: PROBE_SELECTION,
        type: ClipboardType.NONE,
      });
    }
    this.scheduleAsk();
  }

  /** Asks again after the retry interval, doubled for every time it asked. */
  protected scheduleAsk(): void {
    if (this.retryInterval === 0) return;
    const delay = this.retryInterval * 2 ** this.asks++;
    this.askTimer = setTimeout(() => this.outbox.run(() => this.askAgain()), delay);
  }

  /**
   * Announces the session with request=1, which sets the guest's serials
   * back to 0 (and releases what its user offered): for when they cannot be
   * known. What waited to be sent is dropped; the grabs and the mouse go again
   * once the guest answers.
   */
  protected reannounce(): void {
    this.unsent = [];
    for (const slot of this.slots) {
      slot.ownSent = false;
      slot.deferred = [];
    }
    if (this.mouseState !== undefined) this.mouseSent = false;
    this.ask("caps");
  }

  /** The probe was answered: the guest reads what this session writes. */
  protected probeAnswered(): void {
    this.probes--;
    if (this.waiting !== "probe") return;
    this.waiting = undefined;
    clearTimeout(this.askTimer);
    this.resume();
  }

  /**
   * Sends what a restored session owes the guest: the host's grabs it has not
   * sent (after a drained or reconnected restore, all of them: the old
   * relay's last ones may have been lost with its connection, and a grab
   * again with the same serial is accepted), the guest's pastes still to
   * serve, and the mouse.
   */
  protected resume(): void {
    // The host's requests still outstanding that were not sent, or may have been lost.
    const unsent = this.unsent;
    this.unsent = [];
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
    this.serveDeferred();
    this.flushMouse();
  }

  protected serveDeferred(): void {
    for (let s = 0; s < 3; s++) {
      const types = this.slots[s]!.deferred!;
      this.slots[s]!.deferred = [];
      for (const type of types) this.onPeerRequest(s, type);
    }
  }

  /*
   * Grabs with the serial of the guest's last grab (0 before any), and keeps
   * it: unlike QEMU, the host never moves its serial on. The Linux agent
   * accepts a host grab whose serial is its next one or one less, so a host
   * grab lost with a connection (bytes written to a VM that stopped for its
   * migration) never puts the host ahead of the guest.
   */
  protected flushMouse(): void {
    const mouse = this.mouseState;
    if (mouse === undefined || this.mouseSent || !this.linkUp) return;
    if (!hasCapability(this.peerCaps!, Capability.MOUSE_STATE)) return;
    this.mouseSent = true;
    this.send({ kind: "mouse_state", ...mouse });
  }
}
