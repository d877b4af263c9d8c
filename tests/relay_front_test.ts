// The relay's web front (scripts/relay/http_front.ts, websocket_connection.ts) over in-memory
// connections: requests, the connection cap, the head's bounds, accept errors, and what a
// WebSocket client can make it hold. Web-platform code: runs on Deno and, from the npm build,
// on Node; the real sockets are tests/cli/relay_bounds_test.ts and tests/node/.
import { test } from "node:test";
import assert from "node:assert/strict";
import {
  serveFront,
  type StreamConnection,
  type StreamListener,
} from "../scripts/relay/http_front.ts";
import type { FrontLimits, ServeHandlers } from "../scripts/relay/web.ts";
import { clientFrame, closeCode, handshake, type ServerFrame, serverFrames } from "./_ws_frames.ts";

const encode = (s: string) => new TextEncoder().encode(s);
const latin1 = (b: Uint8Array) => new TextDecoder("latin1").decode(b);

/** A connection whose client side the test plays; the front's writes finish when told. */
class Pipe {
  readonly conn: StreamConnection;
  readonly #toServer = new TransformStream<Uint8Array, Uint8Array>();
  readonly #client = this.#toServer.writable.getWriter();
  readonly #written: Uint8Array[] = [];
  readonly #held: (() => void)[] = [];
  readonly #waiters = new Set<() => void>();
  /** While set, the front's writes stay in flight. */
  hold = false;
  closed = false;

  constructor() {
    const writable = new WritableStream<Uint8Array>({
      write: (chunk) => {
        this.#written.push(chunk.slice());
        this.#wake();
        if (this.hold) return new Promise((resolve) => this.#held.push(resolve));
      },
    });
    this.conn = {
      readable: this.#toServer.readable,
      writable,
      close: () => {
        this.closed = true;
        this.#client.close().catch(() => {});
        this.#wake();
      },
    };
  }

  #wake(): void {
    for (const wake of this.#waiters) wake();
  }

  /** Writes as the client. */
  send(bytes: Uint8Array | string): Promise<void> {
    return this.#client.write(typeof bytes === "string" ? encode(bytes) : bytes);
  }

  /** Everything the front wrote. */
  get bytes(): Uint8Array {
    const all = new Uint8Array(this.#written.reduce((n, b) => n + b.length, 0));
    this.#written.reduce((at, b) => (all.set(b, at), at + b.length), 0);
    return all;
  }

  /** How many writes the front has in flight. */
  get held(): number {
    return this.#held.length;
  }

  /** Finishes the writes in flight. */
  release(): void {
    this.hold = false;
    for (const resolve of this.#held.splice(0)) resolve();
  }

  /** Resolves once `check` holds, re-checked on every write and on close. */
  until(check: () => boolean, what: string): Promise<void> {
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`no ${what}`)), 5000);
      const wake = () => {
        if (!check()) return;
        clearTimeout(timer);
        this.#waiters.delete(wake);
        resolve();
      };
      this.#waiters.add(wake);
      wake();
    });
  }

  /** The response, once the front closed the connection. */
  async response(): Promise<string> {
    await this.until(() => this.closed, "close");
    return latin1(this.bytes);
  }

  /** The frames after the handshake's head. */
  frames(): ServerFrame[] {
    const bytes = this.bytes;
    const text = latin1(bytes);
    const head = text.indexOf("\r\n\r\n");
    return head < 0 ? [] : serverFrames(bytes.subarray(head + 4)).frames;
  }
}

/** A listener the test hands connections (or accept errors) to. */
class Listener implements StreamListener {
  readonly hostname = "127.0.0.1";
  readonly port = 8080;
  readonly #ready: (StreamConnection | Error)[] = [];
  #waiting: ((item: StreamConnection | Error) => void) | undefined;

  give(item: StreamConnection | Error): void {
    const waiting = this.#waiting;
    this.#waiting = undefined;
    if (waiting !== undefined) waiting(item);
    else this.#ready.push(item);
  }

  async accept(): Promise<StreamConnection> {
    const item = this.#ready.shift() ??
      await new Promise<StreamConnection | Error>((r) => this.#waiting = r);
    if (item instanceof Error) throw item;
    return item;
  }

  close(): void {
    this.give(new Error("closed"));
  }

  /** A new connection, accepted. */
  connect(): Pipe {
    const pipe = new Pipe();
    this.give(pipe.conn);
    return pipe;
  }
}

const LIMITS: FrontLimits = {
  maxConnections: 4,
  headerTimeout: 60_000,
  maxHeaderBytes: 1024,
  maxMessage: 1000,
};

/** A front whose clients echo what they get; `events` records what happened. */
function front(limits: Partial<FrontLimits> = {}) {
  const listener = new Listener();
  const events: string[] = [];
  const logs: string[] = [];
  const handlers: ServeHandlers = {
    asset: (path) => path === "/" ? { body: encode("<p>page</p>"), type: "text/html" } : undefined,
    admit: (request) =>
      request.query.get("token") === "t" ? undefined : { status: 401, text: "no token" },
    log: (line) => logs.push(line),
    limits: { ...LIMITS, ...limits },
    connect: (client) => ({
      message: (text) => {
        events.push(`message ${text.length}`);
        void client.send(`echo ${text.slice(0, 20)}`);
      },
      tooLong: (length) => events.push(`too long ${length}`),
      close: () => events.push("close"),
    }),
  };
  const server = serveFront(listener, handlers);
  return { listener, events, logs, server };
}

const WS = handshake("127.0.0.1:8080", "/ws?token=t");

test("serveFront serves the page's files, answers 404, 405, 426 and the admission's refusals, and closes after one request", async () => {
  const { listener, server } = front();
  const ask = async (request: string) => {
    const pipe = listener.connect();
    await pipe.send(request);
    return await pipe.response();
  };
  const page = await ask("GET /?token=t HTTP/1.1\r\nHost: x\r\n\r\n");
  assert.match(page, /^HTTP\/1\.1 200 OK\r\n/);
  assert.match(page, /\r\ncontent-type: text\/html\r\n/);
  assert.match(page, /\r\ncontent-security-policy: default-src 'none'/);
  assert.match(page, /\r\ncontent-length: 11\r\nconnection: close\r\n\r\n<p>page<\/p>$/);
  assert.match(await ask("HEAD /?token=t HTTP/1.1\r\n\r\n"), /^HTTP\/1\.1 200 OK\r\n[^]*\r\n\r\n$/);
  assert.match(
    await ask("GET / HTTP/1.1\r\n\r\n"),
    /^HTTP\/1\.1 401 Unauthorized\r\n[^]*no token\n$/,
  );
  assert.match(await ask("GET /nope?token=t HTTP/1.1\r\n\r\n"), /^HTTP\/1\.1 404 /);
  assert.match(await ask("POST /?token=t HTTP/1.1\r\n\r\n"), /^HTTP\/1\.1 405 /);
  assert.match(await ask("GET /ws?token=t HTTP/1.1\r\n\r\n"), /^HTTP\/1\.1 426 /);
  assert.match(await ask(handshake("x", "/ws")), /^HTTP\/1\.1 401 /);
  assert.match(
    await ask(handshake("x", "/ws?token=t", { "Sec-WebSocket-Version": "8" })),
    /^HTTP\/1\.1 400 /,
  );
  assert.match(await ask("hello\r\n\r\n"), /^HTTP\/1\.1 400 /);
  await server.close();
});

test("serveFront answers 503 over maxConnections, 431 for a head over maxHeaderBytes, and 408 for one that never ends", async () => {
  const { listener, server } = front({ maxConnections: 2 });
  const idle = [listener.connect(), listener.connect()];
  const third = listener.connect();
  assert.match(await third.response(), /^HTTP\/1\.1 503 [^]*Too many connections \(2 are open\)/);
  const big = idle[0]!;
  await big.send(`GET /?token=t HTTP/1.1\r\nX-Filler: ${"x".repeat(2000)}`);
  assert.match(await big.response(), /^HTTP\/1\.1 431 /);
  // A slot is free again.
  const fourth = listener.connect();
  await fourth.send("GET /?token=t HTTP/1.1\r\n\r\n");
  assert.match(await fourth.response(), /^HTTP\/1\.1 200 /);
  idle[1]!.conn.close();
  await server.close();

  const timed = front({ headerTimeout: 0 });
  const silent = timed.listener.connect();
  await silent.send("GET / HTTP/1.1\r\nHost: half"); // and nothing more
  assert.match(await silent.response(), /^HTTP\/1\.1 408 [^]*No request within 0 ms/);
  await timed.server.close();
});

test("serveFront goes on accepting after accept errors, and logs one line per run of them", async () => {
  const { listener, logs, server } = front();
  listener.give(new Error("Too many open files (os error 24)"));
  listener.give(new Error("Too many open files (os error 24)"));
  listener.give(new Error("Too many open files (os error 24)"));
  const pipe = listener.connect();
  await pipe.send("GET /?token=t HTTP/1.1\r\n\r\n");
  assert.match(await pipe.response(), /^HTTP\/1\.1 200 /);
  assert.deepEqual(logs, [
    "cannot accept a connection: Too many open files (os error 24); retrying (connections open: 0)",
    "accepting connections again, after 3 failed accepts",
  ]);
  await server.close();
});

test("WebSocketConnection merges a message's fragments, and skips one over the limit summed across them", async () => {
  const { listener, events, server } = front();
  const pipe = listener.connect();
  await pipe.send(WS);
  await pipe.until(() => latin1(pipe.bytes).includes("\r\n\r\n"), "handshake");
  assert.match(latin1(pipe.bytes), /^HTTP\/1\.1 101 Switching Protocols\r\n/);
  // 600 one-byte fragments: one message.
  const parts: Uint8Array[] = [];
  for (let i = 0; i < 600; i++) parts.push(clientFrame(i === 0 ? 1 : 0, encode("x"), i === 599));
  await pipe.send(concat(parts));
  // 1001 bytes in 1-byte fragments: skipped, reported, and the next message goes through.
  const over: Uint8Array[] = [];
  for (let i = 0; i < 1001; i++) over.push(clientFrame(i === 0 ? 1 : 0, encode("y"), i === 1000));
  await pipe.send(concat(over));
  await pipe.send(clientFrame(1, encode("after")));
  // A single frame over the limit, declared by its header, is skipped as it arrives.
  await pipe.send(clientFrame(1, new Uint8Array(5000).fill(0x7a)));
  await pipe.send(clientFrame(1, encode("end")));
  await pipe.until(() => events.length === 5, "five events");
  assert.deepEqual(events, [
    "message 600",
    "too long 1001",
    "message 5",
    "too long 5000",
    "message 3",
  ]);
  await server.close();
  assert.deepEqual(pipe.frames().map((f) => f.opcode), [1, 1, 1, 8]);
  assert.equal(closeCode(pipe.frames().at(-1)!.payload), 1001);
});

test("WebSocketConnection answers a ping flood with one pong in flight and then the latest ping's", async () => {
  const { listener, server } = front();
  const pipe = listener.connect();
  await pipe.send(WS);
  await pipe.until(() => latin1(pipe.bytes).includes("\r\n\r\n"), "handshake");
  pipe.hold = true; // the client reads nothing
  const pings: Uint8Array[] = [];
  for (let i = 0; i < 10_000; i++) pings.push(clientFrame(9, encode(`ping ${i}`)));
  await pipe.send(concat(pings));
  await pipe.until(() => pipe.frames().length === 1, "a pong");
  assert.equal(pipe.held, 1, "one pong in flight, whatever the pings");
  pipe.release();
  await pipe.until(() => pipe.frames().length === 2, "the latest pong");
  assert.deepEqual(
    pipe.frames().map((f) => `${f.opcode} ${latin1(f.payload)}`),
    ["10 ping 0", "10 ping 9999"],
  );
  await server.close();
});

test("WebSocketConnection closes with 1003, 1002 and 1007 for binary, unmasked, reserved bits, bad fragments and bad UTF-8", async () => {
  const { listener, server } = front();
  const cases: [Uint8Array, number][] = [
    [clientFrame(2, encode("bin")), 1003],
    [clientFrame(1, encode("x"), true, false), 1002],
    [Uint8Array.from([0xc1, 0x80, 0, 0, 0, 0]), 1002],
    [clientFrame(0, encode("x")), 1002],
    [concat([clientFrame(1, encode("a"), false), clientFrame(1, encode("b"))]), 1002],
    [clientFrame(9, new Uint8Array(126)), 1002],
    [clientFrame(1, Uint8Array.from([0xc3, 0x28])), 1007],
  ];
  for (const [bytes, code] of cases) {
    const pipe = listener.connect();
    await pipe.send(WS);
    await pipe.send(bytes);
    await pipe.until(() => pipe.closed, "close");
    const last = pipe.frames().at(-1)!;
    assert.equal(last.opcode, 8);
    assert.equal(closeCode(last.payload), code, latin1(last.payload));
  }
  await server.close();
});

function concat(parts: Uint8Array[]): Uint8Array {
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  parts.reduce((at, p) => (out.set(p, at), at + p.length), 0);
  return out;
}
