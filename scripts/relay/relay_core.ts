// The relay's core: a host pipeline to the guest's port, driven by JSON commands and reporting
// JSON events. Web-platform only: the Deno and Node entry points give it a transport and carry
// its lines. Commands come from standard input or a WebSocket client; answers go back to whoever
// asked, and what the guest does goes to everyone.
import {
  ClipboardError,
  ClipboardType,
  createHostPipeline,
  type HostPipeline,
  type SessionDiagnostic,
  type StateCheckpoint,
  type TransferProgress,
  type Transport,
} from "../../mod.ts";
import { encodeBase64 } from "./base64.ts";
import { decodeFileList, isTextType, mimeOfType, pathsToUriList } from "./mime.ts";
import {
  type Command,
  CommandError,
  type CommandId,
  parseCommand,
  selectionName,
} from "./protocol.ts";
import type { ClipboardCopy, RelayState } from "./state_file.ts";

/** One JSON event. `event` names it; the other fields depend on it (see the README). */
export interface RelayEvent {
  event: string;
  [field: string]: unknown;
}

/** Where an event goes. */
export type EventSink = (event: RelayEvent) => void;

/** Options of {@linkcode RelayCore}. */
export interface RelayCoreOptions {
  /** Offer an absolute mouse. */
  mouse: boolean;
  /** Share the clipboard. */
  clipboard: boolean;
  /** Largest clipboard data the guest may send. */
  maxClipboard?: number | undefined;
  /** The state another relay handed off. */
  restore?: RelayState | undefined;
  /** How the transport relates to the one the state was taken on. */
  resume?: "continued" | "reconnected" | undefined;
  /** Events for everyone: stdout and every WebSocket client. */
  broadcast: EventSink;
  /** A `checkpoint` command: the entry point hands the relay off. */
  onCheckpoint(id: CommandId | undefined, reply: EventSink): void;
  /** The pipeline's checkpoint stage (continuous, for a relay that keeps its state). */
  checkpoints?: StateCheckpoint | undefined;
  /**
   * Fetch every guest copy as the guest makes it and keep it, so that the host can still paste
   * it when the guest's agent has let go of it: it does when its port closes, that is whenever
   * the relay restarts. For a relay that keeps its state.
   */
  keepGuestCopies?: boolean | undefined;
  /**
   * The host's or the kept guest copies changed (their data is not in the checkpoint); a promise
   * that settles once the change is stored. A copy is acknowledged, and a guest copy reported
   * kept, only then.
   */
  onCopiesChange?: (() => Promise<void> | undefined) | undefined;
}

/** The type a paste takes when it names none: text if the guest offers it, else the first. */
function preferredType(types: readonly number[] | undefined): number | undefined {
  return types?.includes(ClipboardType.UTF8_TEXT) ? ClipboardType.UTF8_TEXT : types?.[0];
}

const hex = (words: readonly number[]) => words.map((w) => `0x${w.toString(16).padStart(8, "0")}`);

/** The part of an event that names a command's id, if it had one. */
const idOf = (id: CommandId | undefined) => id === undefined ? {} : { id };

/** The event of a failed command. */
export function errorEvent(error: unknown, command?: { cmd?: string; id?: CommandId }): RelayEvent {
  const code = error instanceof CommandError || error instanceof ClipboardError
    ? error.code
    : error instanceof RangeError || error instanceof TypeError
    ? "BAD_COMMAND"
    : "INTERNAL";
  const id = command?.id ?? (error instanceof CommandError ? error.id : undefined);
  return {
    event: "error",
    ...idOf(id),
    ...(command?.cmd === undefined ? {} : { cmd: command.cmd }),
    code,
    message: error instanceof Error ? error.message : String(error),
  };
}

/** The event that carries clipboard data: text for text types, base64 for the rest. */
export function dataEvent(selection: number, type: number, data: Uint8Array): RelayEvent {
  const head = { event: "data", selection: selectionName(selection), mime: mimeOfType(type) };
  if (isTextType(type)) {
    try {
      const text = new TextDecoder("utf-8", { fatal: true }).decode(data);
      if (type === ClipboardType.UTF8_TEXT) return { ...head, bytes: data.length, text };
      const list = decodeFileList(data);
      if ("paths" in list) {
        return {
          ...head,
          bytes: data.length,
          text: pathsToUriList(list.paths),
          action: list.action,
        };
      }
    } catch {
      // Not UTF-8: sent as base64 below, with the raw bytes.
    }
    return { ...head, bytes: data.length, base64: encodeBase64(data), raw: true };
  }
  return { ...head, bytes: data.length, base64: encodeBase64(data) };
}

/**
 * A relay: a host pipeline over `transport`, commands in, events out. `done` settles when the
 * pipeline ends.
 */
export class RelayCore {
  readonly pipeline: HostPipeline;
  readonly #options: RelayCoreOptions;
  /** The data of the host's copies, per selection, by type. */
  readonly #copies: Map<number, Uint8Array>[] = [new Map(), new Map(), new Map()];
  /** The guest's last copy per selection, fetched as it was made (`keepGuestCopies`). */
  readonly #kept: (ClipboardCopy | undefined)[] = [undefined, undefined, undefined];
  /** The requests to the guest in flight, by `selection/type`. */
  readonly #requests = new Map<string, Promise<Uint8Array>>();
  /** Guest grabs per selection: a fetch that finishes after the next grab is not kept. */
  readonly #grabs = [0, 0, 0];
  /** The last progress told each way. */
  readonly #progress = new Map<string, TransferProgress>();
  /** Transfers begun each way: the `transfer` number of `progress` events. */
  readonly #transfers = { in: 0, out: 0 };
  /** The last `caps` told (a restored session's, told at start): the same again is not. */
  #caps: string | undefined;
  #stopping = false;

  constructor(transport: Transport, options: RelayCoreOptions) {
    this.#options = options;
    const broadcast = options.broadcast;
    for (const copy of options.restore?.hostCopies ?? []) {
      this.#copies[copy.selection]!.set(copy.type, copy.data);
    }
    for (const copy of options.restore?.guestCopies ?? []) this.#kept[copy.selection] = copy;
    this.pipeline = createHostPipeline(transport, {
      mouse: options.mouse,
      ...(options.checkpoints === undefined ? {} : { checkpoints: options.checkpoints }),
      ...(options.maxClipboard === undefined ? {} : { maxClipboard: options.maxClipboard }),
      ...(options.restore?.checkpoint === undefined
        ? {}
        : { restore: options.restore.checkpoint, resume: options.resume ?? "reconnected" }),
      clipboard: options.clipboard
        ? {
          onGuestGrab: (selection) => {
            void this.#clearCopies(selection);
            broadcast(this.#offerEvent(selection)!);
            if (options.keepGuestCopies) this.#keep(selection);
          },
          onGuestRelease: (selection) =>
            broadcast({ event: "release", selection: selectionName(selection), by: "guest" }),
          provide: (selection, type) => {
            const data = this.#copies[selection]!.get(type);
            if (data !== undefined) {
              broadcast({
                event: "served",
                selection: selectionName(selection),
                mime: mimeOfType(type),
                bytes: data.length,
              });
            }
            return data;
          },
        }
        : false,
      onGuestCaps: () => {
        const caps = this.#capsEvent()!;
        if (JSON.stringify(caps) === this.#caps) return;
        this.#caps = JSON.stringify(caps);
        broadcast(caps);
      },
      onDiagnostic: (diagnostic) => broadcast(diagnosticEvent(diagnostic)),
      onProgress: (progress) => this.#onProgress(progress),
    });
    const caps = this.#capsEvent();
    this.#caps = caps && JSON.stringify(caps);
    // What a restored session's previous relay had asked the guest for arrives here.
    for (const resumed of this.pipeline.session.resumedRequests) {
      resumed.result.then(
        (data) => broadcast({ ...dataEvent(resumed.selection, resumed.type, data), resumed: true }),
        (error) => broadcast({ ...errorEvent(error, { cmd: "paste" }), resumed: true }),
      );
    }
  }

  /** The pipeline's lifetime. */
  get done(): Promise<void> {
    return this.pipeline.done;
  }

  /** From now on every command is refused with `STOPPING`. */
  stop(): void {
    this.#stopping = true;
  }

  /**
   * What a new client needs to know: the guest's caps and what it offers, as events. After a
   * restore, the caller sends these to standard output too.
   */
  stateEvents(): RelayEvent[] {
    const events: RelayEvent[] = [];
    const caps = this.#capsEvent();
    if (caps !== undefined) events.push(caps);
    for (let s = 0; s < 3; s++) {
      const offer = this.#offerEvent(s);
      if (offer !== undefined) events.push(offer);
    }
    this.#copies.forEach((copies, selection) => {
      for (const [type, data] of copies) events.push(copiedEvent(selection, type, data));
    });
    return events;
  }

  /** Runs one command line; what answers it goes to `reply`. Never throws. */
  async run(line: string, reply: EventSink): Promise<void> {
    let command: Command;
    try {
      command = parseCommand(line);
    } catch (error) {
      return reply(errorEvent(error));
    }
    if (this.#stopping) {
      return reply(
        errorEvent(
          new CommandError("STOPPING", "Cannot run command: the relay is stopping"),
          command,
        ),
      );
    }
    try {
      await this.#run(command, reply);
    } catch (error) {
      reply(errorEvent(error, command));
    }
  }

  /**
   * Takes the checkpoint and the host's copies; the pipeline lets go of the transport. The
   * connection ends with the hand-off, so the pipeline drains it: it writes what is queued,
   * half-closes, and reads what the guest had sent until QEMU closes its side.
   */
  async checkpoint(): Promise<Pick<RelayState, "checkpoint" | "hostCopies" | "guestCopies">> {
    const checkpoint = await this.pipeline.checkpoint({ drain: true });
    return { checkpoint, hostCopies: this.hostCopies(), guestCopies: this.guestCopies() };
  }

  /** The data of the guest's copies the relay keeps. */
  guestCopies(): ClipboardCopy[] {
    return this.#kept.filter((copy) => copy !== undefined);
  }

  /** Fetches the guest's new copy of `selection`; kept unless the guest copies again first. */
  #keep(selection: number): void {
    // The copy kept before stays until this one is: it is the last the host could fetch.
    const grab = ++this.#grabs[selection]!;
    const session = this.pipeline.session;
    const type = preferredType(session.guestOffer(selection)?.types);
    if (type === undefined) return;
    this.#request(selection, type).then(async (data) => {
      if (this.#grabs[selection] !== grab) return;
      this.#kept[selection] = { selection, type, data };
      await this.#options.onCopiesChange?.();
      if (this.#grabs[selection] !== grab) return;
      this.#options.broadcast({
        event: "kept",
        selection: selectionName(selection),
        mime: mimeOfType(type),
        bytes: data.length,
      });
    }, () => {
      // Not kept: the guest let go of it, or it is too large; a paste asks the guest.
    });
  }

  /**
   * Asks the guest for its copy of `selection` as `type`, sharing a request already in flight for
   * the same: the Linux agent answers only one of two at a time (a second one, asked while it
   * converts a large selection, is never answered). A `timeout` given for a shared request is
   * kept too.
   */
  #request(
    selection: number,
    type: number,
    options: { timeout?: number } = {},
  ): Promise<Uint8Array> {
    const key = `${selection}/${type}`;
    const shared = this.#requests.get(key);
    if (shared === undefined) {
      const request = this.pipeline.session.request(selection, type, options);
      const forget = () => void (this.#requests.get(key) === request && this.#requests.delete(key));
      this.#requests.set(key, request);
      request.then(forget, forget);
      return request;
    }
    const timeout = options.timeout;
    if (timeout === undefined || timeout === 0) return shared;
    let timer: ReturnType<typeof setTimeout> | undefined;
    return Promise.race([
      shared,
      new Promise<never>((_, reject) => {
        timer = setTimeout(
          () =>
            reject(
              new ClipboardError(
                "TIMEOUT",
                `Cannot paste: no answer within ${timeout} ms`,
                selection,
              ),
            ),
          timeout,
        );
      }),
    ]).finally(() => clearTimeout(timer));
  }

  /** The data of the host's copies. */
  hostCopies(): ClipboardCopy[] {
    const hostCopies: ClipboardCopy[] = [];
    this.#copies.forEach((copies, selection) => {
      for (const [type, data] of copies) hostCopies.push({ selection, type, data });
    });
    return hostCopies;
  }

  async #clearCopies(selection: number): Promise<void> {
    if (this.#copies[selection]!.size === 0) return;
    this.#copies[selection]!.clear();
    await this.#options.onCopiesChange?.();
  }

  async #run(command: Command, reply: EventSink): Promise<void> {
    const session = this.pipeline.session;
    const ok = () => reply({ event: "ok", ...idOf(command.id), cmd: command.cmd });
    switch (command.cmd) {
      case "copy": {
        session.grab(command.selection, [command.type]);
        this.#copies[command.selection] = new Map([[command.type, command.data]]);
        this.#kept[command.selection] = undefined; // the host's copy replaces the guest's
        await this.#options.onCopiesChange?.();
        ok();
        return this.#options.broadcast(copiedEvent(command.selection, command.type, command.data));
      }
      case "release": {
        const owned = session.hostOffer(command.selection) !== undefined;
        session.release(command.selection);
        await this.#clearCopies(command.selection);
        ok();
        if (!owned) return;
        return this.#options.broadcast({
          event: "release",
          selection: selectionName(command.selection),
          by: "host",
        });
      }
      case "paste": {
        const offer = session.guestOffer(command.selection);
        const kept = this.#kept[command.selection];
        // The last guest copy the relay fetched, for when the agent let go of it: it does when
        // its port closes, and when a relay announces itself.
        const fromKept = kept !== undefined && (command.type ?? kept.type) === kept.type
          ? () =>
            reply({
              ...dataEvent(command.selection, kept.type, kept.data),
              ...idOf(command.id),
              kept: true,
            })
          : undefined;
        if (offer === undefined && fromKept !== undefined) return fromKept();
        const type = command.type ?? preferredType(offer?.types);
        if (type === undefined) {
          throw new ClipboardError(
            "NOT_OFFERED",
            `Cannot paste: the guest offers nothing on ${selectionName(command.selection)}`,
            command.selection,
          );
        }
        const options = command.timeout === undefined ? {} : { timeout: command.timeout };
        let data: Uint8Array;
        try {
          data = await this.#request(command.selection, type, options);
        } catch (error) {
          const released = error instanceof ClipboardError &&
            (error.code === "RELEASED" || error.code === "NOT_OFFERED");
          if (released && fromKept !== undefined) return fromKept();
          throw error;
        }
        return reply({ ...dataEvent(command.selection, type, data), ...idOf(command.id) });
      }
      case "mouse":
        if (!this.#options.mouse) {
          throw new CommandError(
            "DISABLED",
            "Cannot move the mouse: the relay runs with --no-mouse",
          );
        }
        if (
          !session.mouse({
            x: command.x,
            y: command.y,
            buttons: command.buttons,
            display: command.display,
          })
        ) {
          throw new ClipboardError("CLOSED", "Cannot move the mouse: the session ended");
        }
        return ok();
      case "status":
        return reply({
          event: "status",
          ...idOf(command.id),
          guestCaps: session.guestCaps === undefined ? null : hex(session.guestCaps),
          hostCaps: hex(session.hostCaps),
          offers: [0, 1, 2].flatMap((s) => {
            const offer = session.guestOffer(s);
            return offer === undefined
              ? []
              : [{ selection: selectionName(s), mimes: offer.types.map(mimeOfType) }];
          }),
          copies: [0, 1, 2].flatMap((s) => {
            const types = session.hostOffer(s);
            return types === undefined ? [] : [{
              selection: selectionName(s),
              mimes: types.map(mimeOfType),
              bytes: types.map((type) => this.#copies[s]!.get(type)?.length ?? 0),
            }];
          }),
        });
      case "checkpoint":
        return this.#options.onCheckpoint(command.id, reply);
    }
  }

  #capsEvent(): RelayEvent | undefined {
    const session = this.pipeline.session;
    const caps = session.guestCaps;
    if (caps === undefined) return undefined;
    return {
      event: "caps",
      caps: hex(caps),
      selections: session.layout.selection,
      serials: session.layout.grabSerial,
    };
  }

  #offerEvent(selection: number): RelayEvent | undefined {
    const offer = this.pipeline.session.guestOffer(selection);
    if (offer === undefined) return undefined;
    return {
      event: "offer",
      selection: selectionName(selection),
      mimes: offer.types.map(mimeOfType),
      ...(offer.serial === undefined ? {} : { serial: offer.serial }),
    };
  }

  /** One event per percent of a big message, and one at its end. */
  #onProgress(progress: TransferProgress): void {
    const key = progress.direction;
    const last = this.#progress.get(key);
    // One message at a time moves each way: a transfer begins where the last one ended, or where
    // the bytes go back (the last one was cut short).
    if (last === undefined || last.done === last.total || progress.done <= last.done) {
      this.#transfers[key]++;
    } else if (
      Math.floor((progress.done * 100) / progress.total) ===
        Math.floor((last.done * 100) / last.total) && progress.done !== progress.total
    ) return;
    this.#progress.set(key, progress);
    this.#options.broadcast({
      event: "progress",
      transfer: this.#transfers[key],
      direction: progress.direction,
      ...(progress.selection === undefined ? {} : { selection: selectionName(progress.selection) }),
      done: progress.done,
      total: progress.total,
    });
  }
}

/** The host copied: every client hears it, so that a page knows who owns the selection. */
function copiedEvent(selection: number, type: number, data: Uint8Array): RelayEvent {
  return {
    event: "copied",
    selection: selectionName(selection),
    mime: mimeOfType(type),
    bytes: data.length,
  };
}

function diagnosticEvent(diagnostic: SessionDiagnostic): RelayEvent {
  return {
    event: "diagnostic",
    code: diagnostic.code,
    message: diagnostic.message,
    ...(diagnostic.selection === undefined
      ? {}
      : { selection: selectionName(diagnostic.selection) }),
  };
}
