// scripts/examples/relay_durable_object.ts, evicted after every event: each
// WebSocket message and each request goes to a new RelayObject over the same
// storage, as a hibernating Durable Object would be woken. The guest agent is
// a guest pipeline over a scripted WebSocket (tests/_websocket.ts), and its
// bytes reach the object cut into messages of random sizes, so that messages,
// chunks and chunk headers span wake-ups.
import { test } from "node:test";
import assert from "node:assert/strict";
import {
  type CheckpointDescription,
  ClipboardType,
  createGuestPipeline,
  GuestSession,
  type GuestSessionOptions,
  Selection,
  webSocketTransport,
} from "../mod.ts";
import {
  type RelayContext,
  RelayObject,
  type RelayStorage,
} from "../scripts/examples/relay_durable_object.ts";
import { PipelineRunner } from "../src/pipeline/_runner.ts";
import { guestCoreOf } from "../src/session/_session_cores.ts";
import { prng, randBytes, randomCut, sameBytes } from "./_helpers.ts";
import { CONNECTING, type FakeSocket, OPEN, socketPair } from "./_websocket.ts";

const TEXT = ClipboardType.UTF8_TEXT;
const CLIPBOARD = Selection.CLIPBOARD;
/** Cloudflare's limit on one value of a Durable Object's key-value storage. */
const MAX_VALUE = 128 * 1024;
const text = (s: string) => new TextEncoder().encode(s);

/** Storage as a Durable Object's: values are copied in and out, and at most 128 KiB each. */
class MemoryStorage implements RelayStorage {
  readonly values = new Map<string, Uint8Array>();

  get(key: string): Promise<Uint8Array | undefined> {
    return Promise.resolve(this.values.get(key)?.slice());
  }

  put(key: string, value: Uint8Array): Promise<void> {
    if (value.length > MAX_VALUE) {
      return Promise.reject(new RangeError(`Cannot store ${value.length} bytes under ${key}`));
    }
    this.values.set(key, value.slice());
    return Promise.resolve();
  }
}

/**
 * The runtime around a hibernating object: one event at a time, each handled
 * by a new instance; messages from the guest's side are cut into frames of
 * random sizes up to 5 000 bytes. After each message it reads the stored
 * checkpoint back through `GET /checkpoint`.
 */
class Runtime {
  readonly storage = new MemoryStorage();
  readonly ctx: RelayContext;
  /** The object's end of each WebSocket it accepted. */
  readonly sockets: FakeSocket[] = [];
  /** Wake-ups by a message, each on a new instance. */
  messages = 0;
  /** Stored checkpoints, as `GET /checkpoint` described them after each message. */
  readonly checkpoints: { size: number; inboundBytes: number }[] = [];
  readonly errors: unknown[] = [];
  #events: Promise<unknown> = Promise.resolve();
  readonly #rand = prng(11);

  constructor() {
    this.ctx = {
      storage: this.storage,
      acceptWebSocket: () => new Response(null, { status: 204 }), // a runtime would answer 101
      getWebSockets: () => this.sockets,
    };
  }

  /** Runs `event` on a new instance once the events before it are done. */
  event<T>(event: (object: RelayObject) => Promise<T>): Promise<T> {
    const run = this.#events.then(() => event(new RelayObject(this.ctx)));
    this.#events = run.catch((error) => void this.errors.push(error));
    return run;
  }

  /** A request to the object. */
  fetch(path: string, init?: RequestInit): Promise<Response> {
    return this.event((object) => object.fetch(new Request(`https://relay.example${path}`, init)));
  }

  /**
   * A new WebSocket: returns the guest's end, after the object accepted the
   * other. With `opening`, the object's end opens only after the upgrade, as
   * Deno's `upgradeWebSocket` does.
   */
  async connect(opening = false): Promise<FakeSocket> {
    const [objectEnd, guestEnd] = socketPair();
    if (opening) objectEnd.readyState = CONNECTING;
    this.sockets.push(objectEnd);
    objectEnd.addEventListener("message", (event) => {
      const bytes = new Uint8Array((event as MessageEvent).data as ArrayBuffer);
      for (const frame of randomCut(this.#rand, bytes, 5000)) {
        void this.event(async (object) => {
          this.messages++;
          await object.webSocketMessage(objectEnd, frame.slice().buffer);
          const response = await object.fetch(new Request("https://relay.example/checkpoint"));
          const view = await response.json() as CheckpointDescription;
          this.checkpoints.push({ size: view.size!, inboundBytes: view.wire!.inboundBytes });
        });
      }
    });
    const upgrade = await this.fetch("/", { headers: { upgrade: "websocket" } });
    assert.equal(upgrade.status, 204);
    objectEnd.readyState = OPEN;
    return guestEnd;
  }

  /** What `GET /clipboard` returns, once it equals `expected`. */
  async guestCopied(expected: Uint8Array): Promise<Uint8Array> {
    let last = new Uint8Array(0);
    for (let i = 0; i < 2000; i++) {
      const response = await this.fetch("/clipboard");
      last = new Uint8Array(await response.arrayBuffer());
      if (response.status === 200 && sameBytes(last, expected)) return last;
      await new Promise((resolve) => setTimeout(resolve, 5));
    }
    return last;
  }
}

/** Resolves when `check` holds; the bound only keeps a broken run from hanging. */
async function until(check: () => boolean, what: string): Promise<void> {
  for (let i = 0; i < 20_000; i++) {
    if (check()) return;
    await new Promise((resolve) => setTimeout(resolve, 1));
  }
  throw new Error(`Timed out waiting for ${what}`);
}

test(
  "RelayObject keeps a session with text and multi-chunk pastes both ways, evicted after every message",
  {
    timeout: 120_000,
  },
  async () => {
    const runtime = new Runtime();
    const guestEnd = await runtime.connect();
    let newClients = 0;
    let hostGrabs = 0;
    const diagnostics: string[] = [];
    let copied: Uint8Array = text("copied in the guest ✓");
    const guest = createGuestPipeline(webSocketTransport(guestEnd), {
      requestTimeout: 0,
      onHostCaps: (_, request) => void (request && newClients++),
      clipboard: { onHostGrab: () => void hostGrabs++, provide: () => copied },
    });
    await until(() => guest.session.hostCaps !== undefined, "the relay's caps");

    // Host → guest, text.
    await runtime.fetch("/clipboard", { method: "PUT", body: "copied on the host ✓" });
    await until(() => hostGrabs === 1, "the host's grab");
    assert.equal(
      new TextDecoder().decode(await guest.session.request(CLIPBOARD, TEXT)),
      "copied on the host ✓",
    );
    // Guest → host, text.
    guest.session.grab(CLIPBOARD, [TEXT]);
    assert.deepEqual(await runtime.guestCopied(copied), copied);
    // Guest → host, 300 000 bytes: 147 chunks over about 120 messages.
    copied = randBytes(prng(3), 300_000);
    guest.session.grab(CLIPBOARD, [TEXT]);
    assert.ok(sameBytes(await runtime.guestCopied(copied), copied), "the guest's large copy");
    // Host → guest, 200 000 bytes.
    const large = randBytes(prng(4), 200_000);
    await runtime.fetch("/clipboard", { method: "PUT", body: new Blob([large.slice()]) });
    await until(() => hostGrabs === 2, "the host's second grab");
    assert.ok(
      sameBytes(await guest.session.request(CLIPBOARD, TEXT), large),
      "the host's large copy",
    );

    assert.equal(newClients, 1, "the guest saw one client");
    // Host grab 0 (next 1), guest grabs 1 and 2 (next 3), host grab with the
    // guest's last serial, 2: accepted, none discarded.
    assert.deepEqual(guest.session.serials, [3, 0, 0]);
    assert.deepEqual(diagnostics, []);
    assert.ok(runtime.messages > 60, `${runtime.messages} messages, each on a new instance`);
    // Between messages the checkpoint carried the partial large paste: more
    // than one storage value's worth at the end.
    const carried = Math.max(...runtime.checkpoints.map((c) => c.inboundBytes));
    assert.ok(carried > MAX_VALUE && carried < 300_000, `at most ${carried} bytes carried`);
    assert.ok(
      runtime.storage.values.has("checkpoint/0/1") || runtime.storage.values.has("checkpoint/1/1"),
    );
    await guest.close();
    assert.deepEqual(runtime.errors, []);
  },
);

for (const opening of [false, true]) {
  test(
    `RelayObject resumes a reconnected WebSocket as one more client, re-grabbing once the guest answers${
      opening ? ", keeping what it cannot send yet in the checkpoint" : ""
    }`,
    { timeout: 60_000 },
    async () => {
      const runtime = new Runtime();
      const events: string[] = [];
      let copied: Uint8Array = text("before");
      const options: GuestSessionOptions = {
        requestTimeout: 0,
        onHostCaps: (_, request) => void events.push(`caps request=${request}`),
        onDiagnostic: (diagnostic) => void events.push(diagnostic.code),
        clipboard: {
          onHostGrab: (selection) => void events.push(`host grab ${selection}`),
          provide: () => copied,
        },
      };
      // The guest agent outlives its port's connections, as the Linux daemon does.
      const first = await runtime.connect();
      const guest = new GuestSession(options);
      const attach = (socket: FakeSocket) =>
        new PipelineRunner(guestCoreOf(guest), webSocketTransport(socket), {});
      let port = attach(first);
      guest.grab(CLIPBOARD, [TEXT]);
      assert.deepEqual(await runtime.guestCopied(copied), copied);
      await runtime.fetch("/clipboard", { method: "PUT", body: "host text" });
      await until(() => events.includes("host grab 0"), "the host's grab");

      // The bridge drops the connection: the agent sees its port close and reopen.
      await port.handOff(false, () => {});
      runtime.sockets[0]!.close(1001, "going away");
      guest.clientDisconnected();
      const mark = events.length;
      port = attach(await runtime.connect(opening));
      if (opening) {
        // The grab, sent again, waits in the checkpoint for the next wake-up.
        // The announcement waits in the checkpoint for the next wake-up.
        const view = await (await runtime.fetch("/checkpoint")).json() as CheckpointDescription;
        assert.ok(view.wire!.outboundBytes > 0, "bytes kept for later");
        assert.deepEqual(runtime.sockets.at(-1)!.sent, [], "nothing sent on the opening socket");
        // A message from the guest wakes the object; this grab carries the
        // guest's old serial, and the announcement that follows releases it.
        guest.grab(Selection.PRIMARY, [TEXT]);
      }
      // The object announced itself: the guest answered as to a new client,
      // and the next wake-up, on that answer, grabbed the host's text again.
      await until(() => events.slice(mark).includes("host grab 0"), "the host's grab, sent again");
      assert.deepEqual(events.slice(mark), ["caps request=true", "host grab 0"]);
      assert.deepEqual(guest.serials, [1, 0, 0], "serials restarted at the announcement");
      assert.equal(new TextDecoder().decode(await guest.request(CLIPBOARD, TEXT)), "host text");
      copied = text("after");
      guest.grab(CLIPBOARD, [TEXT]);
      assert.deepEqual(await runtime.guestCopied(copied), copied);
      assert.equal(events.filter((e) => e === "caps request=true").length, 2, "one more client");
      assert.deepEqual(
        events.filter((e) => !e.startsWith("caps") && !e.startsWith("host grab")),
        [],
        "no grab discarded",
      );
      // The host's grab sent again with serial 0 (next 1), the guest's grab 1 (next 2).
      assert.deepEqual(guest.serials, [2, 0, 0]);
      await port.close();
      assert.deepEqual(runtime.errors, []);
    },
  );
}
