// An in-process model of a guest agent behind QEMU's `-chardev socket,server=on`, for hand-off
// tests that need no VM: a GuestSession (the Linux agent's rules) whose port outlives host
// connections the way the real one does (see the README's hand-off section, found with the real
// agent in a real QEMU guest, tests/vm/):
//
// - every disconnect of the host client closes the guest's port: the guest hears "client
//   disconnected" (it releases what its user offered and drops the host's grabs), keeps its
//   serials, and starts its reassembly afresh;
// - what the guest writes while no client is connected is held for the next client, in order;
// - what a new client writes before the guest has handled the previous close is dropped;
// - QEMU closes its side when it reads the end of the client's (a half-close), after what it had;
// - a live migration: once the source VM stopped, what the client writes to the source is lost,
//   and the source no longer reads, so it never closes its side after the client's half-close;
//   on the destination, the guest's port closes unless a client is connected when it resumes.
import type { Transport } from "../mod.ts";
import type { GuestSession } from "../mod.ts";
import { ChunkReader } from "../src/wire/_chunk_reader.ts";
import { framedSize, writeFrames } from "../src/wire/_frame_writer.ts";
import { MessageReader } from "../src/wire/_message_reader.ts";
import { guestCoreOf } from "../src/session/_session_cores.ts";
import type { AgentMessage } from "../mod.ts";

interface Client {
  controller: ReadableStreamDefaultController<Uint8Array>;
  /** The guest has handled the previous close: what this client writes reaches it. */
  heard: boolean;
  open: boolean;
  /** On the source of a migration whose VM stopped: writes are lost, the guest is elsewhere. */
  stopped: boolean;
}

/** The host side of a guest's virtio port on QEMU's socket chardev. */
export class QemuPort {
  /** Host bytes the guest dropped because they came before it handled a close. */
  dropped = 0;
  /** Host bytes written to a source VM that had stopped for its migration. */
  lost = 0;
  /** Connections made so far. */
  connections = 0;
  readonly #guest: GuestSession;
  readonly #closeDelay: number;
  #held: Uint8Array[] = [];
  #client: Client | undefined;
  #parser: ChunkReader;
  /** The guest has handled every close so far. */
  #settled = true;
  /** Between `stopForMigration` and `resumeAfterMigration`. */
  #migrating = false;

  /**
   * @param guest The agent; its output is taken over.
   * @param options `closeDelay`: timer turns (ms) the guest takes to handle a close, during which
   * a new client's bytes are dropped. Default 0 (the next timer turn).
   */
  constructor(guest: GuestSession, options: { closeDelay?: number } = {}) {
    this.#guest = guest;
    this.#closeDelay = options.closeDelay ?? 0;
    this.#parser = this.#newParser();
    guestCoreOf(guest).attach((batch) => this.#fromGuest(batch));
  }

  /** A new host connection (there is one at a time, as with QEMU's server socket). */
  connect(): Transport & { closeWrite(): void } {
    if (this.#client?.open && !this.#client.stopped) {
      throw new Error("QemuPort: a client is connected already");
    }
    this.connections++;
    let client!: Client;
    const readable = new ReadableStream<Uint8Array>({
      start: (controller) => {
        client = { controller, heard: this.#settled, open: true, stopped: false };
      },
    });
    this.#client = client;
    if (!this.#migrating) {
      for (const bytes of this.#held.splice(0)) client.controller.enqueue(bytes);
    }
    const end = () => this.#disconnect(client);
    const writable = new WritableStream<Uint8Array>({
      write: (bytes) => {
        if (!client.open) return;
        if (client.stopped) {
          this.lost += bytes.length;
          return;
        }
        if (!client.heard) {
          this.dropped += bytes.length;
          return;
        }
        guestCoreOf(this.#guest).run(() => this.#parser.push(bytes.slice()));
      },
      close: end,
      abort: end,
    });
    return { readable, writable, closeWrite: end };
  }

  /**
   * The source VM stops at the end of a live migration: from now on, what the connected client
   * writes is lost, its disconnect no longer reaches the guest, and what the guest writes waits
   * for the destination. A client may connect to the destination meanwhile.
   */
  stopForMigration(): void {
    if (this.#client !== undefined) this.#client.stopped = true;
    this.#migrating = true;
  }

  /**
   * The guest resumes on the destination: with a client connected there it notices nothing;
   * otherwise its port closes, as QEMU closes it when no client is connected at the resume.
   */
  resumeAfterMigration(): void {
    this.#migrating = false;
    const client = this.#client;
    if (client !== undefined && client.open && !client.stopped) {
      for (const bytes of this.#held.splice(0)) client.controller.enqueue(bytes);
      return;
    }
    if (client?.stopped) this.#client = undefined;
    this.#close();
  }

  #disconnect(client: Client): void {
    if (!client.open) return;
    client.open = false;
    if (this.#client === client) this.#client = undefined;
    // A stopped source VM does not read the end of the client's side, so it never closes its own.
    if (client.stopped) return;
    try {
      client.controller.close();
    } catch { /* cancelled */ }
    this.#close();
  }

  /** The guest handles its port's close, a timer turn later. */
  #close(): void {
    this.#settled = false;
    setTimeout(() => {
      this.#parser = this.#newParser();
      this.#guest.clientDisconnected();
      this.#settled = true;
      if (this.#client !== undefined) this.#client.heard = true;
    }, this.#closeDelay);
  }

  #fromGuest(batch: AgentMessage[]): void {
    let size = 0;
    for (const m of batch) size += framedSize(m.data.length, 2048);
    const bytes = new Uint8Array(size);
    const view = new DataView(bytes.buffer);
    let at = 0;
    for (const m of batch) {
      at = writeFrames(bytes, view, at, 2048, m.port, m.type, m.opaque, m.data);
    }
    const client = this.#client;
    if (client?.open && !client.stopped && !this.#migrating) client.controller.enqueue(bytes);
    else this.#held.push(bytes);
  }

  #newParser(): ChunkReader {
    const guest = guestCoreOf(this.#guest);
    const messages = new MessageReader((...args) => guest.receive(...args), {
      maxMessageSize: 64 << 20,
      copy: true,
    });
    return new ChunkReader(messages, { maxChunkSize: (64 << 20) + 20 });
  }
}
