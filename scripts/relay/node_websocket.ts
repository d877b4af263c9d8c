// A small WebSocket server (RFC 6455) on `node:http`, for the relay's Node entry: Node 20 has no
// WebSocket server of its own and the package has no dependencies. Text messages only, no
// extensions; client frames must be masked; control frames are answered as the RFC asks.
import { createHash } from "node:crypto";
import { createServer, type IncomingMessage } from "node:http";
import type { Socket } from "node:net";
import type { ClientHandlers, ServeHandlers, WebServer } from "./web.ts";
import { PAGE_HEADERS, WEBSOCKET_PATH } from "./web.ts";

const GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";
/** Largest message accepted: a copy of 64 MiB in base64, and some. */
const MAX_MESSAGE = 96 * 1024 * 1024;

const Op = { CONTINUATION: 0, TEXT: 1, BINARY: 2, CLOSE: 8, PING: 9, PONG: 10 } as const;

/** Bytes received and not yet parsed, without concatenating on every read. */
class ByteQueue {
  #parts: Uint8Array[] = [];
  length = 0;

  push(bytes: Uint8Array): void {
    this.#parts.push(bytes);
    this.length += bytes.length;
  }

  /** The first `n` bytes, removed from the queue (`n` ≤ `length`). */
  take(n: number): Uint8Array {
    const out = new Uint8Array(n);
    let at = 0;
    while (at < n) {
      const head = this.#parts[0]!;
      const k = Math.min(head.length, n - at);
      out.set(head.subarray(0, k), at);
      at += k;
      if (k === head.length) this.#parts.shift();
      else this.#parts[0] = head.subarray(k);
    }
    this.length -= n;
    return out;
  }

  /** The byte at `i` (`i` < `length`), left in the queue. */
  at(i: number): number {
    for (const part of this.#parts) {
      if (i < part.length) return part[i]!;
      i -= part.length;
    }
    throw new RangeError("ByteQueue: past the end");
  }
}

function frame(opcode: number, payload: Uint8Array): Uint8Array {
  const n = payload.length;
  const size = n < 126 ? 2 : n < 65536 ? 4 : 10;
  const out = new Uint8Array(size + n);
  out[0] = 0x80 | opcode;
  if (n < 126) {
    out[1] = n;
  } else if (n < 65536) {
    out[1] = 126;
    out[2] = n >>> 8;
    out[3] = n & 255;
  } else {
    out[1] = 127;
    new DataView(out.buffer).setBigUint64(2, BigInt(n));
  }
  out.set(payload, size);
  return out;
}

function closeFrame(code: number, reason = ""): Uint8Array {
  const text = new TextEncoder().encode(reason);
  const payload = new Uint8Array(2 + text.length);
  payload[0] = code >>> 8;
  payload[1] = code & 255;
  payload.set(text, 2);
  return frame(Op.CLOSE, payload);
}

/** One client connection after the handshake. */
class Connection {
  readonly #socket: Socket;
  readonly #queue = new ByteQueue();
  readonly #decoder = new TextDecoder("utf-8", { fatal: true });
  #handlers: ClientHandlers | undefined;
  #message: Uint8Array[] | undefined;
  #messageLength = 0;
  #closing = false;

  constructor(socket: Socket) {
    this.#socket = socket;
  }

  start(handlers: ClientHandlers, head: Uint8Array): void {
    this.#handlers = handlers;
    this.#socket.on("data", (bytes: Uint8Array) => this.#receive(bytes));
    this.#socket.on("close", () => handlers.close());
    this.#socket.on("error", () => this.#socket.destroy());
    if (head.length > 0) this.#receive(head);
  }

  send(text: string): void {
    if (!this.#closing && this.#socket.writable) {
      this.#socket.write(frame(Op.TEXT, new TextEncoder().encode(text)));
    }
  }

  close(code: number, reason: string): void {
    if (this.#closing) return;
    this.#closing = true;
    if (this.#socket.writable) this.#socket.end(closeFrame(code, reason));
    setTimeout(() => this.#socket.destroy(), 1000).unref();
  }

  #receive(bytes: Uint8Array): void {
    this.#queue.push(bytes);
    while (!this.#closing && this.#parse());
  }

  /** Parses one frame if it is all there; returns whether it did. */
  #parse(): boolean {
    const q = this.#queue;
    if (q.length < 2) return false;
    const b0 = q.at(0);
    const b1 = q.at(1);
    const fin = (b0 & 0x80) !== 0;
    const opcode = b0 & 0x0f;
    if ((b0 & 0x70) !== 0) return this.#fail(1002, "reserved bits set");
    if ((b1 & 0x80) === 0) return this.#fail(1002, "client frames must be masked");
    let length = b1 & 0x7f;
    let header = 2;
    if (length === 126) {
      if (q.length < 4) return false;
      length = (q.at(2) << 8) | q.at(3);
      header = 4;
    } else if (length === 127) {
      if (q.length < 10) return false;
      let big = 0;
      for (let i = 2; i < 10; i++) big = big * 256 + q.at(i);
      length = big;
      header = 10;
    }
    if (opcode >= 8 && (!fin || length > 125)) return this.#fail(1002, "bad control frame");
    if (this.#messageLength + length > MAX_MESSAGE) return this.#fail(1009, "message too big");
    if (q.length < header + 4 + length) return false;
    q.take(header);
    const mask = q.take(4);
    const payload = q.take(length);
    for (let i = 0; i < payload.length; i++) payload[i]! ^= mask[i & 3]!;
    switch (opcode) {
      case Op.PING:
        this.#socket.write(frame(Op.PONG, payload));
        return true;
      case Op.PONG:
        return true;
      case Op.CLOSE: {
        const code = payload.length >= 2 ? (payload[0]! << 8) | payload[1]! : 1000;
        this.close(code === 1005 || code === 1006 ? 1000 : code, "");
        return false;
      }
      case Op.BINARY:
        return this.#fail(1003, "text messages only");
      case Op.TEXT:
      case Op.CONTINUATION: {
        if ((opcode === Op.TEXT) === (this.#message !== undefined)) {
          return this.#fail(1002, "bad fragmentation");
        }
        this.#message ??= [];
        this.#message.push(payload);
        this.#messageLength += payload.length;
        if (!fin) return true;
        const parts = this.#message;
        const all = new Uint8Array(this.#messageLength);
        parts.reduce((at, part) => (all.set(part, at), at + part.length), 0);
        this.#message = undefined;
        this.#messageLength = 0;
        let text: string;
        try {
          text = this.#decoder.decode(all);
        } catch {
          return this.#fail(1007, "not UTF-8");
        }
        this.#handlers?.message(text);
        return true;
      }
      default:
        return this.#fail(1002, `unknown opcode ${opcode}`);
    }
  }

  #fail(code: number, reason: string): false {
    this.close(code, reason);
    return false;
  }
}

function reject(socket: Socket, status: string): void {
  socket.end(`HTTP/1.1 ${status}\r\nConnection: close\r\nContent-Length: 0\r\n\r\n`);
}

/** Serves the page and the WebSocket at {@linkcode WEBSOCKET_PATH} on `node:http`. */
export function serveNode(
  listen: { hostname: string; port: number },
  handlers: ServeHandlers,
): Promise<WebServer> {
  const connections = new Set<Connection>();
  const server = createServer((request, response) => {
    const path = new URL(request.url ?? "/", "http://relay").pathname;
    if (path === WEBSOCKET_PATH) {
      response.writeHead(426, { "content-type": "text/plain" }).end("WebSocket only\n");
      return;
    }
    const asset = request.method === "GET" ? handlers.asset(path) : undefined;
    if (asset === undefined) {
      response.writeHead(404, { "content-type": "text/plain" }).end("Not found\n");
      return;
    }
    response.writeHead(200, { "content-type": asset.type, ...PAGE_HEADERS }).end(asset.body);
  });
  server.on("upgrade", (request: IncomingMessage, socket: Socket, head: Uint8Array) => {
    const path = new URL(request.url ?? "/", "http://relay").pathname;
    const key = request.headers["sec-websocket-key"];
    if (path !== WEBSOCKET_PATH) return reject(socket, "404 Not Found");
    if (
      request.headers.upgrade?.toLowerCase() !== "websocket" ||
      request.headers["sec-websocket-version"] !== "13" || typeof key !== "string" ||
      !/^[A-Za-z0-9+/]{22}==$/.test(key)
    ) {
      return reject(socket, "400 Bad Request");
    }
    if (!handlers.allow(request.headers.origin, request.headers.host)) {
      return reject(socket, "403 Forbidden");
    }
    const accept = createHash("sha1").update(key + GUID).digest("base64");
    socket.write(
      "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n" +
        `Sec-WebSocket-Accept: ${accept}\r\n\r\n`,
    );
    socket.setNoDelay(true);
    const connection = new Connection(socket);
    connections.add(connection);
    const client = handlers.connect({ send: (text) => connection.send(text) });
    connection.start({
      message: (text) => client.message(text),
      close: () => {
        connections.delete(connection);
        client.close();
      },
    }, head);
  });
  return new Promise((resolve, rejectListen) => {
    server.once("error", rejectListen);
    server.listen(listen.port, listen.hostname, () => {
      server.off("error", rejectListen);
      const address = server.address();
      const port = typeof address === "object" && address !== null ? address.port : listen.port;
      const host = listen.hostname.includes(":") ? `[${listen.hostname}]` : listen.hostname;
      resolve({
        url: `http://${host}:${port}/`,
        close: () =>
          new Promise<void>((done) => {
            for (const connection of connections) connection.close(1001, "the relay is stopping");
            server.close(() => done());
            server.closeAllConnections();
          }),
      });
    });
  });
}
