// scripts/examples/relay_kv.ts, three relays in turn, as subprocesses sharing
// a Deno KV store in a temporary directory, in front of one in-process guest
// agent on a unix socket (Deno only). Relay A is stopped with SIGTERM in the
// middle of a 3 MiB paste, so its last checkpoint spans many KV values; relay
// B restores it from KV and is then killed; relay C takes over from B's last
// continuous checkpoint. The guest agent outlives its port's connections, as
// the Linux daemon does: B and C each restore with resume: "reconnected" and
// announce themselves, so it sees exactly one more client per relay, starts
// its serials again and discards no grab.
import { test } from "node:test";
import assert from "node:assert/strict";
import {
  ClipboardError,
  ClipboardType,
  decodeCheckpoint,
  describeCheckpoint,
  GuestSession,
} from "../../mod.ts";
import { PipelineRunner } from "../../src/pipeline/_runner.ts";
import { guestCoreOf } from "../../src/session/_session_cores.ts";
import { sameBytes } from "../_helpers.ts";

const TEXT = ClipboardType.UTF8_TEXT;
const root = new URL("../../", import.meta.url);
/** How long any one wait may take before the test gives up. */
const WAIT = 30_000;

/** Rejects after `WAIT` ms, naming `what`; the timer is cleared either way. */
async function bounded<T>(promise: Promise<T>, what: string): Promise<T> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`Timed out waiting for ${what}`)), WAIT);
  });
  try {
    return await Promise.race([promise, timeout]);
  } finally {
    clearTimeout(timer);
  }
}

/** A relay subprocess and its output, line by line. */
class Relay {
  readonly child: Deno.ChildProcess;
  readonly lines: string[] = [];
  #read = 0;
  #ended = false;
  #wake: (() => void) | undefined;

  constructor(args: string[]) {
    const child = new Deno.Command(Deno.execPath(), {
      args: ["run", "--unstable-kv", "-A", "scripts/examples/relay_kv.ts", ...args],
      cwd: root,
      stdout: "piped",
      stderr: "inherit",
    }).spawn();
    this.child = child;
    (async () => {
      let buffer = "";
      for await (const text of child.stdout.pipeThrough(new TextDecoderStream())) {
        buffer += text;
        for (let end = buffer.indexOf("\n"); end >= 0; end = buffer.indexOf("\n")) {
          this.lines.push(buffer.slice(0, end));
          buffer = buffer.slice(end + 1);
        }
        this.#wake?.();
      }
      this.#ended = true;
      this.#wake?.();
    })();
  }

  /** The next line not returned yet that matches `pattern`. */
  next(pattern: RegExp): Promise<RegExpMatchArray> {
    return bounded(
      (async () => {
        for (;;) {
          while (this.#read < this.lines.length) {
            const match = this.lines[this.#read++]!.match(pattern);
            if (match !== null) return match;
          }
          if (this.#ended) throw new Error(`The relay ended without printing ${pattern}`);
          await new Promise<void>((resolve) => this.#wake = resolve);
        }
      })(),
      `a line matching ${pattern}; output so far:\n${this.lines.join("\n")}`,
    );
  }

  async stop(signal: Deno.Signal): Promise<Deno.CommandStatus> {
    try {
      this.child.kill(signal);
    } catch {
      // it has exited already
    }
    return await this.child.status;
  }
}

/** The guest agent's port, connection after connection. */
class Port {
  readonly guest: GuestSession;
  readonly events: string[] = [];
  /** Whether the guest stops reading its port. */
  paused = false;
  #resume: (() => void) | undefined;
  #closed: Promise<void> = Promise.resolve();

  constructor(provide: () => Uint8Array) {
    this.guest = new GuestSession({
      requestTimeout: 0,
      onHostCaps: (_, request) => void this.events.push(`caps request=${request}`),
      onDiagnostic: (diagnostic) => void this.events.push(diagnostic.code),
      clipboard: {
        onHostGrab: (selection) => void this.events.push(`host grab ${selection}`),
        provide,
      },
    });
  }

  /** Opens the port over `conn`: the session goes on, reassembly starts afresh. */
  open(conn: Deno.Conn): void {
    const reader = conn.readable.getReader();
    let ended!: () => void;
    this.#closed = new Promise<void>((resolve) => ended = resolve);
    const readable = new ReadableStream<Uint8Array>({
      pull: async (controller) => {
        while (this.paused) await new Promise<void>((resolve) => this.#resume = resolve);
        const { value, done } = await reader.read().catch(() => ({ value: undefined, done: true }));
        // The relay went away: the port closes, but the session does not end.
        if (done) ended();
        else controller.enqueue(value);
      },
    }, { highWaterMark: 0 });
    const runner = new PipelineRunner(guestCoreOf(this.guest), {
      readable,
      writable: conn.writable,
    }, {});
    this.#closed = this.#closed.then(async () => {
      await runner.handOff(true, () => {});
      try {
        conn.close();
      } catch {
        // Deno closed it when its readable ended
      }
      this.guest.clientDisconnected();
    });
    this.#closed.catch(() => {}); // closed() reports it
  }

  resume(): void {
    this.paused = false;
    this.#resume?.();
  }

  /** Resolves once the relay closed the connection and the port closed. */
  closed(): Promise<void> {
    return bounded(this.#closed, "the relay to close the connection");
  }

  /** Waits until the events since `from` include `event`. */
  async saw(event: string, from = 0): Promise<void> {
    await bounded(
      (async () => {
        while (!this.events.slice(from).includes(event)) {
          await new Promise((resolve) => setTimeout(resolve, 2));
        }
      })(),
      `the guest to see "${event}"`,
    );
  }
}

test(
  "scripts/examples/relay_kv.ts hands a session to another process through Deno KV, mid-paste and after a crash",
  {
    timeout: 120_000,
  },
  async () => {
    const dir = await Deno.makeTempDir({ prefix: "vdagent-kv-" });
    const socket = `${dir}/vdagent.sock`;
    const file = `${dir}/vm1.checkpoint`;
    const clipboardFile = `${dir}/host-clipboard.txt`;
    // The host's 3 MiB text: 1 536 chunks, far more than the socket buffers hold.
    const hostText = new TextEncoder().encode("host clipboard ".repeat(209_716).slice(0, 3 << 20));
    await Deno.writeFile(clipboardFile, hostText);
    const args = [socket, "--vm", "vm1", "--kv", `${dir}/kv.sqlite`, "--file", file];
    const listener = Deno.listen({ transport: "unix", path: socket });
    let copied = "";
    let relay: Relay | undefined;
    let port: Port | undefined;
    try {
      // Relay A: a new session.
      relay = new Relay([...args, "--clipboard-file", clipboardFile]);
      await relay.next(/^new session$/);
      port = new Port(() => new TextEncoder().encode(copied));
      port.open(await bounded(listener.accept(), "relay A to connect"));
      const { guest, events } = port;
      await port.saw("host grab 0");
      copied = "copied in the guest, A";
      guest.grab(1, [TEXT]);
      await relay.next(/^guest copied: copied in the guest, A$/);

      // The guest stops reading and pastes 3 MiB: A's writes back up. A gets
      // SIGTERM, and checkpoints with most of the paste not yet written.
      port.paused = true;
      const firstPaste = guest.request(0, TEXT);
      firstPaste.catch(() => {});
      await relay.next(/^guest pastes 3145728 bytes$/);
      relay.child.kill("SIGTERM");
      await relay.next(/^checkpointing$/);
      port.resume(); // A's write in flight completes, and A stops writing
      const [, handedOff] = await relay.next(/^handed off: (\d+) bytes in .* and in kv$/);
      assert.equal((await relay.child.status).code, 0, "relay A exits by itself");
      await port.closed();
      await assert.rejects(firstPaste, ClipboardError, "the paste in flight failed with the port");
      const checkpoint = await Deno.readFile(file);
      assert.equal(checkpoint.length, Number(handedOff));
      const outbound = describeCheckpoint(checkpoint).wire?.outboundBytes ?? 0;
      assert.ok(outbound > 1 << 20, `${outbound} bytes of the paste in the checkpoint`);

      // Relay B restores the same bytes from KV, split over many values.
      relay = new Relay([...args, "--clipboard-file", clipboardFile]);
      const [, size, view] = await relay.next(/^restored (\d+) bytes from kv: (.*)$/);
      assert.equal(Number(size), checkpoint.length);
      assert.ok(Number(size) > 16 * 64 * 1024, "the checkpoint spans more than 16 KV values");
      assert.deepEqual(JSON.parse(view!), describeCheckpoint(checkpoint));
      let mark = events.length;
      port.open(await bounded(listener.accept(), "relay B to connect"));
      // B announces itself with request=1: the guest answers it as a new
      // client and starts its serials again; then B grabs again, serial 0.
      await port.saw("host grab 0", mark);
      assert.deepEqual(events.slice(mark), ["caps request=true", "host grab 0"]);
      assert.deepEqual(guest.serials, [1, 0, 0], "serials restarted at B's announcement");
      // A's paste failed with its port; B serves the guest's next one whole.
      assert.ok(sameBytes(await guest.request(0, TEXT), hostText), "the 3 MiB paste, from B");
      copied = "copied in the guest, B";
      guest.grab(1, [TEXT]);
      await relay.next(/^guest copied: copied in the guest, B$/);
      // B's continuous checkpoints reach KV: the last one has B's grab, serial
      // 0 (the host keeps its serial), the guest's PRIMARY grab, serial 0
      // again, and no request left. (Without the reset they would read 1,1,0.)
      // Then B crashes.
      const [, last] = await relay.next(
        /^saved (\d+) bytes in 1 part\(s\), serials 0,0,0, host requests 0$/,
      );
      assert.equal((await relay.stop("SIGKILL")).signal, "SIGKILL");
      await port.closed();

      // Relay C takes over from B's last continuous checkpoint.
      relay = new Relay(args);
      const [, restored] = await relay.next(/^restored (\d+) bytes from kv: /);
      assert.equal(restored, last);
      mark = events.length;
      port.open(await bounded(listener.accept(), "relay C to connect"));
      await port.saw("host grab 0", mark);
      assert.deepEqual(events.slice(mark), ["caps request=true", "host grab 0"]);
      assert.match(
        new TextDecoder().decode(await guest.request(0, TEXT)),
        /^Hello from relay \d+$/,
      );
      copied = "copied in the guest, C";
      guest.grab(1, [TEXT]);
      await relay.next(/^guest copied: copied in the guest, C$/);

      // Each relay announced itself once: the guest saw three clients, one
      // after the other, and discarded nothing.
      assert.deepEqual(
        events.filter((e) => e.startsWith("caps")),
        ["caps request=true", "caps request=true", "caps request=true"],
      );
      assert.deepEqual(
        events.filter((e) => !e.startsWith("caps") && !e.startsWith("host grab")),
        [],
      );
      assert.deepEqual(guest.serials, [1, 1, 0], "serials restarted at C's announcement");
      assert.equal(decodeCheckpoint(checkpoint).mode, "lossless");
    } finally {
      await relay?.stop("SIGKILL");
      await port?.closed().catch(() => {});
      listener.close();
      await Deno.remove(dir, { recursive: true });
    }
  },
);
