// deno-lint-ignore-file no-console
/**
 * A relay that may be evicted between any two messages, in the style of a
 * Cloudflare Durable Object with WebSocket hibernation. The guest agent's
 * port reaches it as a WebSocket of bytes (through a bridge such as
 * websockify in front of QEMU's socket chardev). The object keeps nothing in
 * memory between events: on every wake-up it restores the host session from
 * the checkpoint in storage, and after each message it stores a new one. It
 * uses web-platform APIs and the library only, so it runs in workers, Deno and
 * Node; the runtime hands it a {@linkcode RelayContext}.
 *
 * - WebSocket upgrade: accepts the guest's socket.
 * - `PUT /clipboard`: the host copies the request's body as text; the guest
 *   can paste it.
 * - `GET /clipboard`: what the guest last copied as text (CLIPBOARD).
 * - `GET /checkpoint`: the stored checkpoint as JSON (`describeCheckpoint`).
 *
 * On Cloudflare, with `ctx` the object's `DurableObjectState`:
 *
 * ```ts ignore
 * import { DurableObject } from "cloudflare:workers";
 * import { RelayObject } from "./relay_durable_object.ts";
 *
 * export class VdagentRelay extends DurableObject {
 *   relay = new RelayObject({
 *     storage: this.ctx.storage,
 *     getWebSockets: () => this.ctx.getWebSockets(),
 *     acceptWebSocket: () => {
 *       const [client, server] = Object.values(new WebSocketPair());
 *       this.ctx.acceptWebSocket(server);
 *       return new Response(null, { status: 101, webSocket: client });
 *     },
 *   });
 *   fetch(request: Request) { return this.relay.fetch(request); }
 *   webSocketMessage(ws: WebSocket, message: ArrayBuffer | string) {
 *     return this.relay.webSocketMessage(ws, message);
 *   }
 * }
 * ```
 *
 * ## Bytes in flight
 *
 * Each call of `webSocketMessage` brings one WebSocket message of bytes, cut
 * wherever the guest's side cut it: it may end inside a chunk header, inside a
 * chunk, or inside a message of many chunks (a 3 MiB paste is about 1 500
 * chunks and arrives over many messages). The object cannot wait for the
 * rest, since it may be evicted as soon as the handler returns. So after each
 * message it takes a lossless checkpoint at the migration boundary: its
 * INBOUND section carries the partial header, chunk or message, and the next
 * wake-up feeds those bytes to its decoder before the next message's. Nothing
 * is lost and nothing is doubled; the price is that a message in transit is
 * stored again after every frame: an N-byte paste arriving in F-byte frames
 * writes about N²/2F bytes of checkpoints (3 MiB in 64 KiB frames: 72 MiB).
 * Bound it with `maxClipboard`. Checkpoints larger than one storage value
 * (128 KiB on Cloudflare's key-value backend) are split over several keys,
 * written before the key that points at them.
 *
 * The other way, the object never leaves bytes for a later wake-up: the guest
 * may be waiting for them and send nothing more. Clipboard providers are
 * awaited before the checkpoint, and what the pipeline framed but had not
 * written (the OUTBOUND section) is sent by the object itself, after the
 * checkpoint that says so is stored. On Cloudflare the output gate holds those
 * sends until the write is durable; elsewhere a crash between the two loses
 * them, as a dropped connection would.
 *
 * ## A new WebSocket
 *
 * With a bridge such as websockify in front of QEMU's socket chardev, a new
 * WebSocket is a new connection to the chardev: the agent saw its port close
 * when the old one went, and sees it reopen. If it knew this relay, the object
 * restores at once with `resume: "reconnected"`: the bytes in flight are
 * dropped (the guest's kernel dropped its side too), the caps are kept, and
 * the session announces itself with request=1, as QEMU does when the guest
 * opens its port. The agent sees a new client: it had already released what
 * its user offered when its port closed, so nothing is lost, and both sides
 * start their serials again at 0, which a guest copy lost with the old
 * connection would otherwise have put out of step. Once the guest answers,
 * the host's grabs go out again. That answer arrives in a later wake-up, which
 * restores `"continued"` from a checkpoint that does not say the grabs are
 * still due, so the object keeps that in storage itself (`regrab`) and grabs
 * again when the guest's capabilities arrive.
 *
 * `resume: "continued"` would be right for a bridge on the guest's side that
 * keeps the guest's port open across WebSockets, and only if it loses no byte
 * between them (it would have to number and re-send what the old socket did
 * not deliver): the agent would then see nothing, and the object would
 * neither announce itself nor grab again. A plain WebSocket that drops loses
 * the frames in flight both ways, so this object does not assume it.
 *
 * In Deno or Node (without hibernation), one instance serves every event, and
 * each still goes through storage:
 *
 * ```ts ignore
 * const values = new Map<string, Uint8Array>();
 * const sockets: WebSocket[] = [];
 * const relay: RelayObject = new RelayObject({
 *   storage: { get: async (key) => values.get(key), put: async (key, value) => void values.set(key, value) },
 *   getWebSockets: () => sockets,
 *   acceptWebSocket(request) {
 *     const { socket, response } = Deno.upgradeWebSocket(request);
 *     socket.binaryType = "arraybuffer";
 *     socket.onmessage = (event) => relay.webSocketMessage(socket, event.data);
 *     sockets.push(socket);
 *     return response;
 *   },
 * });
 * Deno.serve((request) => relay.fetch(request));
 * ```
 *
 * @module
 */
import {
  ClipboardError,
  ClipboardType,
  createHostPipeline,
  decodeCheckpoint,
  describeCheckpoint,
  encodeCheckpoint,
  type HostPipeline,
  Selection,
} from "@vdagent/streams";

/** Durable storage of byte values: Cloudflare's `ctx.storage`, a KV store, a `Map`. */
export interface RelayStorage {
  /** The value stored under `key`, or `undefined`. */
  get(key: string): Promise<Uint8Array | undefined>;
  /** Stores `value` under `key`. */
  put(key: string, value: Uint8Array): Promise<void>;
}

/** The calls the object makes on the guest's WebSocket. */
export interface RelaySocket {
  /** 1 while open. */
  readonly readyState: number;
  /** Sends one binary message. */
  send(data: Uint8Array): void;
  /** Closes the socket. */
  close(code?: number, reason?: string): void;
}

/** What the runtime gives the object. */
export interface RelayContext {
  /** Where checkpoints and clipboards live. */
  storage: RelayStorage;
  /**
   * Accepts the WebSocket an upgrade request asks for, so that the runtime
   * delivers its messages to `webSocketMessage`, and returns the response.
   */
  acceptWebSocket(request: Request): Response;
  /** The accepted WebSockets, as they survive hibernation: Cloudflare's `ctx.getWebSockets()`. */
  getWebSockets(): RelaySocket[];
}

/** Options of {@linkcode RelayObject}. */
export interface RelayObjectOptions {
  /** Largest value the storage takes, in bytes. Default 128 KiB. */
  maxValueSize?: number;
  /** Largest clipboard the guest may send, in bytes. Default 16 MiB. */
  maxClipboard?: number;
}

/** How a wake-up goes. */
interface Wake {
  /** Bytes from the guest. */
  input?: Uint8Array;
  /** How the transport relates to the last wake-up's. Default `"continued"`. */
  resume?: "continued" | "reconnected";
  /** Starts a new session when there is none. */
  start?: boolean;
  /** What the host does once the session is restored. */
  act?: (relay: HostPipeline) => void;
}

const TEXT = ClipboardType.UTF8_TEXT;
const OPEN = 1;
/** Largest WebSocket message the object sends. */
const PIECE = 64 * 1024;
/** Storage keys. */
const CHECKPOINT = "checkpoint";
const HOST_TEXT = "host-clipboard";
const GUEST_TEXT = "guest-clipboard";
/** 1 while the host's grabs wait for the guest to answer a reconnect's announcement. */
const REGRAB = "regrab";

/** A relay that restores its session on every wake-up; see the module's documentation. */
export class RelayObject {
  readonly #ctx: RelayContext;
  readonly #maxValueSize: number;
  readonly #maxClipboard: number;
  /** Wake-ups run one at a time: each starts from the checkpoint the last one stored. */
  #queue: Promise<unknown> = Promise.resolve();

  constructor(ctx: RelayContext, options: RelayObjectOptions = {}) {
    this.#ctx = ctx;
    this.#maxValueSize = options.maxValueSize ?? 128 * 1024;
    this.#maxClipboard = options.maxClipboard ?? 16 << 20;
  }

  /** HTTP requests: the guest's WebSocket, the clipboard as text, the checkpoint as JSON. */
  async fetch(request: Request): Promise<Response> {
    if (request.headers.get("upgrade")?.toLowerCase() === "websocket") {
      const response = this.#ctx.acceptWebSocket(request);
      // A session the guest agent knew goes on over the new connection: the
      // agent saw its port close and reopen. The session announces itself; the
      // host's grabs go out again once the guest answers.
      await this.#wake({ resume: "reconnected" });
      return response;
    }
    const path = new URL(request.url).pathname;
    if (path === "/checkpoint" && request.method === "GET") {
      const checkpoint = await this.#load(CHECKPOINT);
      return checkpoint?.length
        ? Response.json(describeCheckpoint(checkpoint))
        : new Response("No session", { status: 404 });
    }
    if (path !== "/clipboard") return new Response("Not found", { status: 404 });
    if (request.method === "GET") {
      const text = await this.#load(GUEST_TEXT);
      return text === undefined
        ? new Response("The guest has copied nothing", { status: 404 })
        : new Response(text as Uint8Array<ArrayBuffer>, {
          headers: { "content-type": "text/plain; charset=utf-8" },
        });
    }
    if (request.method === "PUT") {
      await this.#save(HOST_TEXT, new Uint8Array(await request.arrayBuffer()));
      // A session that has not started grabs it when it starts.
      await this.#wake({ act: (relay) => relay.session.grab(Selection.CLIPBOARD, [TEXT]) });
      return new Response(null, { status: 204 });
    }
    return new Response("Method not allowed", { status: 405 });
  }

  /** One message from the guest's port: one wake-up. */
  async webSocketMessage(socket: RelaySocket, message: ArrayBuffer | string): Promise<void> {
    if (typeof message === "string") {
      socket.close(1003, "vdagent speaks bytes");
      return;
    }
    await this.#wake({ input: new Uint8Array(message), start: true });
  }

  /**
   * Restores the session, feeds it the input, runs `act`, waits for the work
   * they started, then stores a lossless checkpoint and sends what is due.
   */
  #wake(wake: Wake): Promise<void> {
    const run = this.#queue.then(async () => {
      const saved = await this.#load(CHECKPOINT);
      if (!saved?.length && !wake.start) return;
      // The guest has not answered a reconnect's announcement yet: the host's grabs are due.
      const regrab = (saved?.length ?? 0) > 0 && wake.resume !== "reconnected" &&
        (await this.#load(REGRAB))?.[0] === 1;
      let answered = false;
      const socket = this.#ctx.getWebSockets().filter((s) => s.readyState === OPEN).at(-1);
      const work = new Set<Promise<unknown>>();
      const track = <T>(promise: Promise<T>): Promise<T> => {
        work.add(promise);
        const forget = () => void work.delete(promise);
        promise.then(forget, forget);
        return promise;
      };
      const keep = (request: Promise<Uint8Array>) =>
        request.then(
          (data) => void track(this.#save(GUEST_TEXT, data)),
          (error) => {
            // CLOSED: this wake-up ended; the request goes on in the checkpoint.
            if (error instanceof ClipboardError && error.code === "CLOSED") return;
            console.error(`Cannot fetch the guest's clipboard: ${error.message}`);
          },
        );

      // The transport of one wake-up: the input, then nothing; writes are collected.
      const sent: Uint8Array[] = [];
      let consumed!: () => void;
      const dispatched = new Promise<void>((resolve) => consumed = resolve);
      let fed = wake.input === undefined;
      const readable = new ReadableStream<Uint8Array>({
        pull(controller) {
          if (fed) return consumed(); // asked for more: the input was read and dispatched
          fed = true;
          controller.enqueue(wake.input!);
        },
      }, { highWaterMark: 0 });
      const writable = new WritableStream<Uint8Array>({ write: (bytes) => void sent.push(bytes) });

      const relay: HostPipeline = createHostPipeline({ readable, writable }, {
        ...(saved?.length ? { restore: saved } : {}),
        resume: wake.resume ?? "continued",
        requestTimeout: 0, // a request outlives wake-ups; its data may come much later
        maxClipboard: this.#maxClipboard,
        onGuestCaps: () => {
          if (!regrab || answered) return;
          answered = true;
          for (let selection = 0; selection < 3; selection++) {
            const types = relay.session.hostOffer(selection);
            if (types !== undefined) relay.session.grab(selection, types);
          }
        },
        clipboard: {
          onGuestGrab: (selection, types) => {
            if (selection === Selection.CLIPBOARD && types.includes(TEXT)) {
              keep(relay.session.request(selection, TEXT));
            }
          },
          provide: (selection, type) =>
            selection === Selection.CLIPBOARD && type === TEXT
              ? track(this.#load(HOST_TEXT))
              : undefined,
        },
      });
      for (const { selection, type, result } of relay.session.resumedRequests) {
        if (selection === Selection.CLIPBOARD && type === TEXT) keep(result);
      }
      if (!saved?.length && (await this.#load(HOST_TEXT)) !== undefined) {
        relay.session.grab(Selection.CLIPBOARD, [TEXT]); // a new session offers the host's text
      }
      wake.act?.(relay);
      try {
        const ended = relay.done.then(() => {
          throw new Error("the session ended");
        });
        ended.catch(() => {});
        await Promise.race([dispatched, ended]);
        // Let what the input started run: providers, and storing what arrived.
        do {
          await new Promise((resolve) => setTimeout(resolve, 0));
          await Promise.allSettled(work);
        } while (work.size > 0);
        const state = decodeCheckpoint(await relay.checkpoint());
        // What the pipeline did not write goes out now, after the checkpoint
        // that says it went; with no open socket, it stays in the checkpoint.
        const due = [...sent, state.wire!.outbound];
        await this.#save(
          CHECKPOINT,
          encodeCheckpoint({
            ...state,
            wire: {
              inbound: state.wire!.inbound,
              outbound: socket === undefined ? join(due) : new Uint8Array(0),
            },
          }),
        );
        if (wake.resume === "reconnected" && saved?.length) {
          await this.#save(REGRAB, new Uint8Array([1])); // the session announced itself
        } else if (answered) {
          await this.#save(REGRAB, new Uint8Array([0]));
        }
        for (const bytes of socket === undefined ? [] : due) {
          for (let at = 0; at < bytes.length; at += PIECE) {
            socket!.send(bytes.subarray(at, at + PIECE));
          }
        }
      } catch (error) {
        // A protocol error from the guest, or a failed store: the stream is
        // broken. Start over; the guest's side reconnects.
        await relay.done.catch(() => {});
        await this.#save(CHECKPOINT, new Uint8Array(0));
        await this.#save(REGRAB, new Uint8Array([0]));
        socket?.close(1011, "vdagent session failed");
        console.error(`The vdagent session failed: ${(error as Error).message}`);
      }
    });
    this.#queue = run.catch(() => {});
    return run;
  }

  /** Reads a value stored by {@linkcode RelayObject.#save}. */
  async #load(key: string): Promise<Uint8Array | undefined> {
    const head = await this.#ctx.storage.get(key);
    if (head === undefined) return undefined;
    const view = new DataView(head.buffer, head.byteOffset, head.byteLength);
    const generation = view.getUint32(0, true);
    const parts: Uint8Array[] = [];
    for (let i = 0; i < view.getUint32(4, true); i++) {
      const part = await this.#ctx.storage.get(`${key}/${generation % 2}/${i}`);
      if (part === undefined) throw new Error(`Cannot read ${key}: part ${i} is missing`);
      parts.push(part);
    }
    return join(parts);
  }

  /**
   * Stores `value` in parts of at most `maxValueSize` bytes, then the head
   * that names them: a crash before the head is written leaves the previous
   * value whole, since consecutive generations use different keys.
   */
  async #save(key: string, value: Uint8Array): Promise<void> {
    const storage = this.#ctx.storage;
    const old = await storage.get(key);
    const generation = old === undefined
      ? 0
      : new DataView(old.buffer, old.byteOffset).getUint32(0, true) + 1;
    const count = Math.ceil(value.length / this.#maxValueSize);
    for (let i = 0; i < count; i++) {
      const part = value.subarray(i * this.#maxValueSize, (i + 1) * this.#maxValueSize);
      await storage.put(`${key}/${generation % 2}/${i}`, part.slice()); // a view would store its whole buffer
    }
    const head = new Uint8Array(8);
    new DataView(head.buffer).setUint32(0, generation >>> 0, true);
    new DataView(head.buffer).setUint32(4, count, true);
    await storage.put(key, head);
  }
}

/** One array of `parts`; the part itself when there is one. */
function join(parts: Uint8Array[]): Uint8Array {
  const nonEmpty = parts.filter((part) => part.length > 0);
  if (nonEmpty.length === 1) return nonEmpty[0]!;
  const out = new Uint8Array(nonEmpty.reduce((n, part) => n + part.length, 0));
  let at = 0;
  for (const part of nonEmpty) {
    out.set(part, at);
    at += part.length;
  }
  return out;
}
