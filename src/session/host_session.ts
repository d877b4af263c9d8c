// This module is browser compatible.

import { Capability } from "../protocol/capability.ts";
import { ClipboardType } from "../protocol/clipboard_type.ts";
import { capabilityWords } from "../protocol/capability_words.ts";
import { decodePayload } from "../protocol/_decode_payload.ts";
import { encodeMessage } from "../protocol/encode_message.ts";
import { hasCapability } from "../protocol/has_capability.ts";
import type { MessagePayload, PayloadOptions } from "../protocol/message_payload.ts";
import { MessageType } from "../protocol/message_type.ts";
import { agentMessage } from "../wire/_message_reader.ts";
import type { AgentMessage } from "../wire/agent_message.ts";
import { hostInternals, sessionInternals } from "./_internals.ts";
import { Outbox, sessionStreamInit } from "./_outbox.ts";
import { RequestTable } from "./_requests.ts";
import { serialBefore } from "./_serial.ts";
import {
  callProvider,
  checkMouse,
  checkSelection,
  checkTimeout,
  checkTypes,
  DEFAULT_GUEST_REQUEST_TIMEOUT,
  DEFAULT_REQUEST_TIMEOUT,
  failClosed,
  grabPayload,
  grabsToSend,
  type MouseState,
  negotiatedLayout,
  sessionLimits,
  startRequest,
} from "./_common.ts";
import { ClipboardError } from "./clipboard_error.ts";
import type { ClipboardOffer } from "./clipboard_offer.ts";
import type { HostSessionState, SelectionState } from "./host_session_state.ts";
import type { ResumedRequest } from "./resumed_request.ts";
import type { MouseInput } from "./mouse_input.ts";
import type { SessionLimits } from "./session_limits.ts";
import type { SessionDiagnostic } from "./session_diagnostic.ts";

/** What a {@linkcode HostSession} tells the relay about the guest's clipboard. */
export interface HostClipboardHandler {
  /** The guest now owns `selection` and offers `types` (`ClipboardType` values). */
  onGuestGrab?(selection: number, types: readonly number[]): void;
  /** The guest no longer owns `selection` (it released it, or restarted). */
  onGuestRelease?(selection: number): void;
  /**
   * The guest pastes what the host grabbed: return the data of `type`, or
   * `undefined` (or empty data) if there is none, in which case the guest gets
   * a CLIPBOARD_RELEASE and its paste fails fast. May return a promise; the
   * request stays pending meanwhile.
   */
  provide?(
    selection: number,
    type: number,
  ): Uint8Array | undefined | Promise<Uint8Array | undefined>;
}

/** Options of {@linkcode HostSession}. */
export interface HostSessionOptions extends SessionLimits {
  /** Offer an absolute mouse (announce MOUSE_STATE). Default `true`. */
  mouse?: boolean;
  /**
   * Share the clipboard (announce CLIPBOARD_BY_DEMAND, CLIPBOARD_SELECTION and
   * CLIPBOARD_GRAB_SERIAL): `true`, `false`, or a handler, which implies `true`.
   * Default `true`.
   */
  clipboard?: boolean | HostClipboardHandler;
  /**
   * Largest clipboard data the guest may send, in bytes: announced with the
   * MAX_CLIPBOARD capability, sent as MAX_CLIPBOARD when the guest has it, and
   * enforced on receive. Default: no limit beyond the message size limit.
   */
  maxClipboard?: number;
  /** Milliseconds a host `request` waits for the guest's data; 0 waits forever. Default 30 000. */
  requestTimeout?: number;
  /**
   * Milliseconds a guest's paste may wait for the provider; then the guest
   * gets a release, so the user's paste fails instead of hanging. 0 waits
   * forever. Default 10 000.
   */
  guestRequestTimeout?: number;
  /**
   * Milliseconds before the session asks again when the guest leaves its
   * announcement unanswered (or, after a reconnected restore, its probe):
   * bytes a new client writes while the guest is still closing its port for
   * the previous one are dropped by the guest. It asks again after this
   * delay, then after twice and four times it; 0 never asks again. Default 1000.
   */
  retryInterval?: number;
  /** The guest announced its capabilities: it (re)started. */
  onGuestCaps?(caps: readonly number[]): void;
  /** Every message the session does not handle itself (REPLY, FILE_XFER_*, unknown and invalid ones, …). */
  onMessage?(payload: MessagePayload, message: AgentMessage): void;
  /** Something the session ignored, adjusted or refused. */
  onDiagnostic?(diagnostic: SessionDiagnostic): void;
}

/** Options of {@linkcode HostSession.request}. */
export interface RequestOptions {
  /** Milliseconds to wait; overrides the session's `requestTimeout`. */
  timeout?: number;
  /** Cancels the request. */
  signal?: AbortSignal;
}

interface GuestRequest {
  type: number;
  /** Expires the request: the guest then gets a release. */
  timer: ReturnType<typeof setTimeout> | undefined;
}

/** How the session takes over a restored state; see `HostInternals.restore`. */
export interface RestoreMode {
  /** The guest saw its port close and reopen since the state was taken. */
  reconnected: boolean;
  /**
   * The old relay read everything the guest sent until its connection
   * closed: no guest grab was lost, so the guest's serials are the state's.
   */
  drained: boolean;
  /** The state holds the guest's offers (a lossless checkpoint). */
  offers: boolean;
}

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
export class HostSession
  extends TransformStream<AgentMessage | readonly AgentMessage[], AgentMessage[]> {
  readonly #mouseOn: boolean;
  readonly #clipboardOn: boolean;
  readonly #handler: HostClipboardHandler;
  // The callbacks, not the options object: it may hold a large `restore`.
  readonly #onDiagnostic: HostSessionOptions["onDiagnostic"];
  readonly #onMessage: HostSessionOptions["onMessage"];
  readonly #onGuestCaps: HostSessionOptions["onGuestCaps"];
  readonly #maxClipboard: number | undefined;
  readonly #timeout: number;
  readonly #guestTimeout: number;
  readonly #limits: Required<SessionLimits>;
  readonly #outbox: Outbox;
  readonly #requests: RequestTable;
  #hostCaps: number[];
  #guestCaps: number[] | undefined;
  #layout: PayloadOptions;
  #lastSerial = [0, 0, 0];
  #offers: (ClipboardOffer | undefined)[] = [undefined, undefined, undefined];
  #owned: (readonly number[] | undefined)[] = [undefined, undefined, undefined];
  #ownedSent = [false, false, false];
  #guestRequests: GuestRequest[][] = [[], [], []];
  #guestMax: number | undefined;
  /** The guest's pastes kept to be served once the session may send again. */
  #deferred: number[][] = [[], [], []];
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
  readonly #retryInterval: number;
  /** Probes sent and not yet answered. */
  #probes = 0;
  /** The guest announced itself while the session was sealed: nobody answered it. */
  #sealedCaps = false;
  #closed = false;

  /**
   * Creates a host session; it announces its capabilities at once.
   *
   * @param options Features, handlers and limits.
   */
  constructor(options: HostSessionOptions = {}) {
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
      run: (fn) =>
        outbox.run(() => {
          this.#announce();
          return fn();
        }),
      close: (reason) => this.#close(reason),
      queuedBytes: () => outbox.queuedBytes,
    });
    hostInternals.set(this, {
      snapshot: () => this.#snapshot(),
      restore: (state, mode) => this.#restore(state, mode),
      seal: () => {
        outbox.seal();
        clearTimeout(this.#askTimer);
      },
      answeredAll: () => !this.#sealedCaps,
    });
    this.#onDiagnostic = options.onDiagnostic;
    this.#onMessage = options.onMessage;
    this.#onGuestCaps = options.onGuestCaps;
    this.#mouseOn = options.mouse ?? true;
    this.#clipboardOn = options.clipboard !== false;
    this.#handler = typeof options.clipboard === "object" ? options.clipboard : {};
    this.#limits = sessionLimits("HostSession", options);
    this.#requests = new RequestTable(this.#limits.maxRequests);
    if (options.maxClipboard !== undefined) {
      const max = options.maxClipboard;
      if (!Number.isInteger(max) || max < 0 || max > 0x7fff_ffff) {
        throw new RangeError(
          `Cannot create HostSession: maxClipboard must be an integer from 0 to 2^31-1, got ${max}`,
        );
      }
      this.#maxClipboard = max;
    }
    this.#timeout = checkTimeout(options.requestTimeout ?? DEFAULT_REQUEST_TIMEOUT);
    this.#guestTimeout = checkTimeout(options.guestRequestTimeout ?? DEFAULT_GUEST_REQUEST_TIMEOUT);
    this.#retryInterval = checkTimeout(options.retryInterval ?? DEFAULT_RETRY_INTERVAL);
    const bits: number[] = [];
    if (this.#mouseOn) bits.push(Capability.MOUSE_STATE);
    if (this.#clipboardOn) {
      bits.push(
        Capability.CLIPBOARD_BY_DEMAND,
        Capability.CLIPBOARD_SELECTION,
        Capability.CLIPBOARD_GRAB_SERIAL,
      );
    }
    if (this.#maxClipboard !== undefined) bits.push(Capability.MAX_CLIPBOARD);
    this.#hostCaps = capabilityWords(bits);
    this.#layout = this.#layoutFor(undefined);
    // At the end of this turn, so a pipeline can take the output or restore
    // a checkpoint first.
    queueMicrotask(() => this.#outbox.run(() => this.#announce()));
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
    return this.#resumed;
  }

  /** The capabilities this session announced to the guest. */
  get hostCaps(): readonly number[] {
    return this.#hostCaps;
  }

  /** The guest's capability words, or `undefined` until it announces them. */
  get guestCaps(): readonly number[] | undefined {
    return this.#guestCaps;
  }

  /** The negotiated clipboard layout: selection prefix and grab serials. */
  get layout(): { readonly selection: boolean; readonly grabSerial: boolean } {
    return { selection: this.#layout.selection!, grabSerial: this.#layout.grabSerial! };
  }

  /** What the guest offers on `selection`, or `undefined` if it does not own it. */
  guestOffer(selection: number): ClipboardOffer | undefined {
    return this.#offers[checkSelection(selection)];
  }

  /** The types the host offers on `selection`, or `undefined` if it does not own it. */
  hostOffer(selection: number): readonly number[] | undefined {
    return this.#owned[checkSelection(selection)];
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
    checkSelection(selection);
    checkTypes(types, this.#limits.maxGrabTypes, MAX_OWNED_TYPE);
    this.#checkClipboard(selection, "grab");
    this.#owned[selection] = [...types];
    this.#ownedSent[selection] = false;
    if (this.#offers[selection] !== undefined) {
      this.#offers[selection] = undefined;
      this.#handler.onGuestRelease?.(selection);
    }
    if (this.#linkUp) this.#sendGrab(selection);
  }

  /**
   * The host gives `selection` up: the guest is told, and pending guest
   * pastes of it fail fast. Does nothing if the host does not own it.
   *
   * @param selection `Selection` value.
   */
  release(selection: number): void {
    checkSelection(selection);
    if (this.#ended || this.#owned[selection] === undefined) return;
    if (!this.#ownedSent[selection]) {
      this.#owned[selection] = undefined; // the guest never heard of it
      return;
    }
    this.#releaseHost(selection);
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
    try {
      checkSelection(selection);
      this.#checkClipboard(selection, "request");
    } catch (error) {
      return Promise.reject(error);
    }
    const timeout = options?.timeout === undefined ? this.#timeout : checkTimeout(options.timeout);
    // While probing, what is sent may be dropped: the request goes once the guest answers.
    const later = this.#waiting === "probe";
    const { result, taken } = startRequest(
      this.#requests,
      this.#offers[selection],
      "guest",
      selection,
      type,
      timeout,
      options?.signal,
      later ? undefined : this.#outbox,
      this.#layout,
    );
    // A refused request is never sent, now or once the probe is answered.
    if (later && taken) this.#unsent.push({ selection, type });
    return result;
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
    if (!this.#mouseOn) throw new TypeError("Cannot send mouse state: the session has mouse off");
    const mouse = checkMouse(state);
    if (this.#ended) return false;
    this.#mouse = mouse;
    this.#mouseSent = false;
    this.#flushMouse();
    return true;
  }

  /** Closed, or sealed at a hand-off: nothing more leaves. */
  get #ended(): boolean {
    return this.#closed || this.#outbox.sealed;
  }

  /** The guest announced itself and answered what the session asked: grabs and mouse may go. */
  get #linkUp(): boolean {
    return this.#guestCaps !== undefined && this.#waiting === undefined;
  }

  #checkClipboard(selection: number, action: string): void {
    if (this.#ended) {
      throw new ClipboardError("CLOSED", `Cannot ${action}: the session ended`, selection);
    }
    if (!this.#clipboardOn) {
      throw new ClipboardError(
        "DISABLED",
        `Cannot ${action}: the session has the clipboard off`,
        selection,
      );
    }
    const caps = this.#guestCaps;
    if (caps === undefined) return;
    if (!hasCapability(caps, Capability.CLIPBOARD_BY_DEMAND)) {
      throw new ClipboardError(
        "DISABLED",
        `Cannot ${action}: the guest has no clipboard by demand`,
        selection,
      );
    }
    if (selection !== 0 && !this.#layout.selection) {
      throw new ClipboardError(
        "UNSUPPORTED",
        `Cannot ${action}: selection ${selection} needs CLIPBOARD_SELECTION, which the guest lacks`,
        selection,
      );
    }
  }

  #layoutFor(peer: readonly number[] | undefined): PayloadOptions {
    return negotiatedLayout(this.#hostCaps, peer, this.#limits);
  }

  #clipboardNegotiated(): boolean {
    return this.#clipboardOn && this.#guestCaps !== undefined &&
      hasCapability(this.#guestCaps, Capability.CLIPBOARD_BY_DEMAND) &&
      hasCapability(this.#hostCaps, Capability.CLIPBOARD_BY_DEMAND);
  }

  #send(payload: MessagePayload): void {
    this.#outbox.send(encodeMessage(payload, this.#layout));
  }

  #diagnose(diagnostic: SessionDiagnostic): void {
    this.#onDiagnostic?.(diagnostic);
  }

  #receiveAll(messages: readonly AgentMessage[]): void {
    for (const m of messages) {
      this.#receive(m.port, m.type, m.opaque, m.data, 0, m.data.length, m.skipped, m);
    }
  }

  #announce(): void {
    if (this.#announced || this.#restored || this.#closed) return;
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
    if (this.#ended || this.#waiting === undefined) return;
    if (this.#waiting === "probe" && this.#asks === PROBES) return this.#reannounce();
    if (this.#waiting === "caps" && this.#asks === ANNOUNCEMENTS) return;
    if (this.#waiting === "caps") {
      this.#outbox.send(
        encodeMessage(
          { kind: "announce_capabilities", request: true, caps: this.#hostCaps },
          this.#layout,
        ),
      );
    } else {
      this.#probes++;
      this.#outbox.send(
        encodeMessage(
          { kind: "clipboard_request", selection: PROBE_SELECTION, type: ClipboardType.NONE },
          this.#layout,
        ),
      );
    }
    this.#scheduleAsk();
  }

  /** Asks again after the retry interval, doubled for every time it asked. */
  #scheduleAsk(): void {
    if (this.#retryInterval === 0) return;
    const delay = this.#retryInterval * 2 ** this.#asks++;
    this.#askTimer = setTimeout(() => this.#outbox.run(() => this.#askAgain()), delay);
  }

  /**
   * Announces the session with request=1, which sets the guest's serials
   * back to 0 (and releases what its user offered): for when they cannot be
   * known. What waited to be sent is dropped; the grabs and the mouse go again
   * once the guest answers.
   */
  #reannounce(): void {
    this.#unsent = [];
    for (let s = 0; s < 3; s++) {
      this.#ownedSent[s] = false;
      this.#deferred[s] = [];
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
      if (n <= this.#requests.count(selection, type)) {
        this.#send({ kind: "clipboard_request", selection, type });
      }
    }
    const clipboard = this.#clipboardNegotiated();
    for (const s of grabsToSend(this.#owned, this.#ownedSent, clipboard, this.#layout, false)) {
      this.#sendGrab(s);
    }
    this.#serveDeferred();
    this.#flushMouse();
  }

  #serveDeferred(): void {
    for (let s = 0; s < 3; s++) {
      const types = this.#deferred[s]!;
      this.#deferred[s] = [];
      for (const type of types) this.#onGuestRequest(s, type);
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
    this.#announce();
    const payload = decodePayload(type, bytes, start, end, skipped, this.#layout);
    switch (payload.kind) {
      case "announce_capabilities":
        return this.#onCaps(payload.caps, payload.request);
      case "clipboard_grab":
      case "clipboard_request":
      case "clipboard":
      case "clipboard_release":
        if (!this.#clipboardNegotiated()) {
          return this.#diagnose({
            code: "CLIPBOARD_DISABLED",
            message: `Ignored ${payload.kind}: the clipboard is not negotiated`,
            payload,
          });
        }
        if (payload.selection > 2) {
          return this.#diagnose({
            code: "BAD_SELECTION",
            message: `Ignored ${payload.kind} for selection ${payload.selection}`,
            selection: payload.selection,
            payload,
          });
        }
        if (payload.kind === "clipboard_grab") {
          return this.#onGuestGrab(payload.selection, payload.types, payload.serial);
        }
        if (payload.kind === "clipboard_request") {
          return this.#onGuestRequest(payload.selection, payload.type);
        }
        if (payload.kind === "clipboard") {
          return this.#onGuestData(payload.selection, payload.type, payload.data, payload);
        }
        return this.#onGuestRelease(payload.selection);
      case "max_clipboard":
        this.#guestMax = payload.max < 0 ? undefined : payload.max;
        break;
      case "invalid":
        if (
          payload.type === MessageType.CLIPBOARD_RELEASE && payload.data.length === 1 &&
          payload.data[0]! < 3 && this.#clipboardNegotiated()
        ) {
          this.#diagnose({
            code: "LEGACY_RELEASE",
            message: "Accepted the Linux agent's 1-byte CLIPBOARD_RELEASE",
            selection: payload.data[0]!,
            payload,
          });
          return this.#onGuestRelease(payload.data[0]!);
        }
        this.#diagnose({
          code: "INVALID_PAYLOAD",
          message: `Ignored invalid message: ${payload.reason}`,
          payload,
        });
        break;
    }
    this.#onMessage?.(
      payload,
      message ?? agentMessage(port, type, opaque, bytes, start, end, skipped),
    );
  }

  #onCaps(caps: readonly number[], request: boolean): void {
    const again = this.#guestCaps !== undefined;
    // Any announcement answers ours; one that arrives while probing means the guest restarted.
    this.#unsent = [];
    this.#waiting = undefined;
    clearTimeout(this.#askTimer);
    if (this.#outbox.sealed) this.#sealedCaps = true;
    this.#unseen = [false, false, false];
    this.#guestCaps = [...caps];
    this.#layout = this.#layoutFor(caps);
    // The guest's first announcement is answered with request=0, as QEMU does. A second one
    // means its agent restarted, but the Linux daemon keeps its grab serials when only the
    // session agent restarts (a logout): request=1 makes it zero them, as we do below.
    if (request) {
      this.#send({ kind: "announce_capabilities", request: again, caps: this.#hostCaps });
    }
    this.#lastSerial = [0, 0, 0];
    // The guest (re)started: what it offered and asked for is gone.
    this.#requests.failAll((s) =>
      new ClipboardError("PEER_RESET", "Cannot paste: the guest restarted", s)
    );
    for (let s = 0; s < 3; s++) {
      this.#dropGuestRequests(s);
      this.#deferred[s] = [];
      if (this.#offers[s] !== undefined) {
        this.#offers[s] = undefined;
        this.#handler.onGuestRelease?.(s);
      }
    }
    this.#duplicates = [0, 0, 0];
    this.#onGuestCaps?.(this.#guestCaps);
    // Once per guest (re)start: its request=1 announcement, or the first one.
    const start = request || !again;
    if (
      start && this.#maxClipboard !== undefined && hasCapability(caps, Capability.MAX_CLIPBOARD)
    ) {
      this.#send({ kind: "max_clipboard", max: this.#maxClipboard });
    }
    this.#flushMouse();
    const clipboard = this.#clipboardNegotiated();
    for (const s of grabsToSend(this.#owned, this.#ownedSent, clipboard, this.#layout, request)) {
      this.#sendGrab(s);
    }
  }

  /**
   * Grabs with the serial of the guest's last grab (0 before any), and keeps
   * it: unlike QEMU, the host never moves its serial on. The Linux agent
   * accepts a host grab whose serial is its next one or one less, so a host
   * grab lost with a connection (bytes written to a VM that stopped for its
   * migration) never puts the host ahead of the guest.
   */
  #sendGrab(selection: number): void {
    this.#send(
      grabPayload(selection, this.#owned[selection]!, this.#layout, this.#lastSerial, false),
    );
    this.#ownedSent[selection] = true;
  }

  #flushMouse(): void {
    const mouse = this.#mouse;
    if (mouse === undefined || this.#mouseSent || !this.#linkUp) return;
    if (!hasCapability(this.#guestCaps!, Capability.MOUSE_STATE)) return;
    this.#mouseSent = true;
    this.#send({ kind: "mouse_state", ...mouse });
  }

  #onGuestGrab(selection: number, types: readonly number[], serial: number | undefined): void {
    if (serial !== undefined) {
      const last = this.#lastSerial[selection]!;
      if (serialBefore(serial, last)) {
        return this.#diagnose({
          code: "GRAB_DISCARDED",
          message:
            `Discarded the guest's grab of selection ${selection}: serial ${serial} is older than ${last}`,
          selection,
        });
      }
      this.#lastSerial[selection] = serial;
    }
    this.#unseen[selection] = false;
    this.#owned[selection] = undefined;
    this.#ownedSent[selection] = false;
    this.#dropGuestRequests(selection);
    this.#deferred[selection] = [];
    this.#offers[selection] = serial === undefined ? { types } : { serial, types };
    this.#handler.onGuestGrab?.(selection, types);
  }

  #onGuestRelease(selection: number): void {
    this.#requests.failAll(
      (s) => new ClipboardError("RELEASED", "Cannot paste: the guest released the selection", s),
      selection,
    );
    if (
      this.#offers[selection] === undefined && this.#owned[selection] === undefined &&
      this.#unseen[selection]
    ) {
      // The guest owned it, so it grabbed it, and that grab never arrived: it was lost with the
      // old relay's connection, and moved the guest's serial on unseen. (Where the host owns the
      // selection, the guest still owning it means the host's own grab was lost: its serial is
      // the one the guest expects.)
      this.#unseen = [false, false, false];
      this.#diagnose({
        code: "LOST_GRAB",
        message:
          `The guest released selection ${selection}, whose grab never arrived: its serial moved on unseen, so the session announces itself to set the serials back to 0`,
        selection,
      });
      if (!this.#ended) this.#reannounce();
      return;
    }
    if (this.#offers[selection] === undefined) return;
    this.#offers[selection] = undefined;
    this.#handler.onGuestRelease?.(selection);
  }

  #onGuestData(selection: number, type: number, data: Uint8Array, payload: MessagePayload): void {
    if (
      selection === PROBE_SELECTION && type === ClipboardType.NONE && this.#probes > 0 &&
      this.#requests.types(selection).length === 0
    ) {
      return this.#probeAnswered();
    }
    if (this.#maxClipboard !== undefined && data.length > this.#maxClipboard) {
      const error = new ClipboardError(
        "TOO_LARGE",
        `Cannot paste: the guest sent ${data.length} bytes, over the limit of ${this.#maxClipboard}`,
        selection,
      );
      this.#diagnose({ code: "TOO_LARGE", message: error.message, selection, error });
      if (this.#requests.fail(selection, type, error)) return;
    } else if (this.#requests.answer(selection, type, data)) {
      return;
    }
    if (this.#duplicates[selection]! > 0) {
      this.#duplicates[selection]!--; // the second answer to a request sent again
      return;
    }
    this.#diagnose({
      code: "UNSOLICITED_DATA",
      message:
        `Ignored clipboard data of type ${type} for selection ${selection}: no request waits for it`,
      selection,
      payload,
    });
  }

  #onGuestRequest(selection: number, type: number): void {
    if (this.#outbox.sealed || this.#waiting === "probe") {
      // Nothing can leave now: kept for whoever sends next (this session, or the next relay).
      const kept = this.#deferred[selection]!;
      if (kept.length + this.#guestRequests[selection]!.length >= this.#limits.maxRequests) {
        return this.#diagnose({
          code: "TOO_MANY_REQUESTS",
          message:
            `The guest has ${kept.length} pastes waiting on selection ${selection}; this one is dropped`,
          selection,
        });
      }
      kept.push(type);
      return;
    }
    const owned = this.#owned[selection];
    if (owned === undefined || !owned.includes(type) || this.#handler.provide === undefined) {
      return this.#releaseHost(selection);
    }
    const queue = this.#guestRequests[selection]!;
    if (queue.length >= this.#limits.maxRequests) {
      this.#diagnose({
        code: "TOO_MANY_REQUESTS",
        message:
          `The guest has ${queue.length} pastes pending on selection ${selection}; it gets a release`,
        selection,
      });
      return this.#releaseHost(selection);
    }
    const request: GuestRequest = { type, timer: undefined };
    if (this.#guestTimeout > 0) {
      request.timer = setTimeout(() => {
        if (!this.#guestRequests[selection]!.includes(request) || this.#ended) return;
        this.#diagnose({
          code: "REQUEST_EXPIRED",
          message:
            `The guest's paste on selection ${selection} waited ${this.#guestTimeout} ms; it gets a release`,
          selection,
        });
        this.#releaseHost(selection);
      }, this.#guestTimeout);
    }
    queue.push(request);
    callProvider(this.#handler.provide, selection, type, this.#outbox, (data, error) => {
      // Re-read: dropping the selection's requests replaces the list.
      const pending = this.#guestRequests[selection]!;
      const at = pending.indexOf(request);
      if (this.#closed || at < 0) return;
      pending.splice(at, 1);
      clearTimeout(request.timer);
      if (error !== undefined) {
        this.#diagnose({
          code: "PROVIDER_FAILED",
          message:
            `The clipboard provider failed for selection ${selection}; the guest gets a release`,
          selection,
          error,
        });
        return this.#releaseHost(selection);
      }
      if (data === undefined || data.length === 0) return this.#releaseHost(selection);
      if (this.#guestMax !== undefined && data.length > this.#guestMax) {
        const refused = new ClipboardError(
          "TOO_LARGE",
          `Cannot send ${data.length} bytes: the guest accepts at most ${this.#guestMax}`,
          selection,
        );
        this.#diagnose({ code: "TOO_LARGE", message: refused.message, selection, error: refused });
        return this.#releaseHost(selection);
      }
      this.#send({ kind: "clipboard", selection, type, data });
    });
  }

  /** Releases a host-owned selection, failing the guest's pending pastes of it fast. */
  #releaseHost(selection: number): void {
    this.#owned[selection] = undefined;
    this.#ownedSent[selection] = false;
    this.#dropGuestRequests(selection);
    this.#send({ kind: "clipboard_release", selection });
  }

  /** Forgets the guest's pending pastes of `selection`; their late answers go nowhere. */
  #dropGuestRequests(selection: number): void {
    for (const request of this.#guestRequests[selection]!) clearTimeout(request.timer);
    this.#guestRequests[selection] = [];
  }

  #snapshot(): HostSessionState {
    const selection = (s: number): SelectionState => {
      const owned = this.#owned[s];
      const offer = this.#offers[s];
      return {
        lastSerial: this.#lastSerial[s]!,
        ...(owned === undefined ? {} : { hostOffer: [...owned] }),
        ...(owned !== undefined && !this.#ownedSent[s] ? { hostOfferSent: false } : {}),
        // A paste asked while probing may name any type; one the host can never own gets a
        // release once the probe is answered, and is not carried on.
        guestRequests: [
          ...this.#guestRequests[s]!.map((r) => r.type),
          ...this.#deferred[s]!.filter((type) => type >= 1 && type <= MAX_OWNED_TYPE),
        ],
        ...(offer === undefined ? {} : { guestOffer: offer }),
        hostRequests: this.#requests.types(s),
      };
    };
    return {
      hostCaps: [...this.#hostCaps],
      ...(this.#guestCaps === undefined ? {} : { guestCaps: [...this.#guestCaps] }),
      selections: [selection(0), selection(1), selection(2)],
      ...(this.#mouse === undefined ? {} : { mouse: { ...this.#mouse, sent: this.#mouseSent } }),
      ...(this.#guestMax === undefined ? {} : { guestMaxClipboard: this.#guestMax }),
      ...(this.#waiting === undefined ? {} : { awaiting: this.#waiting }),
    };
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
  #restore(state: HostSessionState, mode: RestoreMode): void {
    if (this.#announced || this.#closed) {
      throw new TypeError("Cannot restore the session: it has already started");
    }
    const { reconnected, drained, offers } = mode;
    this.#restored = true;
    this.#hostCaps = [...state.hostCaps];
    this.#guestCaps = state.guestCaps === undefined ? undefined : [...state.guestCaps];
    this.#layout = this.#layoutFor(this.#guestCaps);
    this.#guestMax = state.guestMaxClipboard;
    if (state.mouse !== undefined) {
      const { sent, ...mouse } = state.mouse;
      this.#mouse = mouse;
      this.#mouseSent = sent && !drained && !reconnected;
    }
    // After a reconnect, a guest that never announced itself or an unknown serial: start again
    // as a new client. On a stream that goes on, the old relay's announcement was sent already.
    const quiet = !reconnected || (this.#guestCaps !== undefined && drained);
    const probe = reconnected && quiet && this.#clipboardNegotiated() && this.#layout.selection!;
    this.#outbox.run(() => {
      state.selections.forEach((s, selection) => {
        this.#lastSerial[selection] = s.lastSerial;
        this.#owned[selection] = s.hostOffer === undefined ? undefined : [...s.hostOffer];
        this.#ownedSent[selection] = !reconnected && !drained && s.hostOffer !== undefined &&
          s.hostOfferSent !== false && this.#guestCaps !== undefined;
        // A guest release of a selection it did not offer then means a grab lost on the way.
        this.#unseen[selection] = quiet && drained && offers;
        for (const type of s.hostRequests ?? []) {
          const result = this.#requests.add(selection, type, this.#timeout);
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
          if (s.guestOffer !== undefined) this.#offers[selection] = s.guestOffer;
          this.#deferred[selection] = [...s.guestRequests];
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

  #close(reason?: unknown): void {
    if (this.#closed) return;
    this.#closed = true;
    clearTimeout(this.#askTimer);
    failClosed(this.#requests, reason);
    for (let s = 0; s < 3; s++) this.#dropGuestRequests(s);
  }
}
