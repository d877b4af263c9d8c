// The relay's web front on Node (scripts/relay/node_websocket.ts: node:net under the shared
// http_front.ts), spoken to frame by frame over a raw socket: the handshake, the admission
// rule, fragmented and large messages, ping, and the close codes of what it refuses. Node
// only: run by `deno task build:npm`.
import { test } from "node:test";
import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import { connect, type Socket } from "node:net";
import { serveNode } from "../../scripts/relay/node_websocket.ts";
import type { WebServer } from "../../scripts/relay/web.ts";
import { clientFrame as frame, closeCode, handshake, KEY } from "../_ws_frames.ts";

/** A raw client: the handshake, then frames as they arrive. */
class Client {
  readonly socket: Socket;
  #buffer = new Uint8Array(0);
  #wake: (() => void) | undefined;
  closed = false;

  constructor(socket: Socket) {
    this.socket = socket;
    socket.on("data", (bytes: Uint8Array) => {
      const joined = new Uint8Array(this.#buffer.length + bytes.length);
      joined.set(this.#buffer);
      joined.set(bytes, this.#buffer.length);
      this.#buffer = joined;
      this.#wake?.();
    });
    socket.on("close", () => {
      this.closed = true;
      this.#wake?.();
    });
  }

  static async open(url: string, headers: Record<string, string> = {}): Promise<[Client, string]> {
    const { hostname, port } = new URL(url);
    const socket = connect({ host: hostname, port: Number(port) });
    const client = new Client(socket);
    socket.write(handshake(`${hostname}:${port}`, "/ws", headers));
    const head = await client.#until(() => {
      const text = new TextDecoder().decode(client.#buffer);
      const end = text.indexOf("\r\n\r\n");
      if (end < 0) return undefined;
      client.#buffer = client.#buffer.subarray(
        new TextEncoder().encode(text.slice(0, end + 4)).length,
      );
      return text.slice(0, end);
    });
    return [client, head];
  }

  #until<T>(take: () => T | undefined): Promise<T> {
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error("no answer within 5 s")), 5000);
      const check = () => {
        const value = take();
        if (value !== undefined) {
          clearTimeout(timer);
          this.#wake = undefined;
          resolve(value);
        } else if (this.closed) {
          clearTimeout(timer);
          reject(new Error("closed"));
        }
      };
      this.#wake = check;
      check();
    });
  }

  /** The next server frame. */
  next(): Promise<{ opcode: number; payload: Uint8Array }> {
    return this.#until(() => {
      const b = this.#buffer;
      if (b.length < 2) return undefined;
      let length = b[1]! & 0x7f;
      let at = 2;
      if (length === 126) (length = (b[2]! << 8) | b[3]!, at = 4);
      else if (length === 127) {
        (length = Number(new DataView(b.buffer, b.byteOffset).getBigUint64(2)), at = 10);
      }
      if (b.length < at + length) return undefined;
      this.#buffer = b.subarray(at + length);
      return { opcode: b[0]! & 0x0f, payload: b.slice(at, at + length) };
    });
  }

  send(bytes: Uint8Array): void {
    this.socket.write(bytes);
  }
}

const text = (s: string) => new TextEncoder().encode(s);

test("serveNode speaks RFC 6455 text messages, fragmented and large, and refuses what it must", async () => {
  const received: string[] = [];
  const server: WebServer = await serveNode({ hostname: "127.0.0.1", port: 0 }, {
    asset: () => undefined,
    admit: (request) => {
      const origin = request.headers.get("origin");
      return origin === undefined || origin.startsWith("http://127.0.0.1:")
        ? undefined
        : { status: 403, text: "Forbidden origin" };
    },
    log: () => {},
    limits: { maxConnections: 8, headerTimeout: 5000, maxHeaderBytes: 4096, maxMessage: 1 << 20 },
    connect: (client) => ({
      message: (message) => {
        received.push(message);
        void client.send(`echo ${message.length}`);
      },
      tooLong: (length) => void client.send(`too long ${length}`),
      close: () => {},
    }),
  });
  const clients: Client[] = [];
  try {
    const [client, head] = await Client.open(server.url);
    clients.push(client);
    const accept = createHash("sha1").update(KEY + "258EAFA5-E914-47DA-95CA-C5AB0DC85B11")
      .digest("base64");
    assert.match(head, /^HTTP\/1\.1 101 Switching Protocols\r\n/);
    assert.ok(head.includes(`Sec-WebSocket-Accept: ${accept}`), head);

    // Fragmented, with a ping in the middle: the pong comes back at once, the message after.
    client.send(frame(1, text('{"cmd":'), false));
    client.send(frame(9, text("hi")));
    assert.deepEqual(await client.next(), { opcode: 10, payload: text("hi") });
    client.send(frame(0, text('"status"}')));
    assert.deepEqual(await client.next(), { opcode: 1, payload: text("echo 16") });
    // 70 000 bytes: a 64-bit length.
    const big = "x".repeat(70_000);
    client.send(frame(1, text(big)));
    assert.deepEqual(await client.next(), { opcode: 1, payload: text("echo 70000") });
    assert.deepEqual(received, ['{"cmd":"status"}', big]);
    // A binary message is refused with 1003.
    client.send(frame(2, new Uint8Array([1, 2, 3])));
    const refused = await client.next();
    assert.equal(refused.opcode, 8);
    assert.equal(closeCode(refused.payload), 1003);

    // An unmasked frame is a protocol error.
    const [second] = await Client.open(server.url);
    clients.push(second);
    second.send(frame(1, text("x"), true, false));
    assert.equal(closeCode((await second.next()).payload), 1002);

    // Bad UTF-8 is 1007; a clean close is echoed.
    const [third] = await Client.open(server.url);
    clients.push(third);
    third.send(frame(1, new Uint8Array([0xc3, 0x28])));
    assert.equal(closeCode((await third.next()).payload), 1007);
    const [fourth] = await Client.open(server.url);
    clients.push(fourth);
    fourth.send(frame(8, new Uint8Array([0x03, 0xe8])));
    assert.equal(closeCode((await fourth.next()).payload), 1000);

    // Another site's page gets 403, before any WebSocket.
    const [evil, refusal] = await Client.open(server.url, { Origin: "https://evil.example" });
    clients.push(evil);
    assert.match(refusal, /^HTTP\/1\.1 403 Forbidden/);
    assert.deepEqual(received.length, 2);
  } finally {
    for (const client of clients) client.socket.destroy();
    await server.close();
  }
});
